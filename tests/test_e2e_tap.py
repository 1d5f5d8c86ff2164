"""``meshplane tap`` end to end: two real sidecars, the real CLI.

- before a tap, no proxy has the control plane's access logger (config_dump);
- while ``meshplane tap`` runs, the tapped proxies get it over LDS, and a request sent after
  the tap started shows in the CLI's output (the time it took is printed);
- when the tap ends, the logger is gone again from every proxy's config dump;
- the node's own ``logging.accessLog`` file keeps logging throughout;
- an access log stream without the tap secret, or once the tap ended, is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e

GRPC_LOGGER = "envoy.access_loggers.http_grpc"


class Setup:
    def __init__(self, mesh: Mesh, client: Sidecar, server: Sidecar, log: Path) -> None:
        self.mesh, self.client, self.server, self.log = mesh, client, server, log


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("tap")
    mesh = Mesh(tmp)
    try:
        api = mesh.appmesh
        port = free_port()
        api.create_mesh(meshName="tap")
        app = mesh.app("api")
        address = next_address()
        log = tmp / "api-access.log"
        api.create_virtual_node(
            meshName="tap",
            virtualNodeName="api",
            spec={
                "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": address}},
                "logging": {"accessLog": {"file": {"path": str(log)}}},
            },
        )
        api.create_virtual_service(
            meshName="tap",
            virtualServiceName="api.tap.local",
            spec={"provider": {"virtualNode": {"virtualNodeName": "api"}}},
        )
        api.create_virtual_node(
            meshName="tap",
            virtualNodeName="web",
            spec={"backends": [{"virtualService": {"virtualServiceName": "api.tap.local"}}]},
        )
        server = mesh.sidecar("mesh/tap/virtualNode/api", address=address, app_port=app.port)
        client = mesh.sidecar("mesh/tap/virtualNode/web")
        # ready without a request from the client sidecar to the server sidecar: a keep-alive
        # connection opened before the tap keeps the server's filter chain of before the tap
        # (Envoy's in-place listener update) and its first request would bypass the new logger
        mesh.wait(lambda: _routed(client, address, port), "the client's route and endpoint")
        mesh.wait(lambda: _direct(address, port) == 200, "the server sidecar's ingress")
        yield Setup(mesh, client, server, log)
    finally:
        mesh.close()


def _get(client: Sidecar, path: str) -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{client.egress_port}{path}", headers={"host": "api.tap.local"}, timeout=5
    )


def _routed(client: Sidecar, address: str, port: int) -> bool:
    """Whether the client sidecar has the route to api.tap.local and the server's endpoint."""
    _, routes = client.admin_get("/config_dump?resource=dynamic_route_configs")
    _, hosts = client.admin_get("/clusters")
    return "api.tap.local" in routes and f"{address}:{port}::health_flags::healthy" in hosts


def _direct(address: str, port: int) -> int:
    """A request straight to the server sidecar's ingress (a connection of its own, closed)."""
    with httpx.Client(timeout=5) as http:
        return http.get(f"http://{address}:{port}/ready").status_code


def _tapped(sidecar: Sidecar) -> bool:
    """Whether the proxy's active listeners (its config dump) hold the control plane's logger
    (a listener still warming does not count: it serves nothing yet)."""
    status, body = sidecar.admin_get("/config_dump?resource=dynamic_listeners")
    assert status == 200, body
    listeners = json.loads(body).get("configs", [])
    return any(GRPC_LOGGER in json.dumps(c.get("active_state", {})) for c in listeners)


def _logging(sidecar: Sidecar) -> bool:
    """Whether any listener of the proxy, active, warming or draining, holds the logger."""
    status, body = sidecar.admin_get("/config_dump?resource=dynamic_listeners")
    assert status == 200, body
    return GRPC_LOGGER in body


