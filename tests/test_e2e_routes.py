"""End to end with real Envoy sidecars: route matches send each request to the right node.

Two provider virtual nodes, ``yes`` and ``no``, each a real HTTP app behind its own sidecar.
Every match kind gets its own virtual service and router: a route with the match under test
sends to ``yes``, a catch-all route with a lower priority sends to ``no``.  A client sidecar
declares every service as a backend; requests go through its egress listener with the service
name as Host, and the answering app says which node served it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest

from tests.support.mesh import Mesh, Sidecar
from tests.support.ports import free_port
from tests.support.topology import call, http_listener, outcome, workload

pytestmark = pytest.mark.e2e

MESH = "routes"

# service -> the match of its "yes" route (an App Mesh HttpRouteMatch)
MATCHES: dict[str, dict[str, Any]] = {
    "prefix": {"prefix": "/api"},
    "path-exact": {"path": {"exact": "/exact"}},
    "path-regex": {"path": {"regex": "/items/[0-9]+"}},
    "header-exact": {"prefix": "/", "headers": [{"name": "x-user", "match": {"exact": "alice"}}]},
    "header-prefix": {"prefix": "/", "headers": [{"name": "x-ver", "match": {"prefix": "v2"}}]},
    "header-suffix": {
        "prefix": "/",
        "headers": [{"name": "x-zone", "match": {"suffix": "-east"}}],
    },
    "header-regex": {
        "prefix": "/",
        "headers": [{"name": "x-id", "match": {"regex": "[a-z]+-[0-9]{2}"}}],
    },
    "header-range": {
        "prefix": "/",
        "headers": [{"name": "x-num", "match": {"range": {"start": 10, "end": 20}}}],
    },
    "header-invert": {
        "prefix": "/",
        "headers": [{"name": "x-canary", "invert": True, "match": {"exact": "off"}}],
    },
    "range-invert": {
        "prefix": "/",
        "headers": [
            {"name": "x-num", "invert": True, "match": {"range": {"start": 10, "end": 20}}}
        ],
    },
    "method": {"prefix": "/", "method": "POST"},
    "query": {
        "prefix": "/",
        "queryParameters": [{"name": "version", "match": {"exact": "beta"}}],
    },
    "all-of": {
        "prefix": "/orders",
        "method": "PUT",
        "headers": [{"name": "x-user", "match": {"exact": "alice"}}],
    },
}


def host(service: str) -> str:
    return f"{service}.{MESH}.local"


def route(target: str, match: Mapping[str, Any], priority: int) -> dict[str, Any]:
    return {
        "priority": priority,
        "httpRoute": {
            "match": dict(match),
            "action": {"weightedTargets": [{"virtualNode": target, "weight": 1}]},
        },
    }


def router(mesh: Mesh, service: str, port: int, routes: dict[str, dict[str, Any]]) -> None:
    api = mesh.appmesh
    api.create_virtual_router(
        meshName=MESH,
        virtualRouterName=service,
        spec={"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]},
    )
    for name, spec in routes.items():
        api.create_route(meshName=MESH, virtualRouterName=service, routeName=name, spec=spec)
    api.create_virtual_service(
        meshName=MESH,
        virtualServiceName=host(service),
        spec={"provider": {"virtualRouter": {"virtualRouterName": service}}},
    )


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, Sidecar]]:
    mesh = Mesh(tmp_path_factory.mktemp("routes"))
    try:
        port = free_port()
        mesh.appmesh.create_mesh(meshName=MESH)
        for name in ("yes", "no"):
            app = mesh.app(name)
            workload(mesh, MESH, name, listeners=[http_listener(port)], app_port=app.port)
        for service, match in MATCHES.items():
            router(
                mesh,
                service,
                port,
                {
                    # the catch-all is created first: priority, not creation order, decides
                    "fallback": route("no", {"prefix": "/"}, 1000),
                    "match": route("yes", match, 0),
                },
            )
        # both routes match "/p"; the one with the higher priority (lower number) wins
        router(
            mesh,
            "priority",
            port,
            {
                "broad": route("no", {"prefix": "/"}, 20),
                "narrow": route("yes", {"path": {"exact": "/p"}}, 10),
                "narrower": route("no", {"path": {"exact": "/p"}}, 30),
            },
        )
        services = [*MATCHES, "priority"]
        client = workload(mesh, MESH, "client", backends=[host(s) for s in services])
        assert {c[0] for c in CASES if c[4] == "yes"} == set(services)

        # every route is in: a request for each match (the sidecar may first get a config
        # translated before the control loop had seen the last routes)
        firsts = {c[0]: c for c in reversed(CASES) if c[4] == "yes"}

        def serving() -> bool:
            return all(
                served_by(client, s, "/zzz") == "no"
                and served_by(client, s, path, method=method, headers=headers) == "yes"
                for s, method, path, headers, _ in firsts.values()
            )

        mesh.wait(serving, "the client sidecar to route every service")
        yield mesh, client
    finally:
        mesh.close()


def served_by(
    client: Sidecar,
    service: str,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> str:
    with httpx.Client(timeout=5) as http:
        response = call(http, client, host(service), path, method=method, headers=headers)
    answer = outcome(response)
    if answer in ("yes", "no"):
        # the app saw the request as sent: the mesh routed it, it did not rewrite it
        seen = response.json()
        assert seen["method"] == method
        assert seen["path"] == path
    return answer


CASES: list[tuple[str, str, str, dict[str, str], str]] = [
    # service, method, path, headers, expected node
    ("prefix", "GET", "/api", {}, "yes"),
    ("prefix", "GET", "/api/v1/users", {}, "yes"),
    ("prefix", "GET", "/other/api", {}, "no"),
    ("path-exact", "GET", "/exact", {}, "yes"),
    ("path-exact", "GET", "/exact?debug=1", {}, "yes"),
    ("path-exact", "GET", "/exact/more", {}, "no"),
    ("path-exact", "GET", "/exac", {}, "no"),
    ("path-regex", "GET", "/items/42", {}, "yes"),
    ("path-regex", "GET", "/items/42?x=y", {}, "yes"),
    ("path-regex", "GET", "/items/abc", {}, "no"),
    ("path-regex", "GET", "/items/42/parts", {}, "no"),  # the whole path must match
    ("header-exact", "GET", "/", {"x-user": "alice"}, "yes"),
    ("header-exact", "GET", "/", {"X-User": "alice"}, "yes"),  # names are case-insensitive
    ("header-exact", "GET", "/", {"x-user": "alice2"}, "no"),
    ("header-exact", "GET", "/", {}, "no"),
    ("header-prefix", "GET", "/", {"x-ver": "v2.1"}, "yes"),
    ("header-prefix", "GET", "/", {"x-ver": "v1.9"}, "no"),
    ("header-suffix", "GET", "/", {"x-zone": "us-east"}, "yes"),
    ("header-suffix", "GET", "/", {"x-zone": "us-west"}, "no"),
    ("header-regex", "GET", "/", {"x-id": "abc-12"}, "yes"),
    ("header-regex", "GET", "/", {"x-id": "abc-123"}, "no"),  # the whole value must match
    ("header-regex", "GET", "/", {"x-id": "ABC-12"}, "no"),
    ("header-range", "GET", "/", {"x-num": "10"}, "yes"),
    ("header-range", "GET", "/", {"x-num": "19"}, "yes"),
    ("header-range", "GET", "/", {"x-num": "20"}, "no"),  # the end is exclusive
    ("header-range", "GET", "/", {"x-num": "9"}, "no"),
    ("header-range", "GET", "/", {"x-num": "fifteen"}, "no"),
    ("header-invert", "GET", "/", {"x-canary": "on"}, "yes"),
    ("header-invert", "GET", "/", {"x-canary": "off"}, "no"),
    ("range-invert", "GET", "/", {"x-num": "25"}, "yes"),
    ("range-invert", "GET", "/", {"x-num": "9"}, "yes"),
    ("range-invert", "GET", "/", {"x-num": "15"}, "no"),
    ("method", "POST", "/", {}, "yes"),
    ("method", "GET", "/", {}, "no"),
    ("method", "PUT", "/", {}, "no"),
    ("query", "GET", "/?version=beta", {}, "yes"),
    ("query", "GET", "/search?q=1&version=beta", {}, "yes"),
    ("query", "GET", "/?version=stable", {}, "no"),
    ("query", "GET", "/", {}, "no"),
    ("all-of", "PUT", "/orders/7", {"x-user": "alice"}, "yes"),
    ("all-of", "POST", "/orders/7", {"x-user": "alice"}, "no"),
    ("all-of", "PUT", "/orders/7", {"x-user": "bob"}, "no"),
    ("all-of", "PUT", "/carts/7", {"x-user": "alice"}, "no"),
    ("priority", "GET", "/p", {}, "yes"),
    ("priority", "GET", "/q", {}, "no"),
]


@pytest.mark.parametrize(
    ("service", "method", "path", "headers", "expected"),
    CASES,
    ids=[f"{c[0]}:{c[1]} {c[2]} {c[3]}" for c in CASES],
)
def test_a_request_reaches_the_node_its_match_names(
    routed: tuple[Mesh, Sidecar],
    service: str,
    method: str,
    path: str,
    headers: dict[str, str],
    expected: str,
) -> None:
    _, client = routed
    assert served_by(client, service, path, method=method, headers=headers) == expected


def test_every_match_kind_is_covered() -> None:
    kinds = {next(iter(h["match"])) for m in MATCHES.values() for h in m.get("headers", [])}
    assert kinds == {"exact", "prefix", "suffix", "regex", "range"}
    assert {s for s, *_ in CASES} == {*MATCHES, "priority"}


def test_a_priority_change_reorders_the_routes_live(routed: tuple[Mesh, Sidecar]) -> None:
    mesh, client = routed
    api = mesh.appmesh
    api.update_route(
        meshName=MESH,
        virtualRouterName="priority",
        routeName="narrower",
        spec=route("no", {"path": {"exact": "/p"}}, 5),
    )
    mesh.wait(lambda: served_by(client, "priority", "/p") == "no", "the new priority order")
    api.update_route(
        meshName=MESH,
        virtualRouterName="priority",
        routeName="narrower",
        spec=route("no", {"path": {"exact": "/p"}}, 30),
    )
    mesh.wait(lambda: served_by(client, "priority", "/p") == "yes", "the old priority order")
