"""End to end with real Envoy processes: ingress through a virtual gateway.

A gateway Envoy (``mesh/gateways/virtualGateway/gw``, started the way ``meshplane envoy``
starts one) listens on its own loopback address with two HTTP listeners, a gRPC and an HTTP/2
one, and routes into the mesh through the providers' sidecars: virtual services ``a`` and
``b`` provided by virtual nodes, ``color`` and ``only`` by virtual routers, and a gRPC
service.  The first listener's health check is answered by the gateway itself.
Every request is made from outside the mesh straight to the gateway's port; the apps echo
what reached them (app, path, Host), so each test shows which service answered and with
which path and Host.  A second replica on another address serves the same routes, and a
gateway route changed through the API under load fails no request.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from tests.support.apps import App
from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port
from tests.support.topology import http_listener, workload
from tests.test_e2e_protocols import GrpcApp

pytestmark = pytest.mark.e2e

MESH = "gateways"
A, B, COLOR, ONLY, GRPC = (f"{n}.gw.local" for n in ("a", "b", "color", "only", "grpc"))
GATEWAY = f"mesh/{MESH}/virtualGateway/gw"
HEALTH = {
    "protocol": "http",
    "path": "/gateway-health",
    "healthyThreshold": 2,
    "unhealthyThreshold": 2,
    "intervalMillis": 5000,
    "timeoutMillis": 2000,
}


def route(
    match: dict[str, Any],
    service: str,
    *,
    rewrite: dict[str, Any] | None = None,
    priority: int | None = None,
    kind: str = "httpRoute",
    target_port: int | None = None,
) -> dict[str, Any]:
    target: dict[str, Any] = {"virtualService": {"virtualServiceName": service}}
    if target_port is not None:
        target["port"] = target_port
    action: dict[str, Any] = {"target": target}
    if rewrite is not None:
        action["rewrite"] = rewrite
    spec: dict[str, Any] = {kind: {"match": match, "action": action}}
    if priority is not None:
        spec["priority"] = priority
    return spec


@dataclass
class Gateways:
    mesh: Mesh
    gateway: Sidecar
    ports: dict[str, int]
    apps: dict[str, App]
    grpc_app: GrpcApp
    node_port: int
    """The port of the provider nodes' listeners (their sidecars' ingress)."""

    def url(self, path: str, listener: str = "http", replica: Sidecar | None = None) -> str:
        return f"http://{(replica or self.gateway).address}:{self.ports[listener]}{path}"

    def start_replica(self) -> Sidecar:
        replica = self.mesh.sidecar(GATEWAY, address=next_address())
        self.mesh.wait(lambda: self.served(replica), f"gateway replica on {replica.address}")
        return replica

    def served(self, replica: Sidecar) -> bool:
        with httpx.Client(timeout=2) as http:
            return http.get(self.url("/pre/ready", replica=replica)).status_code == 200


def gateway_routes(ports: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Every gateway route of ``gw``, by name (each on the first HTTP listener unless said)."""
    on = {"port": ports["http"]}
    return {
        "pre": route({"prefix": "/pre", **on}, A),
        "exact": route({"path": {"exact": "/exact"}, **on}, B),
        "regex": route({"path": {"regex": "/re/[0-9]+"}, **on}, A),
        "header": route(
            {"prefix": "/hdr", "headers": [{"name": "x-route", "match": {"exact": "yes"}}], **on}, B
        ),
        "host": route({"prefix": "/", "hostname": {"exact": "Host.Example.com"}, **on}, B),
        "suffix": route({"prefix": "/", "hostname": {"suffix": ".suffix.example"}, **on}, A),
        "method": route({"prefix": "/method", "method": "POST", **on}, B),
        "query": route(
            {"prefix": "/query", "queryParameters": [{"name": "q", "match": {"exact": "1"}}], **on},
            A,
        ),
        "prio-low": route({"prefix": "/prio", **on}, A, priority=5),
        "prio-high": route({"prefix": "/prio", **on}, B, priority=1),
        "prio-longer": route({"prefix": "/prio/longer", **on}, A),
        "value": route({"prefix": "/val", **on}, A, rewrite={"prefix": {"value": "/new/"}}),
        "keep": route(
            {"prefix": "/keep", **on}, A, rewrite={"prefix": {"defaultPrefix": "DISABLED"}}
        ),
        "fixed": route({"prefix": "/fixed", **on}, B, rewrite={"path": {"exact": "/replaced"}}),
        "host-keep": route(
            {"prefix": "/hostkeep", **on},
            A,
            rewrite={"hostname": {"defaultTargetHostname": "DISABLED"}},
        ),
        "color": route({"prefix": "/color", **on}, COLOR),
        "only": route({"prefix": "/only", **on}, ONLY),
        "live": route({"prefix": "/live", **on}, A),
        "second": route({"prefix": "/", "port": ports["http-2"]}, B),
        "grpc": route({"serviceName": "demo.Echo", "port": ports["grpc"]}, GRPC, kind="grpcRoute"),
        "h2": route(
            {"prefix": "/demo.Echo/", "port": ports["http2"]},
            GRPC,
            kind="http2Route",
            rewrite={"prefix": {"defaultPrefix": "DISABLED"}},
        ),
    }


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    mesh = Mesh(tmp_path_factory.mktemp("gateways"))
    grpc_app = GrpcApp("grpc-svc").start()
    try:
        api = mesh.appmesh
        api.create_mesh(meshName=MESH)
        port, grpc_port = free_port(), free_port()
        apps = {name: mesh.app(name) for name in ("a", "b")}
        for name, app in apps.items():
            workload(mesh, MESH, name, listeners=[http_listener(port)], app_port=app.port)
            api.create_virtual_service(
                meshName=MESH,
                virtualServiceName=f"{name}.gw.local",
                spec={"provider": {"virtualNode": {"virtualNodeName": name}}},
            )
        workload(
            mesh, MESH, "grpc", listeners=[http_listener(grpc_port, "grpc")], app_port=grpc_app.port
        )
        api.create_virtual_service(
            meshName=MESH,
            virtualServiceName=GRPC,
            spec={"provider": {"virtualNode": {"virtualNodeName": "grpc"}}},
        )
        for router, routes in {
            "color": {"v2": ("/v2", "b"), "default": ("/", "a")},
            "only": {"api": ("/api", "a")},
        }.items():
            api.create_virtual_router(
                meshName=MESH,
                virtualRouterName=router,
                spec={"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]},
            )
            for name, (prefix, node) in routes.items():
                api.create_route(
                    meshName=MESH,
                    virtualRouterName=router,
                    routeName=name,
                    spec={
                        "httpRoute": {
                            "match": {"prefix": prefix},
                            "action": {"weightedTargets": [{"virtualNode": node, "weight": 1}]},
                        }
                    },
                )
            api.create_virtual_service(
                meshName=MESH,
                virtualServiceName=f"{router}.gw.local",
                spec={"provider": {"virtualRouter": {"virtualRouterName": router}}},
            )
        address = next_address()
        ports = {name: free_port(address) for name in ("http", "http-2", "grpc", "http2")}
        api.create_virtual_gateway(
            meshName=MESH,
            virtualGatewayName="gw",
            spec={
                "listeners": [
                    {
                        "portMapping": {"port": ports["http"], "protocol": "http"},
                        "healthCheck": HEALTH,
                    },
                    {"portMapping": {"port": ports["http-2"], "protocol": "http"}},
                    {"portMapping": {"port": ports["grpc"], "protocol": "grpc"}},
                    {"portMapping": {"port": ports["http2"], "protocol": "http2"}},
                ]
            },
        )
        for name, spec in gateway_routes(ports).items():
            api.create_gateway_route(
                meshName=MESH, virtualGatewayName="gw", gatewayRouteName=name, spec=spec
            )
        gateway = mesh.sidecar(GATEWAY, address=address)
        found = Gateways(mesh, gateway, ports, apps, grpc_app, port)
        mesh.wait(lambda: found.served(gateway), "the gateway to route /pre into the mesh")
        yield found
    finally:
        mesh.close()
        grpc_app.stop()


def seen(response: httpx.Response) -> tuple[str, str, str]:
    """(app, path, Host) as the app saw them, or ("HTTP <status>", "", "")."""
    if response.status_code != 200:
        return (f"HTTP {response.status_code}", "", "")
    body = response.json()
    return (body["app"], body["path"], body["host"])


# (method, path, request headers) -> (app, path, Host) the app saw
CASES: list[tuple[str, str, dict[str, str], tuple[str, str, str]]] = [
    # prefix match; default rewrites: Host -> the service, matched prefix -> "/" (query kept)
    ("GET", "/pre/x/y?z=1", {}, ("a", "/x/y?z=1", A)),
    ("GET", "/pre", {}, ("a", "/", A)),
    ("GET", "/prefix", {}, ("a", "/fix", A)),  # a prefix is a string prefix, as in App Mesh
    # exact and regex paths are not rewritten
    ("GET", "/exact", {}, ("b", "/exact", B)),
    ("GET", "/exact/more", {}, ("HTTP 404", "", "")),
    ("GET", "/re/42", {}, ("a", "/re/42", A)),
    ("GET", "/re/abc", {}, ("HTTP 404", "", "")),
    # headers, hostname (exact: any case and port; suffix), method, query parameters
    ("GET", "/hdr/1", {"x-route": "yes"}, ("b", "/1", B)),
    ("GET", "/hdr/1", {"x-route": "no"}, ("HTTP 404", "", "")),
    ("GET", "/h", {"host": "host.example.COM:1234"}, ("b", "/h", B)),
    ("GET", "/h", {"host": "api.suffix.example"}, ("a", "/h", A)),
    ("GET", "/h", {"host": "other.example"}, ("HTTP 404", "", "")),
    ("POST", "/method/m", {}, ("b", "/m", B)),
    ("GET", "/method/m", {}, ("HTTP 404", "", "")),
    ("GET", "/query?q=1", {}, ("a", "/?q=1", A)),
    ("GET", "/query?q=2", {}, ("HTTP 404", "", "")),
    # priority: the lowest number wins, before any route without a priority
    ("GET", "/prio/longer/1", {}, ("b", "/longer/1", B)),
    # explicit rewrites
    ("GET", "/val/x", {}, ("a", "/new/x", A)),
    ("GET", "/keep/x", {}, ("a", "/keep/x", A)),
    ("GET", "/fixed/anything?k=v", {}, ("b", "/replaced?k=v", B)),
    ("GET", "/hostkeep/x", {"host": "keep.example.com"}, ("a", "/x", "keep.example.com")),
    # a router provider: its routes see the rewritten path
    ("GET", "/color/v2/z", {}, ("b", "/v2/z", COLOR)),
    ("GET", "/color/z", {}, ("a", "/z", COLOR)),
    ("GET", "/only/api/1", {}, ("a", "/api/1", ONLY)),
    ("GET", "/only/zzz", {}, ("HTTP 404", "", "")),
    # nothing matches
    ("GET", "/nomatch", {}, ("HTTP 404", "", "")),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"), CASES, ids=[f"{m} {p} {h}" for m, p, h, _ in CASES]
)
def test_gateway_routes_match_and_rewrite(
    gateways: Gateways,
    method: str,
    path: str,
    headers: dict[str, str],
    expected: tuple[str, str, str],
) -> None:
    with httpx.Client(timeout=5) as http:
        response = http.request(method, gateways.url(path), headers=headers)
    assert seen(response) == expected, response.text


def test_requests_reach_the_service_through_its_sidecar(gateways: Gateways) -> None:
    sidecar = next(s for s in gateways.mesh.sidecars if s.resource.endswith("/virtualNode/b"))
    stat = f"http.ingress.http.{gateways.node_port}.downstream_rq_completed"
    before = sidecar.stats().get(stat, 0)
    with httpx.Client(timeout=5) as http:
        for _ in range(5):
            assert http.get(gateways.url("/exact")).status_code == 200
    assert sidecar.stats().get(stat, 0) - before >= 5
    gateway_stats = gateways.gateway.stats()
    assert gateway_stats[f"http.ingress.http.{gateways.ports['http']}.downstream_rq_completed"] > 0
    assert (
        gateway_stats[
            f"cluster.cds_egress_gateways_b_http_{gateways.node_port}.upstream_rq_completed"
        ]
        > 0
    )


def test_the_port_match_picks_the_listener(gateways: Gateways) -> None:
    with httpx.Client(timeout=5) as http:
        assert seen(http.get(gateways.url("/nomatch", "http-2"))) == ("b", "/nomatch", B)
        assert seen(http.get(gateways.url("/pre/x", "http-2"))) == ("b", "/pre/x", B)


def test_grpc_through_the_grpc_listener(gateways: Gateways) -> None:
    target = f"{gateways.gateway.address}:{gateways.ports['grpc']}"
    with grpc.insecure_channel(target) as channel:
        say = channel.unary_unary("/demo.Echo/Say")
        assert say(b"hello", timeout=5) == b"grpc-svc:hello"
        count = channel.unary_stream("/demo.Echo/Count")
        assert list(count(b"3", timeout=5)) == [b"grpc-svc:0", b"grpc-svc:1", b"grpc-svc:2"]
        other = channel.unary_unary("/demo.Other/Say")
        with pytest.raises(grpc.RpcError) as error:
            other(b"x", timeout=5)
        assert error.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_http2_route_on_an_http2_listener(gateways: Gateways) -> None:
    target = f"{gateways.gateway.address}:{gateways.ports['http2']}"
    with grpc.insecure_channel(target) as channel:  # gRPC is an HTTP/2 client (h2c)
        say = channel.unary_unary("/demo.Echo/Say")
        assert say(b"over h2", timeout=5) == b"grpc-svc:over h2"
        other = channel.unary_unary("/demo.Other/Say")
        with pytest.raises(grpc.RpcError) as error:
            other(b"x", timeout=5)
        assert error.value.code() is grpc.StatusCode.UNIMPLEMENTED  # Envoy's 404


def test_the_gateway_answers_its_listeners_health_check(gateways: Gateways) -> None:
    admin = f"http://{gateways.gateway.admin}"
    with httpx.Client(timeout=5) as http:
        healthy = http.get(gateways.url("/gateway-health"))
        assert (healthy.status_code, healthy.text, healthy.headers.get("x-app")) == (200, "", None)
        assert http.post(f"{admin}/healthcheck/fail").status_code == 200
        try:
            assert http.get(gateways.url("/gateway-health")).status_code == 503
            assert seen(http.get(gateways.url("/pre/x")))[0] == "a"  # still routing
        finally:
            http.post(f"{admin}/healthcheck/ok")
        assert http.get(gateways.url("/gateway-health")).status_code == 200


def test_two_replicas_serve_the_same_routes(gateways: Gateways) -> None:
    replica = gateways.start_replica()
    try:
        with httpx.Client(timeout=5) as http:
            for one in (gateways.gateway, replica):
                assert seen(http.get(gateways.url("/color/v2/z", replica=one))) == (
                    "b",
                    "/v2/z",
                    COLOR,
                )
                assert seen(http.get(gateways.url("/nomatch", replica=one))) == ("HTTP 404", "", "")
        listeners = {
            item["name"]
            for config in replica.config_dump()["configs"]
            for item in config.get("dynamic_listeners", [])
        }
        assert listeners == {
            f"lds_ingress_{replica.address}_{port}" for port in gateways.ports.values()
        }
    finally:
        replica.stop()
        gateways.mesh.sidecars.remove(replica)


def test_changing_a_gateway_route_under_load_fails_nothing(gateways: Gateways) -> None:
    api = gateways.mesh.appmesh
    stop = threading.Event()
    results: Counter[str] = Counter()
    lock = threading.Lock()

    def load() -> None:
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                try:
                    app, path, _ = seen(http.get(gateways.url("/live/x")))
                    outcome = app if path in ("/x", "/v/x") else f"{app} {path}"
                except httpx.HTTPError as error:
                    outcome = f"error {type(error).__name__}"
                with lock:
                    results[outcome] += 1

    def switch(service: str, rewrite: dict[str, Any] | None, app: str, path: str) -> None:
        spec = route({"prefix": "/live", "port": gateways.ports["http"]}, service, rewrite=rewrite)
        api.update_gateway_route(
            meshName=MESH, virtualGatewayName="gw", gatewayRouteName="live", spec=spec
        )

        def applied() -> bool:
            with httpx.Client(timeout=2) as http:
                return seen(http.get(gateways.url("/live/x")))[:2] == (app, path)

        gateways.mesh.wait(applied, f"/live to reach {app} as {path}")

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(3):
            switch(B, None, "b", "/x")
            switch(A, {"prefix": {"value": "/v/"}}, "a", "/v/x")
            switch(A, None, "a", "/x")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    failures = {k: v for k, v in results.items() if k not in ("a", "b")}
    assert failures == {}, results
    assert results["a"] > 0 and results["b"] > 0
    assert sum(results.values()) >= 100
