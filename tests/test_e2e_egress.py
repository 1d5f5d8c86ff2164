"""End to end with real Envoy sidecars: the mesh's egress filter.

The client node declares one backend (``declared``).  Outside the mesh, a real HTTP server
listens on its own loopback address; inside it, ``undeclared`` is a service the client did
not declare.  With DROP_ALL (the default) the client sidecar refuses both (Envoy's 404, and
neither server sees a request); switching the mesh to ALLOW_ALL through the API lets the
outside server be reached by its ``address:port`` (as Host, or as an HTTP proxy request),
and switching back refuses it again — all live, the declared backend serving throughout.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.apps import App
from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port
from tests.support.topology import call, http_listener, outcome, workload

pytestmark = pytest.mark.e2e

MESH = "egress"
DECLARED = "declared.egress.local"
UNDECLARED = "undeclared.egress.local"


@dataclass
class Egress:
    mesh: Mesh
    client: Sidecar
    outside: App
    apps: dict[str, App]

    @property
    def outside_host(self) -> str:
        return f"{self.outside.host}:{self.outside.port}"


@pytest.fixture(scope="module")
def egress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Egress]:
    mesh = Mesh(tmp_path_factory.mktemp("egress"))
    try:
        api = mesh.appmesh
        api.create_mesh(meshName=MESH)
        assert api.describe_mesh(meshName=MESH)["mesh"]["spec"]["egressFilter"]["type"] == (
            "DROP_ALL"
        )
        port = free_port()
        apps = {}
        for name, service in (("declared", DECLARED), ("undeclared", UNDECLARED)):
            apps[name] = mesh.app(name)
            workload(mesh, MESH, name, listeners=[http_listener(port)], app_port=apps[name].port)
            api.create_virtual_service(
                meshName=MESH,
                virtualServiceName=service,
                spec={"provider": {"virtualNode": {"virtualNodeName": name}}},
            )
        outside = App("outside", host=next_address()).start()
        mesh.apps.append(outside)
        client = workload(mesh, MESH, "client", backends=[DECLARED])

        def serving() -> bool:
            with httpx.Client(timeout=2) as http:
                return outcome(call(http, client, DECLARED)) == "declared"

        mesh.wait(serving, "the client sidecar to route its declared backend")
        yield Egress(mesh, client, outside, apps)
    finally:
        mesh.close()


def set_filter(egress: Egress, kind: str) -> None:
    egress.mesh.appmesh.update_mesh(meshName=MESH, spec={"egressFilter": {"type": kind}})
    wanted = kind == "ALLOW_ALL"
    egress.mesh.wait(
        lambda: pass_through(egress.client) == (wanted, wanted, wanted),
        f"the client sidecar to apply egress filter {kind}",
    )


def pass_through(client: Sidecar) -> tuple[bool, bool, bool]:
    """Whether the client's live config has the allow-all cluster, its virtual host, and the
    forward-proxy filter on the egress listener."""
    cluster = virtual_host = forward_filter = False
    egress_listener = f"lds_egress_127.0.0.1_{client.egress_port}"
    for config in client.config_dump()["configs"]:
        for item in config.get("dynamic_active_clusters", []):
            cluster |= item["cluster"]["name"] == f"cds_egress_{MESH}_mesh-allow-all"
        for item in config.get("dynamic_route_configs", []):
            names = [v["name"] for v in item["route_config"].get("virtual_hosts", [])]
            virtual_host |= "mesh-allow-all" in names
        for item in config.get("dynamic_listeners", []):
            listener = item.get("active_state", {}).get("listener", {})
            if listener.get("name") != egress_listener:
                continue
            [manager] = listener["filter_chains"][0]["filters"]
            filters = [f["name"] for f in manager["typed_config"]["http_filters"]]
            forward_filter = "envoy.filters.http.dynamic_forward_proxy" in filters
    return cluster, virtual_host, forward_filter


def refused(egress: Egress) -> None:
    """Neither the outside server nor the undeclared service is reachable."""
    before = egress.outside.requests, egress.apps["undeclared"].requests
    with httpx.Client(timeout=5) as http:
        for host in (egress.outside_host, UNDECLARED, egress.outside.host):
            assert call(http, egress.client, host).status_code == 404, host
    proxy = f"http://127.0.0.1:{egress.client.egress_port}"
    with httpx.Client(timeout=5, proxy=proxy) as http:
        assert http.get(f"http://{egress.outside_host}/").status_code == 404
    assert (egress.outside.requests, egress.apps["undeclared"].requests) == before


def test_drop_all_refuses_undeclared_destinations(egress: Egress) -> None:
    refused(egress)
    with httpx.Client(timeout=5) as http:
        assert outcome(call(http, egress.client, DECLARED)) == "declared"


def test_allow_all_lets_them_through_and_drop_all_closes_again(egress: Egress) -> None:
    set_filter(egress, "ALLOW_ALL")
    try:
        before = egress.outside.requests
        with httpx.Client(timeout=5) as http:
            for i in range(5):
                response = call(http, egress.client, egress.outside_host, f"/out/{i}")
                assert outcome(response) == "outside"
                assert response.json()["host"] == egress.outside_host
                assert response.json()["path"] == f"/out/{i}"
            # the declared backend still goes to its node, not to the pass-through
            assert outcome(call(http, egress.client, DECLARED)) == "declared"
        proxy = f"http://127.0.0.1:{egress.client.egress_port}"
        with httpx.Client(timeout=5, proxy=proxy) as http:
            assert outcome(http.get(f"http://{egress.outside_host}/proxied")) == "outside"
        assert egress.outside.requests == before + 6
    finally:
        set_filter(egress, "DROP_ALL")
    refused(egress)
