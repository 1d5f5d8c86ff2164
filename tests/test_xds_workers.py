"""``meshplane serve --xds-workers 2``: two xDS serving processes on one port, real Envoys.

Shown here, on SQLite (the workers follow the main process's writes) and on PostgreSQL:
- Envoys connected to different workers all converge on a change made through the API;
- proxy-status lists every proxy with the worker it is connected to; ``meshplane status`` and
  ``/readyz`` show the workers; ``/metrics`` sums the workers' xDS metrics;
- STRICT mTLS between a client and a provider connected to different workers (both workers
  issue from the one mesh CA over SDS), with proxy tokens (proxy auth) checked by the workers;
- the proxies' telemetry streams and a tap reach the main process (``/meshplane/v1/telemetry``,
  ``meshplane tap``), wherever the proxies are connected;
- a SIGKILLed worker is restarted (and logged), its Envoys reconnect and converge on the next
  write;
- SIGKILL of the main process leaves no worker behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.server import MeshplaneServer
from tests.support.topology import http_listener, outcome

pytestmark = pytest.mark.e2e

MESH = "workers"
COLOR = "color.workers.local"
CLIENTS = 4
FLUSH = 1.0


def route_spec(blue: int, green: int) -> dict[str, Any]:
    return {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [
                    {"virtualNode": "blue", "weight": blue},
                    {"virtualNode": "green", "weight": green},
                ]
            },
        }
    }


def green_weight(sidecar: Sidecar) -> int:
    for config in sidecar.config_dump()["configs"]:
        for route_config in config.get("dynamic_route_configs", []):
            for vhost in route_config["route_config"].get("virtual_hosts", []):
                if COLOR not in vhost.get("domains", []):
                    continue
                for route in vhost.get("routes", []):
                    clusters = route.get("route", {}).get("weighted_clusters", {}).get("clusters")
                    for cluster in clusters or ():
                        if "_green_" in cluster["name"]:
                            return int(cluster.get("weight", 0))
    return -1


def proxies(server: MeshplaneServer) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/meshplane/v1/proxies", timeout=10)
    assert response.status_code == 200, response.text
    return list(response.json()["proxies"])


def workers_of(server: MeshplaneServer) -> dict[str, int]:
    """Proxy name -> the worker (1, 2) its ADS stream is connected to."""
    return {p["name"]: int(p["worker"]) for p in proxies(server)}


def all_synced(server: MeshplaneServer) -> bool:
    """Every proxy has acknowledged what it was sent, of every type."""
    return all(all(t["synced"] for t in p["types"].values()) for p in proxies(server))


def fleet(server: MeshplaneServer) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/meshplane/v1/fleet", timeout=10).json())


def get(sidecar: Sidecar, path: str = "/") -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{sidecar.egress_port}{path}", headers={"host": COLOR}, timeout=5
    )


def app_of(sidecar: Sidecar) -> str:
    """Which app answered a request through ``sidecar`` (or ``HTTP <status>``)."""
    return outcome(get(sidecar))


@dataclass
class Setup:
    mesh: Mesh
    clients: list[Sidecar]
    blue: Sidecar
    green: Sidecar

    @property
    def server(self) -> MeshplaneServer:
        return self.mesh.server

    def names(self) -> set[str]:
        return {"blue", "green", *(f"web{i}" for i in range(len(self.clients)))}

    def spread(self, apart_from: str = "green") -> dict[str, int]:
        """Restart web0 until the proxies are on both workers and web0 is on another worker
        than ``apart_from`` (the kernel picks a worker per connection); the proxies' workers.
        Each restart lands web0 on the wanted worker with a chance of one half: 12 tries missed
        it once in 4,096 calls (and the module calls this six times), 30 once in 10^9."""
        for _ in range(30):
            self.mesh.wait(
                lambda: set(workers_of(self.server)) == self.names(), "every proxy connected"
            )
            where = workers_of(self.server)
            if set(where.values()) == {1, 2} and where[apart_from] != where["web0"]:
                # a restarted web0 is listed from its first request on: wait for it to be
                # served (every type acknowledged) and to route again before tests use it
                self.mesh.wait(lambda: all_synced(self.server), "every proxy synced")
                self.mesh.wait(lambda: get(self.clients[0]).status_code == 200, "web0 routing")
                return where
            # move web0 to the other worker by reconnecting it
            self.clients[0] = self._restart(self.clients[0], "web0")
        raise AssertionError(f"the proxies stayed on one worker: {workers_of(self.server)}")

    def _restart(self, sidecar: Sidecar, name: str) -> Sidecar:
        sidecar.stop()
        self.mesh.sidecars.remove(sidecar)
        self.mesh.wait(lambda: name not in workers_of(self.server), f"{name} gone")
        return self.mesh.sidecar(
            f"mesh/{MESH}/virtualNode/{name}", bootstrap={"stats_flush_interval": FLUSH}
        )


def build(tmp: Path, database_url: str | None = None, clients: int = CLIENTS) -> Setup:
    server = MeshplaneServer(
        tmp / "data", database_url=database_url, extra_args=["--xds-workers", "2"]
    ).start()
    mesh = Mesh(tmp, server=server)
    try:
        api = mesh.appmesh
        port = free_port()
        strict = [{"key": "meshplane.io/mtls", "value": "STRICT"}]
        api.create_mesh(meshName=MESH, tags=strict)
        flush = {"stats_flush_interval": FLUSH}
        providers = {}
        for color in ("blue", "green"):
            app = mesh.app(color)
            address = next_address()
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName=color,
                spec={
                    "listeners": [http_listener(port)],
                    "serviceDiscovery": {"dns": {"hostname": address}},
                },
            )
            providers[color] = mesh.sidecar(
                f"mesh/{MESH}/virtualNode/{color}",
                address=address,
                app_port=app.port,
                bootstrap=flush,
            )
        api.create_virtual_router(
            meshName=MESH,
            virtualRouterName="color",
            spec={"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]},
        )
        api.create_route(
            meshName=MESH, virtualRouterName="color", routeName="split", spec=route_spec(100, 0)
        )
        api.create_virtual_service(
            meshName=MESH,
            virtualServiceName=COLOR,
            spec={"provider": {"virtualRouter": {"virtualRouterName": "color"}}},
        )
        sidecars = []
        for i in range(clients):
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName=f"web{i}",
                spec={"backends": [{"virtualService": {"virtualServiceName": COLOR}}]},
            )
            sidecars.append(mesh.sidecar(f"mesh/{MESH}/virtualNode/web{i}", bootstrap=flush))
        setup = Setup(mesh, sidecars, providers["blue"], providers["green"])
        mesh.wait(
            lambda: all(app_of(c) == "blue" for c in setup.clients),
            "every client to reach blue over mTLS",
            timeout=60,
        )
        return setup
    except BaseException:
        mesh.close()
        raise


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    built = build(tmp_path_factory.mktemp("workers"))
    try:
        yield built
    finally:
        built.mesh.close()


def converge(setup: Setup, blue: int, green: int) -> None:
    setup.server.boto3().update_route(
        meshName=MESH, virtualRouterName="color", routeName="split", spec=route_spec(blue, green)
    )
    setup.mesh.wait(
        lambda: all(green_weight(c) == green for c in setup.clients),
        f"every client to apply green {green}",
        timeout=30,
    )


def test_envoys_on_different_workers_converge_on_an_api_write(setup: Setup) -> None:
    where = setup.spread()
    assert set(where.values()) == {1, 2}
    converge(setup, 0, 100)
    setup.mesh.wait(
        lambda: all(app_of(c) == "green" for c in setup.clients),
        "every client to reach green",
    )
    converge(setup, 100, 0)


def test_proxy_status_status_and_readyz_show_the_workers(setup: Setup) -> None:
    setup.spread()
    listed = proxies(setup.server)
    assert {p["name"] for p in listed} == setup.names()
    assert {p["worker"] for p in listed} == {1, 2}
    assert len({p["stream"] for p in listed}) == len(listed)  # ids unique across workers
    assert all(all(t["synced"] for t in p["types"].values()) for p in listed)
    one = httpx.get(
        f"{setup.server.url}/meshplane/v1/proxies", params={"name": "web1"}, timeout=5
    ).json()["proxies"]
    assert [p["name"] for p in one] == ["web1"]
    state = fleet(setup.server)
    workers = state["xdsWorkers"]
    assert [w["worker"] for w in workers] == [1, 2]
    assert all(w["alive"] and w["revision"] == state["revision"] for w in workers)
    assert sum(w["proxies"] for w in workers) == len(listed)
    assert httpx.get(f"{setup.server.url}/readyz", timeout=10).json()["ready"] is True
    out = subprocess.run(
        [sys.executable, "-m", "meshplane", "--server", setup.server.url, "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "XDS WORKER" in out.stdout and str(workers[1]["pid"]) in out.stdout
    # /metrics: the workers' xDS metrics, summed
    text = httpx.get(f"{setup.server.url}/metrics", timeout=10).text
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }
    assert samples["meshplane_xds_connected_proxies"] == len(listed)
    assert samples["meshplane_translations_total"] >= len(listed)


def test_strict_mtls_between_proxies_on_different_workers(setup: Setup) -> None:
    where = setup.spread(apart_from="blue")
    client = setup.clients[0]
    assert where["web0"] != where["blue"]
    assert app_of(client) == "blue"  # through the mTLS listener of blue
    for sidecar in (client, setup.blue):
        certs = json.loads(sidecar.admin_get("/certs")[1])["certificates"]
        sans = [
            san["uri"]
            for cert in certs
            for chain in cert.get("cert_chain", [])
            for san in chain.get("subject_alt_names", [])
        ]
        assert any(uri.startswith("spiffe://") for uri in sans), certs
    # a plain-text caller is refused by the STRICT listener
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{setup.blue.address}:{_listener_port(setup)}/", timeout=3)


def _listener_port(setup: Setup) -> int:
    node = setup.server.boto3().describe_virtual_node(meshName=MESH, virtualNodeName="blue")
    return int(node["virtualNode"]["spec"]["listeners"][0]["portMapping"]["port"])


def test_telemetry_and_tap_reach_the_main_process(setup: Setup) -> None:
    where = setup.spread()
    for c in setup.clients:
        assert get(c).status_code == 200

    def reporting() -> set[str]:
        data = httpx.get(
            f"{setup.server.url}/meshplane/v1/telemetry",
            params={"mesh": MESH, "seconds": 30},
            timeout=10,
        ).json()
        return {p["name"] for p in data["proxies"] if p["reporting"]}

    setup.mesh.wait(
        lambda: setup.names() <= reporting(), "every proxy reporting telemetry", timeout=30
    )
    # the tap: the proxies on both workers stream access logs to their worker, the entries
    # reach the CLI through the main process
    path = f"/tapped-{uuid.uuid4().hex}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshplane",
            "--server",
            setup.server.url,
            "tap",
            "--mesh",
            MESH,
            "--path-prefix",
            path,
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
        time.sleep(2.0)  # the tapped proxies get their access logger over LDS
        clients = [c for i, c in enumerate(setup.clients) if where[f"web{i}"] in (1, 2)]
        deadline = time.monotonic() + 40
        while process.poll() is None and time.monotonic() < deadline:
            for client in clients:
                get(client, path)
            time.sleep(0.5)
        try:
            out, err = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise AssertionError(f"the tap showed no requests: {out!r} {err!r}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(lines) == 2 and all(line["path"] == path for line in lines), lines


def test_a_killed_worker_is_restarted_and_its_envoys_reconnect(setup: Setup) -> None:
    where = setup.spread()
    victim = where["web0"]
    before = fleet(setup.server)["xdsWorkers"][victim - 1]
    os.kill(before["pid"], signal.SIGKILL)

    def restarted() -> bool:
        after = fleet(setup.server)["xdsWorkers"][victim - 1]
        return bool(after["alive"] and after["restarts"] == before["restarts"] + 1)

    setup.mesh.wait(restarted, f"worker {victim} restarted", timeout=60)
    setup.mesh.wait(
        lambda: set(workers_of(setup.server)) == setup.names(),
        "every Envoy reconnected",
        timeout=60,
    )
    assert f"xDS worker {victim} (pid {before['pid']}) exited" in setup.server.log()
    converge(setup, 50, 50)
    converge(setup, 100, 0)


def test_a_killed_main_process_leaves_no_worker(tmp_path: Path) -> None:
    server = MeshplaneServer(tmp_path / "data", extra_args=["--xds-workers", "2"]).start()
    try:
        pids = [w["pid"] for w in fleet(server)["xdsWorkers"]]
        assert len(pids) == 2
        server.kill()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids), "a worker outlived the main process"
    finally:
        server.stop()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_on_postgresql_converge(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.create_database()
    setup = build(tmp_path, database_url=url, clients=2)
    other = MeshplaneServer(tmp_path / "b", database_url=url)
    try:
        where = setup.spread()
        assert set(where.values()) == {1, 2}
        converge(setup, 0, 100)
        assert all(app_of(c) == "green" for c in setup.clients)
        # another replica sees the workers' proxies through the fleet's proxy table
        other.start()
        replica = fleet(setup.server)["replica"]

        def seen() -> dict[str, tuple[str, int]]:
            return {p["name"]: (p["replica"], p.get("worker")) for p in proxies(other)}

        setup.mesh.wait(lambda: set(seen()) == setup.names(), "the fleet's proxies on B")
        assert {r for r, _ in seen().values()} == {replica}
        assert {w for _, w in seen().values()} == {1, 2}
    finally:
        other.stop()
        setup.mesh.close()


def test_worker_count_is_checked() -> None:
    for bad in ("0", "65", "two"):
        out = subprocess.run(
            [sys.executable, "-m", "meshplane", "serve", "--xds-workers", bad],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode != 0 and "--xds-workers" in out.stderr, (bad, out.stderr)


def test_a_hung_worker_does_not_stall_the_main_process(tmp_path: Path) -> None:
    """``/metrics`` and ``/meshplane/v1/proxies`` ask every worker (and wait for up to 5 s for
    one that does not answer) off the event loop: while they wait for a SIGSTOPped worker,
    the main process answers everything else."""
    server = MeshplaneServer(tmp_path / "data", extra_args=["--xds-workers", "2"]).start()
    stopped: int | None = None
    try:
        stopped = int(fleet(server)["xdsWorkers"][0]["pid"])
        os.kill(stopped, signal.SIGSTOP)
        finished: list[str] = []

        def fetch(path: str) -> None:
            response = httpx.get(f"{server.url}{path}", timeout=30)
            assert response.status_code == 200, response.text
            finished.append(path)

        slow = [
            threading.Thread(target=fetch, args=(path,))
            for path in ("/metrics", "/meshplane/v1/proxies")
        ]
        for thread in slow:
            thread.start()
        time.sleep(0.5)  # both requests are with the server, waiting for the stopped worker
        fetch("/healthz")
        fetch("/v20190125/meshes")
        for thread in slow:
            thread.join(30)
        # the requests that did not need the workers were answered while the others waited
        assert finished[:2] == ["/healthz", "/v20190125/meshes"], finished
        assert sorted(finished[2:]) == ["/meshplane/v1/proxies", "/metrics"], finished
        assert "xDS worker 1 did not answer metrics" in server.log()
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        server.stop()
