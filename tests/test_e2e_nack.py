"""End to end with real Envoy sidecars: configuration that Envoy rejects (a NACK).

The App Mesh API accepts things Envoy cannot take: a header regex in a syntax RE2 does not
support (a lookahead, valid for Python's ``re``), or a listener on a port another process
holds.  Then the affected sidecar NACKs, and meshplane must

- show it in ``meshplane proxy-status`` (the real CLI) with Envoy's own error text,
- not send the rejected configuration again (pushes and NACKs stay put; Envoy's
  ``update_rejected`` counts one rejection),
- leave the sidecar serving its last good configuration and every other proxy unaffected
  (continuous traffic fails nothing),
- and deliver the next good configuration.

The mesh: ``app`` serves ``good`` directly and ``bad`` through router ``bad``; ``victim``
declares both, ``bystander`` only ``good``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port
from tests.support.topology import call, http_listener, outcome, workload

pytestmark = pytest.mark.e2e

MESH = "nack"
GOOD = "good.nack.local"
BAD = "bad.nack.local"
REJECTED_REGEX = "x(?=y)"  # a lookahead: Python's re takes it, Envoy's RE2 does not
GOOD_REGEX = "x[a-z]"


@dataclass
class Nack:
    mesh: Mesh
    victim: Sidecar
    bystander: Sidecar
    port: int


def route_spec(regex: str | None) -> dict[str, Any]:
    match: dict[str, Any] = {"prefix": "/"}
    if regex is not None:
        match["headers"] = [{"name": "x-id", "match": {"regex": regex}}]
    return {
        "httpRoute": {
            "match": match,
            "action": {"weightedTargets": [{"virtualNode": "app", "weight": 1}]},
        }
    }


@pytest.fixture(scope="module")
def nack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nack]:
    mesh = Mesh(tmp_path_factory.mktemp("nack"))
    try:
        api = mesh.appmesh
        port = free_port()
        api.create_mesh(meshName=MESH)
        app = mesh.app("app")
        workload(mesh, MESH, "app", listeners=[http_listener(port)], app_port=app.port)
        api.create_virtual_router(
            meshName=MESH,
            virtualRouterName="bad",
            spec={"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]},
        )
        api.create_route(
            meshName=MESH, virtualRouterName="bad", routeName="r", spec=route_spec(None)
        )
        api.create_virtual_service(
            meshName=MESH,
            virtualServiceName=BAD,
            spec={"provider": {"virtualRouter": {"virtualRouterName": "bad"}}},
        )
        api.create_virtual_service(
            meshName=MESH,
            virtualServiceName=GOOD,
            spec={"provider": {"virtualNode": {"virtualNodeName": "app"}}},
        )
        victim = workload(mesh, MESH, "victim", backends=[GOOD, BAD])
        bystander = workload(mesh, MESH, "bystander", backends=[GOOD])

        def serving() -> bool:
            with httpx.Client(timeout=2) as http:
                return (
                    outcome(call(http, victim, BAD)) == "app"
                    and outcome(call(http, victim, GOOD)) == "app"
                    and outcome(call(http, bystander, GOOD)) == "app"
                )

        mesh.wait(serving, "both clients to reach the app")
        yield Nack(mesh, victim, bystander, port)
    finally:
        mesh.close()


def proxy_status(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI: ``meshplane --server URL proxy-status ...``."""
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    env.pop("MESHPLANE_SERVER", None)
    result = subprocess.run(
        [sys.executable, "-m", "meshplane", "--server", mesh.server.url, "proxy-status", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def status_of(mesh: Mesh, name: str) -> dict[str, Any]:
    """The proxy-status JSON entry of the virtual node ``name``."""
    proxies = json.loads(proxy_status(mesh, "-o", "json").stdout)
    [entry] = [p for p in proxies if p["nodeId"] == f"mesh/{MESH}/virtualNode/{name}"]
    return dict(entry)


def api_status(mesh: Mesh, name: str) -> dict[str, Any]:
    """The same, straight from the server's API (cheap enough to poll)."""
    proxies = httpx.get(f"{mesh.server.url}/meshplane/v1/proxies", timeout=5).json()["proxies"]
    [entry] = [p for p in proxies if p["nodeId"] == f"mesh/{MESH}/virtualNode/{name}"]
    return dict(entry)


def metric(mesh: Mesh, name: str, kind: str) -> float:
    """A labelled counter of the control plane's ``/metrics``."""
    text = httpx.get(f"{mesh.server.url}/metrics", timeout=5).text
    prefix = f'{name}{{type="{kind}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


class Load:
    """Requests in a loop from several clients until stopped; outcomes by (client, host)."""

    def __init__(self, targets: list[tuple[str, Sidecar, str]], headers: dict[str, str]) -> None:
        self.headers = headers
        self.targets = targets
        self.results: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(t,)) for t in targets]

    def _run(self, target: tuple[str, Sidecar, str]) -> None:
        label, sidecar, host = target
        with httpx.Client(timeout=5) as http:
            while not self._stop.is_set():
                try:
                    result = outcome(call(http, sidecar, host, headers=self.headers))
                except httpx.HTTPError as error:
                    result = f"error {type(error).__name__}"
                with self._lock:
                    self.results[(label, result)] += 1
                time.sleep(0.005)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def failures(self) -> dict[tuple[str, str], int]:
        return {k: v for k, v in self.results.items() if k[1] != "app"}


