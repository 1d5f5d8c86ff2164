"""Cloud Map ``HealthCheckConfig`` checks (``meshplane.service.health_checks``) against real
servers on loopback: an HTTP server whose answer the test switches, one that accepts and never
answers, a TCP listener and a closed port.  The registry is a real SQLite store driven through
the Cloud Map service, as the API drives it."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.model.kinds import REGISTRY_MESH
from meshplane.service import health_checks
from meshplane.service.access import ANONYMOUS
from meshplane.service.arns import Partition
from meshplane.service.cloudmap import CloudMapService
from meshplane.service.health_checks import HealthChecker, Target
from meshplane.service.resources import Caller
from meshplane.store import SqlStore
from tests.support.server import MeshplaneServer

CALLER = Caller("000000000000", ANONYMOUS)


class Switchable(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:
        Switchable.paths.append(self.path)
        self.send_response(Switchable.status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = SqlStore.open(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def web() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Switchable)
    Switchable.status, Switchable.paths = 200, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def listener() -> socket.socket:
    """A socket that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def service(sd: CloudMapService, ns: str, name: str, config: dict[str, Any]) -> str:
    made = sd.call(
        "CreateService",
        {
            "Name": name,
            "NamespaceId": ns,
            "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 10}]},
            "HealthCheckConfig": config,
        },
        CALLER,
    )
    return str(made["Service"]["Id"])


def register(sd: CloudMapService, srv: str, instance: str, ip: str, port: int | None) -> None:
    attributes = {"AWS_INSTANCE_IPV4": ip}
    if port is not None:
        attributes["AWS_INSTANCE_PORT"] = str(port)
    sd.call(
        "RegisterInstance",
        {"ServiceId": srv, "InstanceId": instance, "Attributes": attributes},
        CALLER,
    )


def health(sd: CloudMapService, srv: str) -> dict[str, str]:
    return dict(sd.call("GetInstancesHealthStatus", {"ServiceId": srv}, CALLER)["Status"])


def test_instances_follow_their_checks_after_the_failure_threshold(
    store: SqlStore, web: int
) -> None:
    sd = CloudMapService(store, Partition("us-east-1", "000000000000"))
    op = sd.call("CreatePublicDnsNamespace", {"Name": "example.com"}, CALLER)["OperationId"]
    ns = sd.call("GetOperation", {"OperationId": op}, CALLER)["Operation"]["Targets"]["NAMESPACE"]
    http_srv = service(
        sd, ns, "web", {"Type": "HTTP", "ResourcePath": "/health", "FailureThreshold": 2}
    )
    tcp_srv = service(sd, ns, "db", {"Type": "TCP", "FailureThreshold": 1})
    silent = listener()
    try:
        register(sd, http_srv, "up", "127.0.0.1", web)
        register(sd, http_srv, "closed", "127.0.0.1", closed_port())
        register(sd, http_srv, "silent", "127.0.0.1", silent.getsockname()[1])
        # never contacted: link-local is where cloud metadata endpoints live
        register(sd, http_srv, "metadata", "169.254.169.254", 80)
        register(sd, tcp_srv, "open", "127.0.0.1", web)
        register(sd, tcp_srv, "no-port", "127.0.0.1", None)
        checker = HealthChecker(store, replica="r1", interval=3600)
        everything = {i: "HEALTHY" for i in ("up", "closed", "silent", "metadata")}
        assert health(sd, http_srv) == everything  # healthy until checked otherwise

        # FailureThreshold 2: one failed check changes nothing, the second does
        assert asyncio.run(checker.run_once()) == {(tcp_srv, "no-port"): "UNHEALTHY"}
        assert health(sd, http_srv) == everything
        changed = asyncio.run(checker.run_once())
        assert changed == {(http_srv, i): "UNHEALTHY" for i in ("closed", "silent", "metadata")}
        assert health(sd, http_srv) == {**everything, **{i: "UNHEALTHY" for _, i in changed}}
        assert health(sd, tcp_srv) == {"open": "HEALTHY", "no-port": "UNHEALTHY"}
        assert set(Switchable.paths) == {"/health"}
        sd.call("DeregisterInstance", {"ServiceId": http_srv, "InstanceId": "silent"}, CALLER)

        # the server starts failing: 2 checks later the instance is out of DiscoverInstances
        Switchable.status = 503
        assert asyncio.run(checker.run_once()) == {}
        assert asyncio.run(checker.run_once()) == {(http_srv, "up"): "UNHEALTHY"}
        found = sd.call(
            "DiscoverInstances",
            {"NamespaceName": "example.com", "ServiceName": "web", "HealthStatus": "HEALTHY"},
            CALLER,
        )
        assert found["Instances"] == []
        # and back: a 3xx counts as healthy
        Switchable.status = 302
        asyncio.run(checker.run_once())
        assert asyncio.run(checker.run_once()) == {(http_srv, "up"): "HEALTHY"}

        # each change is audited, by the checker
        entries = [
            e
            for e in store.audit_log(meshes=[REGISTRY_MESH], limit=100)
            if e.operation == health_checks.OPERATION
        ]
        assert len(entries) == 6, entries
        assert {e.principal for e in entries} == {"meshplane@health-checker/r1"}
    finally:
        silent.close()


