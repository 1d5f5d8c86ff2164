"""Virtual gateways: listeners, gateway routes into node and router providers, matches,
rewrites, ordering, connection pools, health checks, scoping, inputs and problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.health_check.v3 import health_check_pb2

from meshplane.model import Kind, ResourceKey
from meshplane.translate import (
    MeshSecurity,
    ProxyIdentity,
    ProxyOptions,
    ProxyResources,
    translate_proxy,
)
from tests.support.translate import (
    HEALTH,
    JSON_LOG,
    MeshBuilder,
    by_name,
    envoy_validate,
    http_manager,
    listener,
    provider_node,
    rich_mesh,
    static_bootstrap,
    targets,
)

Json = dict[str, Any]


def target(service: str, port: int | None = None) -> Json:
    out: Json = {"virtualService": {"virtualServiceName": service}}
    if port is not None:
        out["port"] = port
    return out


def http_gateway_route(
    match: Json,
    service: str,
    *,
    port: int | None = None,
    rewrite: Json | None = None,
    kind: str = "httpRoute",
    priority: int | None = None,
) -> Json:
    action: Json = {"target": target(service, port)}
    if rewrite is not None:
        action["rewrite"] = rewrite
    spec: Json = {kind: {"match": match, "action": action}}
    if priority is not None:
        spec["priority"] = priority
    return spec


def gateway_mesh(*listeners: Json, **extra: Any) -> MeshBuilder:
    """The rich mesh plus a gateway ``gw`` (one http listener on 8080 by default)."""
    b = rich_mesh("DROP_ALL")
    b.gateway("gw", {"listeners": list(listeners) or [listener(8080)], **extra})
    return b


def table(resources: ProxyResources, name: str = "rds_ingress_http_8080") -> list[Any]:
    config = by_name(resources.routes)[name]
    assert [v.name for v in config.virtual_hosts] == ["ingress"]
    assert list(config.virtual_hosts[0].domains) == ["*"]
    return list(config.virtual_hosts[0].routes)


def headers(route: Any) -> dict[str, Any]:
    return {h.name: h for h in route.match.headers}


def weights(route: Any) -> dict[str, int]:
    return {c.name: c.weight.value for c in route.route.weighted_clusters.clusters}


def test_one_ingress_listener_per_gateway_listener_on_the_gateway_address() -> None:
    b = gateway_mesh(
        listener(8080), listener(8081, "http2"), listener(8082, "grpc"), logging=JSON_LOG
    )
    resources = b.translate_gateway("gw", ProxyOptions(address="127.0.0.20"))
    assert resources.problems == ()
    assert [lst.name for lst in resources.listeners] == [
        "lds_ingress_127.0.0.20_8080",
        "lds_ingress_127.0.0.20_8081",
        "lds_ingress_127.0.0.20_8082",
    ]
    assert [r.name for r in resources.routes] == [
        "rds_ingress_http_8080",
        "rds_ingress_http2_8081",
        "rds_ingress_grpc_8082",
    ]
    for lst, proto, port in zip(
        resources.listeners, ("http", "http2", "grpc"), (8080, 8081, 8082), strict=True
    ):
        assert lst.traffic_direction == base_pb2.INBOUND
        assert (lst.address.socket_address.address, lst.address.socket_address.port_value) == (
            "127.0.0.20",
            port,
        )
        manager = http_manager(lst)
        assert manager.stat_prefix == f"ingress.{proto}.{port}"
        assert manager.codec_type == manager.AUTO
        assert manager.rds.route_config_name == f"rds_ingress_{proto}_{port}"
        assert manager.normalize_path.value and manager.merge_slashes
        assert [a.name for a in manager.access_log] == ["envoy.access_loggers.file"]
    # no egress listener: gateway routes go straight to the provider clusters
    assert not any(lst.name.startswith("lds_egress") for lst in resources.listeners)


def test_a_gateway_without_routes_listens_and_answers_404_to_everything() -> None:
    resources = gateway_mesh().translate_gateway("gw")
    assert [lst.name for lst in resources.listeners] == ["lds_ingress_127.0.0.1_8080"]
    assert table(resources) == []
    assert resources.clusters == ()


def test_unknown_gateway_gets_nothing_and_waits() -> None:
    resources = MeshBuilder("demo").translate_gateway("nope")
    assert resources.empty
    assert resources.problems == ("virtual gateway 'nope' does not exist",)


def test_prefix_route_to_a_node_provider_rewrites_host_and_prefix() -> None:
    b = gateway_mesh()
    b.gateway_route("gw", "node", http_gateway_route({"prefix": "/node"}, "node.local", port=7000))
    resources = b.translate_gateway("gw")
    assert resources.problems == ()
    (route,) = table(resources)
    assert route.name == "node"
    assert route.match.prefix == "/node"
    assert weights(route) == {"cds_egress_demo_node-v1_http_7000": 100}
    assert route.route.host_rewrite_literal == "node.local"
    assert route.route.regex_rewrite.pattern.regex == "^/node/?"
    assert route.route.regex_rewrite.substitution == "/"
    assert route.route.timeout.seconds == 15  # App Mesh's default
    assert route.route.retry_policy.num_retries.value == 2
    assert [c.name for c in resources.clusters] == ["cds_egress_demo_node-v1_http_7000"]


@pytest.mark.parametrize(
    ("match", "rewrite", "pattern", "substitution"),
    [
        ({"prefix": "/"}, None, None, None),
        ({"prefix": "/a/"}, None, "^/a/?", "/"),
        ({"prefix": "/a"}, {"prefix": {"defaultPrefix": "ENABLED"}}, "^/a/?", "/"),
        ({"prefix": "/a"}, {"prefix": {"defaultPrefix": "DISABLED"}}, None, None),
        ({"prefix": "/a"}, {"prefix": {"value": "/b/"}}, "^/a/?", "/b/"),
        ({"prefix": "/"}, {"prefix": {"value": "/b/"}}, "^/?", "/b/"),
        ({"prefix": "/a"}, {"path": {"exact": "/x"}}, "^.*$", "/x"),
        ({"path": {"exact": "/a"}}, None, None, None),
        ({"path": {"exact": "/a"}}, {"path": {"exact": "/x"}}, "^.*$", "/x"),
        ({"path": {"regex": "/a.*"}}, None, None, None),
        ({"hostname": {"exact": "a.example.com"}}, None, None, None),
    ],
)
def test_path_rewrites(
    match: Json, rewrite: Json | None, pattern: str | None, substitution: str | None
) -> None:
    b = gateway_mesh()
    b.gateway_route("gw", "r", http_gateway_route(match, "node.local", port=7000, rewrite=rewrite))
    (route,) = table(b.translate_gateway("gw"))
    action = route.route
    if pattern is None:
        assert not action.HasField("regex_rewrite")
    else:
        assert (action.regex_rewrite.pattern.regex, action.regex_rewrite.substitution) == (
            pattern,
            substitution,
        )


def test_hostname_rewrite_can_be_disabled() -> None:
    b = gateway_mesh()
    b.gateway_route(
        "gw",
        "keep",
        http_gateway_route(
            {"prefix": "/"},
            "node.local",
            port=7000,
            rewrite={"hostname": {"defaultTargetHostname": "DISABLED"}},
        ),
    )
    b.gateway_route(
        "gw",
        "default",
        http_gateway_route(
            {"prefix": "/d"},
            "node.local",
            port=7000,
            rewrite={"hostname": {"defaultTargetHostname": "ENABLED"}},
        ),
    )
    by_route = {r.name: r for r in table(b.translate_gateway("gw"))}
    assert by_route["keep"].route.host_rewrite_literal == ""
    assert by_route["default"].route.host_rewrite_literal == "node.local"


def test_http_matches() -> None:
    b = gateway_mesh()
    b.gateway_route(
        "gw",
        "all",
        http_gateway_route(
            {
                "path": {"regex": "/items/[0-9]+"},
                "hostname": {"exact": "Shop.Example.com"},
                "method": "PUT",
                "headers": [
                    {"name": "X-Tenant", "match": {"prefix": "t-"}},
                    {"name": "x-not", "invert": True, "match": {"exact": "no"}},
                ],
                "queryParameters": [{"name": "v", "match": {"exact": "2"}}, {"name": "flag"}],
            },
            "node.local",
            port=7000,
        ),
    )
    b.gateway_route(
        "gw", "exact", http_gateway_route({"path": {"exact": "/healthz"}}, "node.local", port=7000)
    )
    b.gateway_route(
        "gw",
        "suffix",
        http_gateway_route({"hostname": {"suffix": ".example.org"}}, "node.local", port=7000),
    )
    by_route = {r.name: r for r in table(b.translate_gateway("gw"))}
    match = by_route["all"].match
    assert match.safe_regex.regex == "/items/[0-9]+"
    found = headers(by_route["all"])
    assert found[":authority"].string_match.safe_regex.regex == (
        r"(?i)Shop\.Example\.com(?::[0-9]+)?"
    )
    assert found[":method"].string_match.exact == "PUT"
    assert found["x-tenant"].string_match.prefix == "t-"
    assert found["x-not"].invert_match
    queries = {q.name: q for q in match.query_parameters}
    assert queries["v"].string_match.exact == "2" and queries["flag"].present_match
    assert by_route["exact"].match.path == "/healthz"
    suffix = by_route["suffix"]
    assert suffix.match.prefix == "/"
    assert headers(suffix)[":authority"].string_match.safe_regex.regex == (
        r"(?i).*\.example\.org(?::[0-9]+)?"
    )


def test_grpc_matches_service_hostname_metadata_without_path_rewrite() -> None:
    b = gateway_mesh(listener(9000, "grpc"))
    b.gateway_route(
        "gw",
        "cart",
        {
            "grpcRoute": {
                "match": {
                    "serviceName": "shop.Cart",
                    "hostname": {"exact": "api.example.com"},
                    "metadata": [{"name": "tenant", "match": {"exact": "a"}}],
                },
                "action": {"target": target("node.local", 7000)},
            }
        },
    )
    (route,) = table(b.translate_gateway("gw"), "rds_ingress_grpc_9000")
    assert route.match.prefix == "/shop.Cart/"
    assert set(headers(route)) == {"tenant", ":authority"}
    assert route.route.host_rewrite_literal == "node.local"
    assert not route.route.HasField("regex_rewrite")


def test_router_target_folds_the_router_routes_behind_the_prefix_rewrite() -> None:
    b = gateway_mesh()
    b.gateway_route("gw", "web", http_gateway_route({"prefix": "/shop"}, "web.local"))
    resources = b.translate_gateway("gw")
    assert resources.problems == ()
    routes = table(resources)
    assert [r.name for r in routes] == [
        "web/api",
        "web/exact",
        "web/regex",
        "web/dark",
        "web/default",
    ]
    api, exact, regex, dark, default = routes
    assert api.match.safe_regex.regex == "/shop/?api.*"
    assert headers(api)[":path"].string_match.prefix == "/shop"
    assert headers(api)[":method"].string_match.exact == "POST"  # the router route's own
    assert weights(api) == {
        "cds_egress_demo_web-v1_http_9080": 90,
        "cds_egress_demo_web-v2_http_9080": 10,
    }
    assert api.route.timeout.seconds == 5  # the router route's timeout and retries
    assert api.route.retry_policy.num_retries.value == 3
    assert exact.match.safe_regex.regex == "/shop/?healthz"
    assert regex.match.safe_regex.regex == "/shop/?(?:items/[0-9]+)"
    assert dark.direct_response.status == 503
    assert dark.match.safe_regex.regex == "/shop/?dark.*"
    assert default.match.prefix == "/shop" and not default.match.headers
    for route in (api, exact, regex, default):
        assert route.route.host_rewrite_literal == "web.local"
        assert route.route.regex_rewrite.pattern.regex == "^/shop/?"


def test_requests_the_router_does_not_take_get_404() -> None:
    b = gateway_mesh()
    b.service("only.local", router="only").router("only", (80, "http"))
    b.route(
        "only",
        "api",
        {
            "httpRoute": {
                "match": {"prefix": "/api"},
                "action": {"weightedTargets": targets(("web-v1", 1))},
            }
        },
    )
    b.gateway_route("gw", "only", http_gateway_route({"prefix": "/"}, "only.local"))
    api, fallback = table(b.translate_gateway("gw"))
    assert api.match.prefix == "/api"
    assert (fallback.name, fallback.match.prefix) == ("only", "/")
    assert fallback.direct_response.status == 404


def test_router_routes_that_cannot_follow_the_rewrite_are_left_out_with_a_problem() -> None:
    b = gateway_mesh()
    b.service("rx.local", router="rx").router("rx", (80, "http"))
    b.route(
        "rx",
        "alt",
        {
            "httpRoute": {
                "match": {"path": {"regex": "/a|/b"}},
                "action": {"weightedTargets": targets(("web-v1", 1))},
            }
        },
    )
    b.route(
        "rx",
        "never",
        {
            "priority": 0,
            "httpRoute": {
                "match": {"prefix": "/other"},
                "action": {"weightedTargets": targets(("web-v1", 1))},
            },
        },
    )
    b.gateway_route(
        "gw",
        "rx",
        http_gateway_route({"prefix": "/x"}, "rx.local", rewrite={"path": {"exact": "/fixed"}}),
    )
    resources = b.translate_gateway("gw")
    routes = table(resources)
    # "never" cannot match /fixed; "alt" is decided here: /fixed matches neither /a nor /b
    assert [r.name for r in routes] == ["rx"]
    b.gateway_route("gw", "rx", http_gateway_route({"prefix": "/x"}, "rx.local"))
    resources = b.translate_gateway("gw")
    assert [r.name for r in table(resources)] == ["rx/never", "rx"]
    assert resources.problems == (
        "gateway route 'rx': route 'alt' of 'rx.local' is left out: its path regex '/a|/b'"
        " does not start with the rewritten prefix '/', so it cannot be matched before the"
        " rewrite",
    )


def test_priority_first_then_the_most_specific_match() -> None:
    b = gateway_mesh()
    for name, match, priority in [
        ("catch-all", {"prefix": "/"}, None),
        ("long", {"prefix": "/a/b"}, None),
        ("short", {"prefix": "/a"}, None),
        ("regex", {"path": {"regex": "/r.*"}}, None),
        ("exact", {"path": {"exact": "/e"}}, None),
        ("host", {"prefix": "/", "hostname": {"exact": "h.example.com"}}, None),
        ("first", {"prefix": "/"}, 0),
        ("second", {"prefix": "/z"}, 5),
    ]:
        b.gateway_route(
            "gw", name, http_gateway_route(match, "node.local", port=7000, priority=priority)
        )
    assert [r.name for r in table(b.translate_gateway("gw"))] == [
        "first",
        "second",
        "exact",
        "regex",
        "long",
        "short",
        "host",
        "catch-all",
    ]


def test_port_match_picks_the_listener_and_target_port_the_provider_port() -> None:
    b = gateway_mesh(listener(8080), listener(8081), listener(9000, "grpc"))
    b.gateway_route(
        "gw", "on-8081", http_gateway_route({"prefix": "/", "port": 8081}, "multi.local", port=81)
    )
    b.gateway_route(
        "gw", "on-8080", http_gateway_route({"prefix": "/", "port": 8080}, "multi.local", port=80)
    )
    resources = b.translate_gateway("gw")
    assert resources.problems == ()
    (on_8080,) = table(resources, "rds_ingress_http_8080")
    (on_8081,) = table(resources, "rds_ingress_http_8081")
    assert table(resources, "rds_ingress_grpc_9000") == []
    assert on_8080.name == "on-8080/on-80"
    assert weights(on_8080) == {"cds_egress_demo_multi-v1_http_80": 100}
    assert weights(on_8081) == {"cds_egress_demo_multi-v1_http_81": 100}


def test_config_is_scoped_to_the_targeted_services() -> None:
    b = gateway_mesh()
    b.gateway_route("gw", "h2", http_gateway_route({"prefix": "/"}, "h2.local"))
    resources = b.translate_gateway("gw")
    assert [c.name for c in resources.clusters] == ["cds_egress_demo_h2-v1_http2_9090"]
    assert resources.inputs == {
        ResourceKey(Kind.MESH, "demo", "demo"),
        ResourceKey(Kind.VIRTUAL_GATEWAY, "demo", "gw"),
        ResourceKey(Kind.VIRTUAL_SERVICE, "demo", "h2.local"),
        ResourceKey(Kind.VIRTUAL_ROUTER, "demo", "h2"),
        ResourceKey(Kind.VIRTUAL_NODE, "demo", "h2-v1"),
    }


def test_connection_pools_limit_the_clusters_each_listener_reaches() -> None:
    b = gateway_mesh(
        listener(8080, connectionPool={"http": {"maxConnections": 10, "maxPendingRequests": 5}}),
        listener(8081, connectionPool={"http": {"maxConnections": 20}}),
        listener(8082, "http2", connectionPool={"http2": {"maxRequests": 30}}),
    )
    b.gateway_route(
        "gw", "a", http_gateway_route({"prefix": "/", "port": 8080}, "node.local", port=7000)
    )
    b.gateway_route(
        "gw", "b", http_gateway_route({"prefix": "/", "port": 8081}, "node.local", port=7000)
    )
    b.gateway_route(
        "gw", "c", http_gateway_route({"prefix": "/", "port": 8082}, "h2.local", kind="http2Route")
    )
    clusters = by_name(b.translate_gateway("gw").clusters)
    node = clusters["cds_egress_demo_node-v1_http_7000"].circuit_breakers.thresholds[0]
    assert (node.max_connections.value, node.max_pending_requests.value) == (10, 5)
    assert node.max_requests.value == 2**31 - 1
    h2 = clusters["cds_egress_demo_h2-v1_http2_9090"].circuit_breakers.thresholds[0]
    assert (h2.max_requests.value, h2.max_connections.value) == (30, 2**31 - 1)
    # the provider's own health check still applies on the gateway's side
    assert clusters["cds_egress_demo_h2-v1_http2_9090"].health_checks


def test_http_health_check_is_answered_by_the_gateway() -> None:
    check = {**HEALTH, "protocol": "http", "path": "/ping"}
    b = gateway_mesh(
        listener(8080, healthCheck=check),
        listener(9000, "grpc", healthCheck={**HEALTH, "protocol": "grpc"}),
    )
    resources = b.translate_gateway("gw")
    first = http_manager(by_name(resources.listeners)["lds_ingress_127.0.0.1_8080"])
    assert [f.name for f in first.http_filters] == [
        "envoy.filters.http.health_check",
        "envoy.filters.http.router",
    ]
    config = health_check_pb2.HealthCheck()
    assert first.http_filters[0].typed_config.Unpack(config)
    assert not config.pass_through_mode.value
    assert [(h.name, h.string_match.exact) for h in config.headers] == [(":path", "/ping")]
    grpc = http_manager(by_name(resources.listeners)["lds_ingress_127.0.0.1_9000"])
    assert [f.name for f in grpc.http_filters] == ["envoy.filters.http.router"]
    assert resources.problems == (
        "listener port 9000: a gRPC health check is not answered by the gateway (check the"
        " port over TCP, or use http2)",
    )


def test_problems_name_what_is_left_out() -> None:
    b = gateway_mesh(listener(8080), listener(8081))
    b.gateway_route(
        "gw", "missing", http_gateway_route({"prefix": "/m", "port": 8080}, "missing.local")
    )
    b.gateway_route("gw", "tcp", http_gateway_route({"prefix": "/t", "port": 8080}, "db.local"))
    b.gateway_route(
        "gw", "wrong-port", http_gateway_route({"prefix": "/w", "port": 8080}, "node.local", port=1)
    )
    b.gateway_route("gw", "no-port", http_gateway_route({"prefix": "/n"}, "multi.local"))
    b.gateway_route(
        "gw", "h2", http_gateway_route({"prefix": "/", "port": 8080}, "h2.local", kind="http2Route")
    )
    b.gateway_route(
        "gw",
        "bad-rewrite",
        http_gateway_route(
            {"path": {"exact": "/b"}, "port": 8080},
            "node.local",
            port=7000,
            rewrite={"prefix": {"value": "/x/"}},
        ),
    )
    resources = b.translate_gateway("gw")
    assert set(resources.problems) == {
        "backend virtual service 'missing.local' does not exist",
        "gateway route 'h2' is not served: the gateway has no http2 listener on port 8080",
        "gateway route 'no-port' has no port match while the gateway has several listeners;"
        " it is served on every http listener",
        "gateway route 'missing': target virtual service 'missing.local' has no HTTP, HTTP/2"
        " or gRPC listener to route to",
        "gateway route 'tcp': target virtual service 'db.local' has no HTTP, HTTP/2 or gRPC"
        " listener to route to",
        "gateway route 'wrong-port': target virtual service 'node.local' has no HTTP, HTTP/2"
        " or gRPC listener on port 1",
        "gateway route 'no-port': target virtual service 'multi.local' has several listeners"
        " (80, 81) and the target names no port; port 80 is used",
        "gateway route 'bad-rewrite': rewrite.prefix needs a prefix match and is ignored",
    }
    by_route = {r.name: r for r in table(resources)}
    for name in ("missing", "tcp", "wrong-port"):
        assert by_route[name].direct_response.status == 404


def test_listener_tls_and_backend_defaults_apply_and_mesh_mtls_stops_at_the_edge() -> None:
    served = {
        "mode": "STRICT",
        "certificate": {"file": {"certificateChain": "/c.pem", "privateKey": "/k.pem"}},
    }
    trust = {"validation": {"trust": {"file": {"certificateChain": "/ca.pem"}}}}
    b = gateway_mesh(
        listener(8443, tls=served),
        listener(8080),
        backendDefaults={"clientPolicy": {"tls": {**trust, "ports": [7000]}}},
    )
    b.gateway_route("gw", "node", http_gateway_route({"prefix": "/n", "port": 8443}, "node.local"))
    b.gateway_route("gw", "web", http_gateway_route({"prefix": "/w", "port": 8080}, "web.local"))
    target = ProxyIdentity("demo", Kind.VIRTUAL_GATEWAY, "gw")
    for security in (None, MeshSecurity(mtls="STRICT")):
        resources = translate_proxy(b.view(), target, None, security)
        assert resources.problems == ()
        found = by_name(resources.listeners)
        assert found["lds_ingress_127.0.0.1_8443"].filter_chains[0].HasField("transport_socket")
        edge = found["lds_ingress_127.0.0.1_8080"]
        assert not any(c.HasField("transport_socket") for c in edge.filter_chains)
        clusters = by_name(resources.clusters)
        assert clusters["cds_egress_demo_node-v1_http_7000"].HasField("transport_socket")
        mesh_mtls = clusters["cds_egress_demo_web-v1_http_9080"].HasField("transport_socket")
        assert mesh_mtls == (security is not None)  # port 9080 is not in the policy's ports


def test_envoy_accepts_gateway_configs(tmp_path: Path) -> None:
    check = {**HEALTH, "protocol": "http2", "path": "/ready"}
    b = gateway_mesh(
        listener(8080, connectionPool={"http": {"maxConnections": 10}}),
        listener(8081, "http2", healthCheck=check, connectionPool={"http2": {"maxRequests": 5}}),
        listener(8082, "grpc", connectionPool={"grpc": {"maxRequests": 5}}),
        logging=JSON_LOG,
    )
    b.node("extra", provider_node("extra.local", listener(7100)))
    b.gateway_route(
        "gw",
        "web",
        http_gateway_route(
            {
                "prefix": "/shop",
                "port": 8080,
                "hostname": {"suffix": ".example.com"},
                "headers": [{"name": "x-a", "match": {"range": {"start": 1, "end": 5}}}],
            },
            "web.local",
            rewrite={"prefix": {"value": "/v2/"}},
        ),
    )
    b.gateway_route(
        "gw",
        "exact",
        http_gateway_route(
            {
                "path": {"exact": "/e"},
                "port": 8080,
                "method": "GET",
                "queryParameters": [{"name": "q"}],
            },
            "node.local",
            port=7000,
            rewrite={"path": {"exact": "/f"}, "hostname": {"defaultTargetHostname": "DISABLED"}},
        ),
    )
    b.gateway_route(
        "gw", "h2", http_gateway_route({"prefix": "/", "port": 8081}, "h2.local", kind="http2Route")
    )
    b.gateway_route(
        "gw",
        "cart",
        {
            "grpcRoute": {
                "match": {"serviceName": "shop.Cart", "port": 8082, "hostname": {"exact": "a.b"}},
                "action": {"target": target("grpc.local")},
            }
        },
    )
    b.gateway_route(
        "gw",
        "cloud",
        http_gateway_route({"prefix": "/c", "port": 8081}, "cloud.local", kind="http2Route"),
    )
    resources = b.translate_gateway("gw", ProxyOptions(address="127.0.0.20"))
    assert len(resources.routes) == 3 and len(resources.clusters) >= 4
    assert resources.endpoints  # the Cloud Map provider's assignment
    result = envoy_validate(static_bootstrap(resources, "mesh/demo/virtualGateway/gw"), tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "deprecated" not in output.lower(), output