def test_a_rejected_route_is_reported_held_and_isolated(nack: Nack) -> None:
    mesh, victim = nack.mesh, nack.victim
    rds_rejected = f"http.egress.rds.rds_egress_http_{victim.egress_port}.update_rejected"
    targets = [
        ("bystander->good", nack.bystander, GOOD),
        ("victim->good", victim, GOOD),
        ("victim->bad", victim, BAD),
    ]
    # x-id: xa matches both the route before the change and the fixed one
    with Load(targets, {"x-id": "xa"}) as load:
        pushes = metric(mesh, "meshplane_xds_pushes_total", "rds")
        nacks = metric(mesh, "meshplane_xds_nacks_total", "rds")
        mesh.appmesh.update_route(
            meshName=MESH, virtualRouterName="bad", routeName="r", spec=route_spec(REJECTED_REGEX)
        )
        mesh.wait(
            lambda: api_status(mesh, "victim")["types"]["rds"]["lastNack"] is not None,
            "the victim to NACK the route configuration",
        )

        # proxy-status shows the rejection with Envoy's error text; the bystander is fine
        victim_status = status_of(mesh, "victim")
        rds = victim_status["types"]["rds"]
        assert "invalid perl operator: (?=" in rds["lastNack"]["error"]  # RE2's own words
        assert rds["lastNack"]["version"] == rds["sentVersion"] != rds["ackedVersion"]
        for kind in ("cds", "lds"):
            assert victim_status["types"][kind]["lastNack"] is None
        bystander = status_of(mesh, "bystander")
        assert all(t["lastNack"] is None and t["synced"] for t in bystander["types"].values())
        table = proxy_status(mesh, "-o", "wide").stdout
        [victim_row] = [line for line in table.splitlines() if "virtualNode/victim" in line]
        assert "NACKED" in victim_row
        assert "invalid perl operator" in victim_row
        [bystander_row] = [line for line in table.splitlines() if "/bystander" in line]
        assert "NACKED" not in bystander_row

        # held, not resent: nothing more is pushed or rejected over a while
        assert metric(mesh, "meshplane_xds_nacks_total", "rds") == nacks + 1
        pushed = metric(mesh, "meshplane_xds_pushes_total", "rds")
        assert pushed == pushes + 1
        assert victim.stats()[rds_rejected] == 1
        time.sleep(3)
        assert metric(mesh, "meshplane_xds_pushes_total", "rds") == pushed
        assert metric(mesh, "meshplane_xds_nacks_total", "rds") == nacks + 1
        assert victim.stats()[rds_rejected] == 1

        # the victim keeps its last good routes: no x-id header needed
        with httpx.Client(timeout=5) as http:
            assert outcome(call(http, victim, BAD)) == "app"

        # the next good configuration gets through
        mesh.appmesh.update_route(
            meshName=MESH, virtualRouterName="bad", routeName="r", spec=route_spec(GOOD_REGEX)
        )

        def fixed() -> bool:
            rds = api_status(mesh, "victim")["types"]["rds"]
            return bool(rds["synced"]) and rds["ackedVersion"] != rds["lastNack"]["version"]

        mesh.wait(fixed, "the victim to accept the fixed route", timeout=40)
    failures = load.failures()
    assert failures == {}, load.results
    assert all(load.results[(label, "app")] > 0 for label, *_ in targets), load.results

    with httpx.Client(timeout=5) as http:
        assert outcome(call(http, victim, BAD, headers={"x-id": "xa"})) == "app"
        assert outcome(call(http, victim, BAD)) == "HTTP 404"  # the new route is in force
    row = next(r for r in proxy_status(mesh).stdout.splitlines() if "virtualNode/victim" in r)
    assert "NACKED" not in row
    assert victim.stats()[rds_rejected] == 1


def test_a_listener_that_cannot_bind_is_reported_and_isolated(nack: Nack) -> None:
    mesh = nack.mesh
    address, port = next_address(), free_port()
    with socket.socket() as squatter:
        squatter.bind((address, port))
        squatter.listen()
        mesh.appmesh.create_virtual_node(
            meshName=MESH,
            virtualNodeName="squatted",
            spec={
                "listeners": [http_listener(port)],
                "serviceDiscovery": {"dns": {"hostname": address}},
                "backends": [{"virtualService": {"virtualServiceName": GOOD}}],
            },
        )
        with Load([("bystander->good", nack.bystander, GOOD)], {}) as load:
            lds_nacks = metric(mesh, "meshplane_xds_nacks_total", "lds")
            squatted = mesh.sidecar(
                f"mesh/{MESH}/virtualNode/squatted", address=address, app_port=free_port()
            )
            mesh.wait(
                lambda: api_status(mesh, "squatted")["types"]["lds"]["lastNack"] is not None,
                "the squatted node to NACK its listeners",
            )
            error = status_of(mesh, "squatted")["types"]["lds"]["lastNack"]["error"]
            assert f"{address}:{port}" in error
            assert "Address already in use" in error
            time.sleep(3)
            assert metric(mesh, "meshplane_xds_nacks_total", "lds") == lds_nacks + 1
            assert squatted.stats()["listener_manager.lds.update_rejected"] == 1
        assert load.failures() == {}, load.results
        assert load.results[("bystander->good", "app")] > 0
    bystander = status_of(mesh, "bystander")
    assert all(t["lastNack"] is None and t["synced"] for t in bystander["types"].values())
