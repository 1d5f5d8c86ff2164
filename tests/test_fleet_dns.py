"""``meshplane envoy --xds NAME:PORT`` where NAME has a DNS record for each replica of a fleet.

A host (a network namespace on a bridge, 198.18.0.0/15) whose resolver (its ``resolv.conf``)
is a dnspython server on the bridge's gateway answering ``xds.fleet.test`` with two A records:
the addresses of two ``meshplane serve`` replicas on one real PostgreSQL database (each bound to
its own address on the bridge, one xDS port).  The sidecar, started with the real CLI on that
host, resolves both (its ``xds_cluster`` lists both replicas), serves traffic, and when the
replica it is connected to is SIGKILLed under load it fails over to the other one with no failed
request; a later change made through the survivor reaches it.  Everything (namespace, bridge
and its addresses, ``/etc/netns`` files, processes) is removed at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.auth import Token, offline_token
from tests.support.dns import StubUpstream
from tests.support.hosts import host_network
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.server import MeshplaneServer

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
MESH = "fleetdns"
NAME = "xds.fleet.test"
APP_PORT = 9080
ADMIN_PORT = 9901


def wait(predicate: Any, what: str, timeout: float = 30, detail: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{detail() if detail else ''}")


def test_envoy_xds_name_with_a_record_per_replica_fails_over(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.create_database()
    with host_network(["app"]) as network:
        base = network.network.network_address
        addresses = {"a": str(base + 200), "b": str(base + 201)}
        for address in addresses.values():  # the replicas' own addresses on the bridge
            subprocess.run(
                ["ip", "addr", "add", f"{address}/24", "dev", network.bridge], check=True
            )
        xds_port = free_port()
        replicas: dict[str, MeshplaneServer] = {}
        for name, address in addresses.items():
            server = MeshplaneServer(
                tmp_path / name, database_url=url, extra_args=["--host", address]
            )
            server.xds_port = xds_port  # one port, two addresses: the name says which
            server.url = f"http://{address}:{server.api_port}"
            replicas[name] = server
        admin: Token = offline_token(tmp_path / "a", database_url=url)
        sidecar: subprocess.Popen[bytes] | None = None
        app: subprocess.Popen[bytes] | None = None
        try:
            with StubUpstream(
                addresses["a"], more=(addresses["b"],), host=network.gateway, port=53, ttl=1
            ) as resolver:
                for server in replicas.values():
                    server.start()
                api = admin.boto3(replicas["a"])
                host = network.hosts["app"].address
                api.create_mesh(meshName=MESH)
                api.create_virtual_node(
                    meshName=MESH,
                    virtualNodeName="web",
                    spec={
                        "listeners": [_listener(8080)],
                        "serviceDiscovery": {"dns": {"hostname": host}},
                    },
                )
                with admin.http(replicas["a"]) as http:
                    made = http.post(
                        "/meshplane/v1/proxy-tokens",
                        json={"resource": f"mesh/{MESH}/virtualNode/web", "ttlSeconds": 3600},
                    )
                assert made.status_code == 200, made.text
                token_file = tmp_path / "web.token"
                token_file.write_text(made.json()["token"])
                os.chmod(token_file, 0o600)
                env = {**os.environ, "PYTHONPATH": str(REPO)}
                env = {k: v for k, v in env.items() if not k.startswith("APPMESH_")}
                with (tmp_path / "app.log").open("wb") as app_log:
                    app = network.popen(
                        "app",
                        [sys.executable, "-m", "tests.support.hostapp", "web", "--port", "9080"],
                        stdout=app_log,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                sidecar_log = tmp_path / "sidecar.log"
                with sidecar_log.open("wb") as handle:
                    sidecar = network.popen(
                        "app",
                        [
                            sys.executable,
                            "-m",
                            "meshplane",
                            "envoy",
                            "--resource",
                            f"mesh/{MESH}/virtualNode/web",
                            "--xds",
                            f"{NAME}:{xds_port}",
                            "--token-file",
                            str(token_file),
                            "--address",
                            host,
                            "--app-port",
                            str(APP_PORT),
                            "--admin-port",
                            str(ADMIN_PORT),
                            "--log-level",
                            "warning",
                        ],
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )

                def logs() -> str:
                    return f"--- sidecar\n{sidecar_log.read_text()[-3000:]}\n" + "".join(
                        f"--- {n}\n{s.log()[-2000:]}\n" for n, s in replicas.items()
                    )

                def get(port: int = 8080) -> httpx.Response:
                    return httpx.get(f"http://{host}:{port}/", timeout=5)

                wait(lambda: get().status_code == 200, "traffic through the sidecar", 60, logs)
                assert any(NAME in query for query in resolver.queries), resolver.queries
                # Envoy resolved the name to both replicas (a STRICT_DNS cluster, every record)
                clusters = network.run(
                    "app", ["curl", "-s", f"http://127.0.0.1:{ADMIN_PORT}/clusters"]
                ).stdout
                for address in addresses.values():
                    assert f"xds_cluster::{address}:{xds_port}::" in clusters, clusters

                def connected(name: str) -> bool:
                    with admin.http(replicas[name]) as http:
                        state = http.get("/meshplane/v1/fleet").json()
                        listed = http.get("/meshplane/v1/proxies").json()["proxies"]
                    return any(
                        p["name"] == "web" and p["replica"] == state["replica"] for p in listed
                    )

                wait(lambda: connected("a") or connected("b"), "the sidecar's replica", 20)
                home, other = ("a", "b") if connected("a") else ("b", "a")
                results: Counter[str] = Counter()
                lock = threading.Lock()
                stop = threading.Event()

                def load() -> None:
                    with httpx.Client(timeout=5) as client:
                        while not stop.is_set():
                            try:
                                answer = client.get(f"http://{host}:8080/")
                                result = str(answer.status_code)
                            except httpx.HTTPError as error:
                                result = f"error {type(error).__name__}"
                            with lock:
                                results[result] += 1

                def total() -> int:
                    with lock:
                        return sum(results.values())

                worker = threading.Thread(target=load)
                worker.start()
                try:
                    wait(lambda: total() >= 50, "load to start")
                    replicas[home].kill()
                    wait(lambda: connected(other), "the sidecar on the other replica", 60, logs)
                    admin.boto3(replicas[other]).update_virtual_node(
                        meshName=MESH,
                        virtualNodeName="web",
                        spec={
                            "listeners": [_listener(8080), _listener(8081)],
                            "serviceDiscovery": {"dns": {"hostname": host}},
                        },
                    )
                    wait(lambda: get(8081).status_code == 200, "the survivor's change", 30, logs)
                    at_change = total()
                    wait(lambda: total() >= at_change + 50, "traffic after it")
                finally:
                    stop.set()
                    worker.join()
                print(f"--xds {NAME}: {dict(results)} ({home} killed, {other} took over)")
                assert set(results) == {"200"}, results
        finally:
            for process in (sidecar, app):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(20)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
            for server in replicas.values():
                server.stop()


def _listener(port: int) -> dict[str, Any]:
    return {"portMapping": {"port": port, "protocol": "http"}}