def test_only_the_duty_holder_checks(store: SqlStore, web: int) -> None:
    sd = CloudMapService(store, Partition("us-east-1", "000000000000"))
    op = sd.call("CreatePublicDnsNamespace", {"Name": "example.org"}, CALLER)["OperationId"]
    ns = sd.call("GetOperation", {"OperationId": op}, CALLER)["Operation"]["Targets"]["NAMESPACE"]
    srv = service(sd, ns, "web", {"Type": "HTTP", "FailureThreshold": 1})
    register(sd, srv, "closed", "127.0.0.1", closed_port())
    checked: list[Target] = []

    async def check(target: Target) -> bool:
        checked.append(target)
        return await health_checks.probe(target)

    holder = False
    checker = HealthChecker(store, replica="r2", duty=lambda: holder, check=check)
    assert asyncio.run(checker.run_once()) == {}
    assert checked == [] and health(sd, srv) == {"closed": "HEALTHY"}
    holder = True
    assert asyncio.run(checker.run_once()) == {(srv, "closed"): "UNHEALTHY"}
    assert [t.instance_id for t in checked] == ["closed"]


def test_a_check_is_bounded_however_the_instance_answers() -> None:
    """A server that dribbles its status line a byte at a time, one that sends headers without
    end, and one that answers with a status line of 60 MB: each check fails, within its
    bound, and nothing of it is kept."""
    stop = threading.Event()

    def serve(sock: socket.socket, send: Any) -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    conn.recv(65536)
                    send(conn)
                except OSError:
                    pass

    def dribble(conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\n":
            if stop.wait(1.0):
                return
            conn.sendall(bytes([byte]))

    def endless_headers(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.is_set():
            conn.sendall(b"x-more: " + b"a" * 1000 + b"\r\n")

    def huge_status(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 " + b"O" * (60 * 1024 * 1024))

    sockets = [listener() for _ in range(3)]
    threads = [
        threading.Thread(target=serve, args=(sock, send), daemon=True)
        for sock, send in zip(sockets, (dribble, endless_headers, huge_status), strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        targets = [
            Target("s", str(i), "HTTP", "127.0.0.1", sock.getsockname()[1], "/", 1, "HEALTHY")
            for i, sock in enumerate(sockets)
        ]

        async def all_of_them() -> list[bool]:
            return list(await asyncio.gather(*(health_checks.probe(t) for t in targets)))

        assert asyncio.run(all_of_them()) == [False, False, False]
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for sock in sockets:
            sock.close()


def test_the_server_checks_instances_registered_through_boto3(tmp_path: Path) -> None:
    """``meshplane serve --health-check-interval 1s``: a TCP-checked instance registered with
    boto3 goes UNHEALTHY while nothing listens at its address, and HEALTHY once something
    does; DNS-facing discovery follows."""
    server = MeshplaneServer(tmp_path / "data", extra_args=["--health-check-interval", "1s"])
    server.start()
    port = closed_port()
    try:
        sd = server.cloudmap()
        op = sd.create_public_dns_namespace(Name="checked.example.com")["OperationId"]
        ns = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
        srv = sd.create_service(
            Name="db",
            NamespaceId=ns,
            DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 10}]},
            HealthCheckConfig={"Type": "TCP", "FailureThreshold": 2},
        )["Service"]["Id"]
        sd.register_instance(
            ServiceId=srv,
            InstanceId="db-1",
            Attributes={"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": str(port)},
        )

        def becomes(want: str) -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if sd.get_instances_health_status(ServiceId=srv)["Status"]["db-1"] == want:
                    return
                time.sleep(0.2)
            raise AssertionError(f"db-1 did not become {want}\n{server.log()[-2000:]}")

        becomes("UNHEALTHY")
        found = sd.discover_instances(
            NamespaceName="checked.example.com", ServiceName="db", HealthStatus="HEALTHY"
        )
        assert found["Instances"] == []
        up = socket.socket()
        up.bind(("127.0.0.1", port))
        up.listen(16)
        try:
            becomes("HEALTHY")
        finally:
            up.close()
        audit = httpx.get(f"{server.url}/meshplane/v1/audit", timeout=10).json()["entries"]
        checked = [e for e in audit if e["operation"] == "UpdateInstanceHealthStatus"]
        assert [e["resource"] for e in checked] == ["cloudmap/instance/db-1"] * 2, checked
    finally:
        server.stop()
