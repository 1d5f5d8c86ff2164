"""End to end with real Envoy sidecars: the data plane outlives its control plane.

Blue and green virtual nodes behind router ``color``; two clients, one on state-of-the-world
ADS and one on incremental (delta) ADS, send continuous load.  The control plane is killed
with SIGKILL (no goodbye, no flushing) and started again on the same ports and data
directory.  No request may fail meanwhile; afterwards every proxy reconnects and a weight
change made through the API after the restart reaches both clients.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.mesh import Mesh, Sidecar
from tests.support.ports import free_port
from tests.support.topology import call, http_listener, outcome, workload

pytestmark = pytest.mark.e2e

MESH = "cp"
COLOR = "color.cp.local"
NODES = ("blue", "green", "sotw-client", "delta-client")


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


@dataclass
class Colors:
    mesh: Mesh
    clients: dict[str, Sidecar]


@pytest.fixture(scope="module")
def colors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Colors]:
    mesh = Mesh(tmp_path_factory.mktemp("control-plane"))
    try:
        api = mesh.appmesh
        port = free_port()
        api.create_mesh(meshName=MESH)
        for color in ("blue", "green"):
            app = mesh.app(color)
            workload(mesh, MESH, color, listeners=[http_listener(port)], app_port=app.port)
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
        clients = {}
        for name in ("sotw-client", "delta-client"):
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName=name,
                spec={"backends": [{"virtualService": {"virtualServiceName": COLOR}}]},
            )
            clients[name] = mesh.sidecar(
                f"mesh/{MESH}/virtualNode/{name}", delta=name.startswith("delta")
            )

        def serving() -> bool:
            with httpx.Client(timeout=2) as http:
                return all(outcome(call(http, c, COLOR)) == "blue" for c in clients.values())

        mesh.wait(serving, "both clients to route color")
        yield Colors(mesh, clients)
    finally:
        mesh.close()


def connected(mesh: Mesh) -> dict[str, str]:
    """Connected proxies by virtual node name -> their xDS protocol, from the server."""
    proxies = httpx.get(f"{mesh.server.url}/meshplane/v1/proxies", timeout=5).json()["proxies"]
    return {p["name"]: p["protocol"] for p in proxies}


def green_weight(client: Sidecar) -> int:
    """The weight of green in the client's live egress route to color (-1: not found)."""
    for config in client.config_dump()["configs"]:
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


def test_sigkill_of_the_control_plane_fails_no_request(colors: Colors) -> None:
    mesh = colors.mesh
    assert connected(mesh) == {
        "blue": "sotw",
        "green": "sotw",
        "sotw-client": "sotw",
        "delta-client": "delta",
    }
    results: Counter[tuple[str, str]] = Counter()
    after: Counter[tuple[str, str]] = Counter()  # the requests sent once the weights changed
    lock = threading.Lock()
    stop = threading.Event()
    changed = threading.Event()

    def load(name: str, client: Sidecar) -> None:
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                sent_after = changed.is_set()
                try:
                    result = outcome(call(http, client, COLOR))
                except httpx.HTTPError as error:
                    result = f"error {type(error).__name__}"
                with lock:
                    results[(name, result)] += 1
                    if sent_after:
                        after[(name, result)] += 1

    def total() -> int:
        with lock:
            return sum(results.values())

    workers = [threading.Thread(target=load, args=item) for item in colors.clients.items()]
    for worker in workers:
        worker.start()
    try:
        mesh.wait(lambda: total() >= 50, "load to start")
        mesh.server.kill()
        # the proxies run on their last configuration for a while without a control plane
        during = total()
        mesh.wait(lambda: total() >= during + 200, "traffic without a control plane")
        time.sleep(1)
        mesh.server.start()
        mesh.wait(
            lambda: set(connected(mesh)) == set(NODES),
            "every proxy to reconnect to the restarted control plane",
            timeout=60,
        )
        version = mesh.appmesh.update_route(
            meshName=MESH, virtualRouterName="color", routeName="split", spec=route_spec(0, 100)
        )["route"]["metadata"]["version"]
        assert version == 2
        mesh.wait(
            lambda: all(green_weight(c) == 100 for c in colors.clients.values()),
            "the new weights in both clients",
        )
        # counted from here: a request sent earlier may be answered (and counted) later
        changed.set()

        def sent_after() -> int:
            with lock:
                return sum(after.values())

        mesh.wait(lambda: sent_after() >= 100, "traffic after the change")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    failures = {k: v for k, v in results.items() if k[1] not in ("blue", "green")}
    assert failures == {}, results
    for name in colors.clients:
        assert results[(name, "green")] > 0, results
        assert results[(name, "blue")] > 0, results
    # once both clients had the new weights, nothing sent went to blue any more
    assert {result for _, result in after} == {"green"}, after
    assert all(s["lastNack"] is None for s in _types(mesh))


def _types(mesh: Mesh) -> list[dict[str, Any]]:
    proxies = httpx.get(f"{mesh.server.url}/meshplane/v1/proxies", timeout=5).json()["proxies"]
    return [t for p in proxies for t in p["types"].values()]