def test_tap_shows_a_request_and_switches_the_access_log_stream(setup: Setup) -> None:
    assert not _tapped(setup.client) and not _tapped(setup.server)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshplane",
            "--server",
            setup.mesh.server.url,
            "tap",
            "--mesh",
            "tap",
            "--path-prefix",
            "/tapped",
            "--max",
            "2",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        setup.mesh.wait(
            lambda: _tapped(setup.client) and _tapped(setup.server),
            "the access log stream on both proxies (LDS)",
        )
        path = f"/tapped-{uuid.uuid4().hex}"
        sent = time.monotonic()
        assert _get(setup.client, path).status_code == 200
        _get(setup.client, "/not-this-one")
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise AssertionError(f"the tap showed no request in 60 s: {out!r} {err!r}") from None
        seen = time.monotonic() - sent
        print(f"the tap showed the request and ended {seen * 1000:.0f} ms after it was sent")
        assert process.returncode == 0, err
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    # one entry from each side of the request: the client's outbound, the server's inbound
    by_direction = {entry["direction"]: entry for entry in lines}
    assert len(lines) == 2 and set(by_direction) == {"outbound", "inbound"}, lines
    assert by_direction["outbound"]["proxy"] == "virtualNode/web", lines
    assert by_direction["inbound"]["proxy"] == "virtualNode/api", lines
    for entry in lines:
        assert entry["path"] == path, lines
        assert entry["method"] == "GET" and entry["status"] == 200
        assert entry["durationMs"] is not None and entry["requestId"]
        assert entry["authority"] == "api.tap.local", entry
    # the same request, seen on both sides (Envoy propagates x-request-id)
    assert by_direction["outbound"]["requestId"] == by_direction["inbound"]["requestId"]
    # the tap ended: the proxies stop streaming access logs, in every listener state
    setup.mesh.wait(
        lambda: not _logging(setup.client) and not _logging(setup.server),
        "the access log stream switched off again (config dump)",
    )
    # the node's own access log went on all along (Envoy flushes files every few seconds)
    setup.mesh.wait(lambda: path in setup.log.read_text(), "the node's own access log line")


def test_an_access_log_stream_needs_the_tap_secret(setup: Setup) -> None:
    from envoy.service.accesslog.v3 import als_pb2

    message = als_pb2.StreamAccessLogsMessage()
    message.identifier.node.id = "mesh/tap/virtualNode/web"
    message.http_logs.log_entry.add().request.path = "/forged"
    channel = grpc.insecure_channel(f"127.0.0.1:{setup.mesh.server.xds_port}")
    try:
        call = channel.stream_unary(
            "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
            request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
            response_deserializer=als_pb2.StreamAccessLogsResponse.FromString,
        )
        for metadata in ((), (("x-meshplane-tap", "0" * 64),)):
            with pytest.raises(grpc.RpcError) as caught:
                call(iter([message]), metadata=metadata, timeout=10)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as caught:
            call(iter([b"\xff\xff garbage"]), metadata=(("x-meshplane-tap", "x"),), timeout=10)
        assert caught.value.code() in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.PERMISSION_DENIED,
        )
    finally:
        channel.close()


def test_a_flood_of_taps_is_bounded(setup: Setup) -> None:
    url = f"{setup.mesh.server.url}/meshplane/v1/tap"
    clients = [httpx.Client(timeout=httpx.Timeout(10, read=30)) for _ in range(17)]
    streams = []
    try:
        for http in clients[:16]:
            stream = http.stream("GET", url, params={"mesh": "tap"})
            response = stream.__enter__()
            assert response.status_code == 200
            streams.append(stream)
        refused = clients[16].get(url, params={"mesh": "tap"})
        assert refused.status_code == 429, refused.text
        bad = clients[16].get(url, params={"mesh": "tap", "status": "7xx"})
        assert bad.status_code == 400 and "status" in bad.json()["message"]
    finally:
        for stream in streams:
            stream.__exit__(None, None, None)
        for http in clients:
            http.close()
    setup.mesh.wait(lambda: not _tapped(setup.client), "every tap closed, the stream off")
