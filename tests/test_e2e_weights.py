"""End to end with real Envoy sidecars: a client calls a virtual service backed by a virtual
router with blue and green virtual nodes, and the API shifts the weights live."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e


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


@pytest.fixture(scope="module")
def colors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, Sidecar]]:
    mesh = Mesh(tmp_path_factory.mktemp("weights"))
    try:
        api = mesh.appmesh
        port = free_port()
        api.create_mesh(meshName="demo")
        sidecars = {}
        for color in ("blue", "green"):
            app = mesh.app(color)
            address = next_address()
            api.create_virtual_node(
                meshName="demo",
                virtualNodeName=color,
                spec={
                    "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
                    "serviceDiscovery": {"dns": {"hostname": address}},
                },
            )
            sidecars[color] = mesh.sidecar(
                f"mesh/demo/virtualNode/{color}", address=address, app_port=app.port
            )
        api.create_virtual_router(
            meshName="demo",
            virtualRouterName="color",
            spec={"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]},
        )
        api.create_route(
            meshName="demo", virtualRouterName="color", routeName="split", spec=route_spec(100, 0)
        )
        api.create_virtual_service(
            meshName="demo",
            virtualServiceName="color.demo",
            spec={"provider": {"virtualRouter": {"virtualRouterName": "color"}}},
        )
        api.create_virtual_node(
            meshName="demo",
            virtualNodeName="client",
            spec={"backends": [{"virtualService": {"virtualServiceName": "color.demo"}}]},
        )
        client = mesh.sidecar("mesh/demo/virtualNode/client")

        def serving() -> bool:
            with httpx.Client(timeout=2) as http:
                r = http.get(
                    f"http://127.0.0.1:{client.egress_port}/", headers={"host": "color.demo"}
                )
            return r.status_code == 200 and r.json()["app"] == "blue"

        mesh.wait(serving, "the client sidecar to route color.demo")
        yield mesh, client
    finally:
        mesh.close()


def tally(client: Sidecar, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=5) as http:
        for _ in range(n):
            r = http.get(f"http://127.0.0.1:{client.egress_port}/", headers={"host": "color.demo"})
            seen[r.json()["app"] if r.status_code == 200 else f"HTTP {r.status_code}"] += 1
    return seen


def set_weights(mesh: Mesh, client: Sidecar, blue: int, green: int) -> None:
    version = mesh.appmesh.update_route(
        meshName="demo", virtualRouterName="color", routeName="split", spec=route_spec(blue, green)
    )["route"]["metadata"]["version"]
    assert version > 1

    mesh.wait(lambda: _weights_in(client) == (blue, green), f"weights {blue}/{green} in Envoy")


def _weights_in(client: Sidecar) -> tuple[int, int]:
    dump = client.config_dump()
    for config in dump["configs"]:
        for route_config in config.get("dynamic_route_configs", []):
            for vhost in route_config["route_config"].get("virtual_hosts", []):
                if "color.demo" not in vhost.get("domains", []):
                    continue
                for route in vhost.get("routes", []):
                    clusters = route.get("route", {}).get("weighted_clusters", {}).get("clusters")
                    if clusters:
                        weights = {
                            ("blue" if "_blue_" in c["name"] else "green"): int(c.get("weight", 0))
                            for c in clusters
                        }
                        return weights.get("blue", 0), weights.get("green", 0)
    return -1, -1


def test_weights_100_0_then_50_50_then_0_100(colors: tuple[Mesh, Sidecar]) -> None:
    mesh, client = colors
    assert tally(client, 1000) == Counter({"blue": 1000})

    set_weights(mesh, client, 50, 50)
    # Envoy draws each request's cluster at random: with 1,000 requests about one run in 600
    # falls outside 45-55 % (3.2 standard deviations), with 4,000 one in billions (6.3)
    split = tally(client, 4000)
    assert set(split) == {"blue", "green"}
    assert 0.45 * 4000 <= split["blue"] <= 0.55 * 4000, split

    set_weights(mesh, client, 0, 100)
    assert tally(client, 1000) == Counter({"green": 1000})
    set_weights(mesh, client, 100, 0)


def test_ten_step_shift_under_load_fails_nothing(colors: tuple[Mesh, Sidecar]) -> None:
    mesh, client = colors
    stop = threading.Event()
    results: Counter[str] = Counter()
    lock = threading.Lock()

    def load() -> None:
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                try:
                    r = http.get(
                        f"http://127.0.0.1:{client.egress_port}/", headers={"host": "color.demo"}
                    )
                    outcome = r.json()["app"] if r.status_code == 200 else f"HTTP {r.status_code}"
                except httpx.HTTPError as error:
                    outcome = f"error {type(error).__name__}"
                with lock:
                    results[outcome] += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        for step in range(1, 11):
            set_weights(mesh, client, 100 - 10 * step, 10 * step)
    finally:
        stop.set()
        for w in workers:
            w.join()
    failures = {k: v for k, v in results.items() if k not in ("blue", "green")}
    assert failures == {}, results
    assert results["blue"] > 0
    assert results["green"] > 0
    assert sum(results.values()) >= 100


def test_proxy_commands_through_the_real_cli(colors: tuple[Mesh, Sidecar]) -> None:
    import json
    import os
    import subprocess
    import sys

    import yaml

    mesh, _client = colors

    def cli(*args: str) -> str:
        env = {**os.environ, "MESHPLANE_SERVER": mesh.server.url}
        result = subprocess.run(
            [sys.executable, "-m", "meshplane", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    status = json.loads(cli("proxy-status", "-o", "json"))
    by_node = {p["nodeId"]: p for p in status}
    assert set(by_node) == {
        "mesh/demo/virtualNode/blue",
        "mesh/demo/virtualNode/green",
        "mesh/demo/virtualNode/client",
    }
    client_status = by_node["mesh/demo/virtualNode/client"]
    assert client_status["types"]["cds"]["synced"]
    assert client_status["types"]["lds"]["ackedVersion"]
    assert client_status["types"]["rds"]["lastNack"] is None
    table = cli("proxy-status")
    assert "mesh/demo/virtualNode/client" in table
    assert "SYNCED" in table
    assert len(json.loads(cli("proxy-status", "--mesh", "demo", "-o", "json"))) == 3
    assert json.loads(cli("proxy-status", "--mesh", "elsewhere", "-o", "json")) == []
    only = httpx.get(
        f"{mesh.server.url}/meshplane/v1/proxies", params={"mesh": "demo", "name": "blue"}
    ).json()["proxies"]
    assert [p["nodeId"] for p in only] == ["mesh/demo/virtualNode/blue"]
    bad = httpx.get(f"{mesh.server.url}/meshplane/v1/proxies", params={"node": "blue"})
    assert bad.status_code == 400 and "node" in bad.text

    clusters = yaml.safe_load(cli("proxy-config", "client", "--type", "clusters"))
    names = {
        c["cluster"]["name"] for dump in clusters for c in dump.get("dynamic_active_clusters", [])
    }
    assert {
        "cds_egress_demo_blue_http_" + str(_port(names, "blue")),
        "cds_egress_demo_green_http_" + str(_port(names, "green")),
    } <= names

    assert "log level set to debug" in cli(
        "proxy-log", "mesh/demo/virtualNode/blue", "--level", "debug"
    )
    body = httpx.post(f"http://{mesh.sidecars[0].admin}/logging").text  # lists the levels
    assert "upstream: debug" in body
    cli("proxy-log", "blue", "--level", "info")


def _port(names: set[str], color: str) -> str:
    return next(n.rsplit("_", 1)[1] for n in names if f"_{color}_" in n)
