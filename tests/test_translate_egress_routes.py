"""Egress HTTP: the route table of backends (virtual hosts, matches, actions, retries)."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2

from meshplane.translate import ProxyOptions
from tests.support.translate import (
    MeshBuilder,
    by_name,
    client_node,
    http_manager,
    http_route,
    listener,
    provider_node,
    rich_mesh,
    virtual_host,
)


def _headers(route: object) -> dict[str, object]:
    return {h.name: h for h in route.match.headers}  # type: ignore[attr-defined]


def test_egress_listener_is_an_http_proxy_on_the_egress_address() -> None:
    options = ProxyOptions(egress_address="127.0.0.5", egress_port=16000)
    resources = rich_mesh().translate("front", options)
    egress = by_name(resources.listeners)["lds_egress_127.0.0.5_16000"]
    assert egress.traffic_direction == base_pb2.OUTBOUND
    assert egress.address.socket_address.address == "127.0.0.5"
    manager = http_manager(egress)
    assert manager.stat_prefix == "egress"
    assert manager.codec_type == manager.AUTO
    assert manager.HasField("http2_protocol_options")
    assert manager.http_protocol_options.allow_absolute_url.value
    assert manager.rds.route_config_name == "rds_egress_http_16000"
    assert "rds_egress_http_16000" in by_name(resources.routes)


def test_one_virtual_host_per_backend_named_after_the_service() -> None:
    resources = rich_mesh("DROP_ALL").translate("front")
    config = by_name(resources.routes)["rds_egress_http_15001"]
    hosts = {v.name: list(v.domains) for v in config.virtual_hosts}
    assert hosts == {
        "web.local": ["web.local", "web.local:80"],
        "h2.local": ["h2.local", "h2.local:9090"],
        "grpc.local": ["grpc.local", "grpc.local:50051"],
        "multi.local": ["multi.local", "multi.local:80"],
        "multi.local_81": ["multi.local:81"],
        "node.local": ["node.local", "node.local:7000"],
        "cloud.local": ["cloud.local", "cloud.local:6000"],
    }


def test_router_routes_in_priority_order_with_matches() -> None:
    host = virtual_host(rich_mesh().translate("front"), "web.local")
    assert [r.name for r in host.routes] == ["api", "exact", "regex", "dark", "default"]
    api, exact, regex, dark, default = host.routes
    assert api.match.prefix == "/api"
    headers = _headers(api)
    assert headers["x-exact"].string_match.exact == "a"  # header names are lower-cased
    assert headers["x-prefix"].string_match.prefix == "p"
    assert headers["x-suffix"].string_match.suffix == "s"
    assert headers["x-regex"].string_match.safe_regex.regex == "^v[0-9]+$"
    assert (headers["x-range"].range_match.start, headers["x-range"].range_match.end) == (1, 10)
    assert headers["x-not"].invert_match and headers["x-not"].string_match.exact == "no"
    assert headers["x-present"].present_match
    assert headers[":method"].string_match.exact == "POST"
    queries = {q.name: q for q in api.match.query_parameters}
    assert queries["debug"].string_match.exact == "1"
    assert queries["flag"].present_match
    assert exact.match.path == "/healthz"
    assert regex.match.safe_regex.regex == "/items/[0-9]+"
    assert dark.direct_response.status == 503  # every weight 0
    assert default.match.prefix == "/"


def test_weighted_targets_become_weighted_clusters() -> None:
    host = virtual_host(rich_mesh().translate("front"), "web.local")
    by_route = {r.name: r for r in host.routes}
    weights = [(c.name, c.weight.value) for c in by_route["api"].route.weighted_clusters.clusters]
    assert weights == [
        ("cds_egress_demo_web-v1_http_9080", 90),
        ("cds_egress_demo_web-v2_http_9080", 10),
    ]
    weights = [(c.name, c.weight.value) for c in by_route["exact"].route.weighted_clusters.clusters]
    assert weights == [
        ("cds_egress_demo_web-v1_http_9080", 100),
        ("cds_egress_demo_web-v2_http_9080", 0),
    ]


def test_explicit_retry_policy_and_timeouts() -> None:
    host = virtual_host(rich_mesh().translate("front"), "web.local")
    action = host.routes[0].route
    policy = action.retry_policy
    assert policy.retry_on.split(",") == [
        "5xx",
        "gateway-error",
        "reset",
        "retriable-status-codes",
        "refused-stream",
        "connect-failure",
    ]
    assert list(policy.retriable_status_codes) == [409]
    assert policy.num_retries.value == 3
    assert policy.per_try_timeout.ToMilliseconds() == 250
    assert [p.name for p in policy.retry_host_predicate] == [
        "envoy.retry_host_predicates.previous_hosts"
    ]
    assert action.timeout.seconds == 5
    assert action.idle_timeout.seconds == 60


def test_app_mesh_default_retry_policy_and_timeout() -> None:
    host = virtual_host(rich_mesh().translate("front"), "web.local")
    action = host.routes[-1].route
    assert (
        action.retry_policy.retry_on
        == "connect-failure,refused-stream,reset,retriable-status-codes"
    )
    assert list(action.retry_policy.retriable_status_codes) == [503]
    assert action.retry_policy.num_retries.value == 2
    assert not action.retry_policy.HasField("per_try_timeout")
    assert action.timeout.seconds == 15
    assert not action.HasField("idle_timeout")


def test_virtual_node_provider_is_a_catch_all_route_with_defaults() -> None:
    host = virtual_host(rich_mesh().translate("front"), "node.local")
    [route] = host.routes
    assert route.match.prefix == "/"
    assert [(c.name, c.weight.value) for c in route.route.weighted_clusters.clusters] == [
        ("cds_egress_demo_node-v1_http_7000", 100)
    ]
    assert route.route.retry_policy.num_retries.value == 2
    assert route.route.timeout.seconds == 15


def test_grpc_routes() -> None:
    host = virtual_host(rich_mesh().translate("front"), "grpc.local")
    method, service, anything = host.routes
    assert method.match.path == "/shop.Cart/Add"
    assert _headers(method)["tenant"].string_match.prefix == "t-"
    assert service.match.prefix == "/shop.Cart/"
    assert anything.match.prefix == "/"
    policy = method.route.retry_policy
    assert policy.retry_on.split(",") == [
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    ]
    assert policy.num_retries.value == 1 and policy.per_try_timeout.seconds == 1
    assert method.route.timeout.seconds == 0 and method.route.HasField("timeout")
    default = anything.route.retry_policy
    assert default.retry_on.split(",")[-1] == "unavailable"
    assert [c.name for c in anything.route.weighted_clusters.clusters] == [
        "cds_egress_demo_grpc-v1_grpc_50051"
    ]


def test_http2_scheme_match() -> None:
    host = virtual_host(rich_mesh().translate("front"), "h2.local")
    assert _headers(host.routes[0])[":scheme"].string_match.exact == "https"


def test_router_with_several_listeners_matches_routes_by_port() -> None:
    resources = rich_mesh().translate("front")
    on_80 = virtual_host(resources, "multi.local")
    on_81 = virtual_host(resources, "multi.local_81")
    assert [r.name for r in on_80.routes] == ["on-80"]
    assert [r.name for r in on_81.routes] == ["on-81"]
    assert (
        on_81.routes[0].route.weighted_clusters.clusters[0].name
        == "cds_egress_demo_multi-v1_http_81"
    )


def test_unprioritized_routes_follow_prioritized_ones_most_specific_first() -> None:
    mesh = (
        MeshBuilder()
        .node("c", client_node("s"))
        .node("p", provider_node("p", listener(80)))
        .service("s", router="r")
        .router("r", (80, "http"))
        .route("r", "a-all", http_route("/", ("p", 1)))
        .route("r", "b-api", http_route("/api", ("p", 1)))
        .route("r", "c-api-v2", http_route("/api/v2", ("p", 1)))
        .route("r", "z-first", http_route("/", ("p", 1), priority=5))
    )
    host = virtual_host(mesh.translate("c"), "s")
    assert [r.name for r in host.routes] == ["z-first", "c-api-v2", "b-api", "a-all"]


def test_missing_targets_are_dropped_and_reported() -> None:
    mesh = (
        MeshBuilder()
        .node("c", client_node("s"))
        .node("p", provider_node("p", listener(80)))
        .service("s", router="r")
        .router("r", (80, "http"))
        .route("r", "half", http_route("/a", ("p", 50), ("ghost", 50)))
        .route("r", "none", http_route("/b", ("ghost", 100)))
        .route("r", "bad-port", http_route("/c", ("p", 100, 81)))
    )
    resources = mesh.translate("c")
    routes = {r.name: r for r in virtual_host(resources, "s").routes}
    assert [c.name for c in routes["half"].route.weighted_clusters.clusters] == [
        "cds_egress_demo_p_http_80"
    ]
    assert routes["none"].direct_response.status == 503
    assert routes["bad-port"].direct_response.status == 503
    assert any("'ghost' does not exist" in p for p in resources.problems)
    assert any("has no listener on port 81" in p for p in resources.problems)


def test_unknown_or_unbacked_backends_are_left_out() -> None:
    mesh = MeshBuilder().node("c", client_node("nowhere", "empty")).service("empty")
    resources = mesh.translate("c")
    assert len(by_name(resources.routes)["rds_egress_http_15001"].virtual_hosts) == 0
    assert "backend virtual service 'nowhere' does not exist" in resources.problems
    assert "backend virtual service 'empty' has no provider" in resources.problems


def test_drop_all_has_no_catch_all() -> None:
    resources = rich_mesh("DROP_ALL").translate("front")
    config = by_name(resources.routes)["rds_egress_http_15001"]
    assert all("*" not in v.domains for v in config.virtual_hosts)
    assert "cds_egress_demo_mesh-allow-all" not in by_name(resources.clusters)
    manager = http_manager(by_name(resources.listeners)["lds_egress_127.0.0.1_15001"])
    assert [f.name for f in manager.http_filters] == ["envoy.filters.http.router"]


def test_allow_all_forwards_unknown_hosts() -> None:
    resources = rich_mesh("ALLOW_ALL").translate("front")
    config = by_name(resources.routes)["rds_egress_http_15001"]
    last = config.virtual_hosts[-1]
    assert list(last.domains) == ["*"]
    assert last.routes[0].route.cluster == "cds_egress_demo_mesh-allow-all"
    manager = http_manager(by_name(resources.listeners)["lds_egress_127.0.0.1_15001"])
    assert [f.name for f in manager.http_filters] == [
        "envoy.filters.http.dynamic_forward_proxy",
        "envoy.filters.http.router",
    ]
    cluster = by_name(resources.clusters)["cds_egress_demo_mesh-allow-all"]
    assert cluster.cluster_type.name == "envoy.clusters.dynamic_forward_proxy"
    assert cluster.lb_policy == cluster.CLUSTER_PROVIDED
