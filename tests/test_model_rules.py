"""The App Mesh / controller rules beyond botocore's shapes, each with its message and path."""

from __future__ import annotations

from typing import Any

import pytest

from meshplane.errors import BadRequestError
from meshplane.model import (
    GatewayRouteSpec,
    Kind,
    MeshSpec,
    RouteSpec,
    VirtualNodeSpec,
    dump_spec,
    parse_spec,
)

TARGETS = {"weightedTargets": [{"virtualNode": "blue", "weight": 100}]}
GW_ACTION = {"target": {"virtualService": {"virtualServiceName": "svc.local"}}}
DNS = {"dns": {"hostname": "node.local"}}
SECOND = {"unit": "s", "value": 1}


def bad(kind: Kind, doc: object, *expected: str) -> str:
    with pytest.raises(BadRequestError) as info:
        parse_spec(kind, doc)
    message = info.value.message
    for part in expected:
        assert part in message, message
    assert "pydantic" not in message
    assert "_parsing" not in message
    assert "_type" not in message
    return message


def http_route(match: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"httpRoute": {"match": match, "action": TARGETS, **extra}}


def gw_http(match: dict[str, Any], action: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"httpRoute": {"match": match, "action": action or GW_ACTION}}


# --- generic ------------------------------------------------------------------------------


def test_spec_required_except_mesh() -> None:
    assert dump_spec(parse_spec(Kind.MESH, None)) == {"egressFilter": {"type": "DROP_ALL"}}
    for kind in Kind:
        if kind is not Kind.MESH:
            assert bad(kind, None) == "spec: is required"


def test_field_argument_names_the_root() -> None:
    with pytest.raises(BadRequestError, match=r"^body\.spec\.listeners\[0\]: must be a JSON"):
        parse_spec(Kind.VIRTUAL_ROUTER, {"listeners": [1]}, field="body.spec")
    with pytest.raises(BadRequestError, match=r"^body\.spec: is required$"):
        parse_spec(Kind.ROUTE, None, field="body.spec")


def test_spec_must_be_object() -> None:
    bad(Kind.VIRTUAL_NODE, [], "spec: must be a JSON object")
    bad(Kind.VIRTUAL_NODE, "x", "spec: must be a JSON object")


def test_unknown_member_is_named() -> None:
    bad(Kind.VIRTUAL_NODE, {"listener": []}, "spec.listener: is not a known member")
    bad(
        Kind.VIRTUAL_ROUTER,
        {"listeners": [{"portMapping": {"port": 80, "protocol": "http", "extra": 1}}]},
        "spec.listeners[0].portMapping.extra: is not a known member",
    )


@pytest.mark.parametrize("value", ["80", 80.0, 1.5, True, None])
def test_integers_are_json_integers(value: object) -> None:
    doc = {"listeners": [{"portMapping": {"port": value, "protocol": "http"}}]}
    bad(Kind.VIRTUAL_ROUTER, doc, "spec.listeners[0].portMapping.port:")


def test_several_problems_joined() -> None:
    doc = {"listeners": [{"portMapping": {"port": 70000, "protocol": "udp"}}]}
    message = bad(Kind.VIRTUAL_ROUTER, doc)
    assert message == (
        "spec.listeners[0].portMapping.port: must be at most 65535 (got 70000); "
        "spec.listeners[0].portMapping.protocol: must be one of 'http', 'tcp', 'http2', 'grpc'"
        " (got 'udp')"
    )


def test_union_exactly_one() -> None:
    bad(
        Kind.VIRTUAL_NODE,
        {"serviceDiscovery": {}},
        "spec.serviceDiscovery: exactly one of awsCloudMap, dns must be set (got none)",
    )
    both = {"dns": {"hostname": "a"}, "awsCloudMap": {"namespaceName": "n", "serviceName": "s"}}
    bad(Kind.VIRTUAL_NODE, {"serviceDiscovery": both}, "(got awsCloudMap, dns)")
    bad(Kind.VIRTUAL_SERVICE, {"provider": {}}, "spec.provider: exactly one of")


def test_models_are_frozen_and_hashable() -> None:
    spec = parse_spec(Kind.ROUTE, http_route({"prefix": "/"}))
    assert isinstance(spec, RouteSpec)
    with pytest.raises(ValueError, match="frozen"):
        spec.priority = 3
    assert hash(spec) == hash(parse_spec(Kind.ROUTE, http_route({"prefix": "/"})))


# --- mesh ---------------------------------------------------------------------------------


def test_mesh_defaults_and_enums() -> None:
    spec = parse_spec(Kind.MESH, {})
    assert isinstance(spec, MeshSpec)
    assert spec.egressFilter.type == "DROP_ALL"
    doc = {"egressFilter": {"type": "ALLOW_ALL"}, "serviceDiscovery": {"ipPreference": "IPv4_ONLY"}}
    assert dump_spec(parse_spec(Kind.MESH, doc)) == doc
    bad(Kind.MESH, {"egressFilter": {"type": "ALLOW"}}, "spec.egressFilter.type: must be one of")
    bad(Kind.MESH, {"serviceDiscovery": {"ipPreference": "v4"}}, "ipPreference: must be one of")


# --- routes -------------------------------------------------------------------------------


def test_route_needs_exactly_one_type() -> None:
    bad(Kind.ROUTE, {"priority": 1}, "spec: exactly one of grpcRoute, http2Route, httpRoute")
    two = {**http_route({"prefix": "/"}), "tcpRoute": {"action": TARGETS}}
    bad(Kind.ROUTE, two, "(got httpRoute, tcpRoute)")
    bad(Kind.ROUTE, {**http_route({"prefix": "/"}), "priority": 1001}, "spec.priority: must be at")


def test_route_match_prefix_or_path() -> None:
    bad(Kind.ROUTE, http_route({}), "spec.httpRoute.match: Either prefix or path must be specified")
    bad(
        Kind.ROUTE,
        http_route({"prefix": "api"}),
        "spec.httpRoute.match.prefix: must start with '/'",
    )
    both = {"prefix": "/", "path": {"exact": "/a"}}
    bad(Kind.ROUTE, http_route(both), "spec.httpRoute.match: only one of prefix or path")
    bad(
        Kind.ROUTE,
        {"http2Route": {"match": {"path": {}}, "action": TARGETS}},
        "spec.http2Route.match.path: exactly one of exact, regex",
    )
    bad(Kind.ROUTE, http_route({"path": {"exact": "/a", "regex": "/b"}}), "exactly one of exact")
    parse_spec(Kind.ROUTE, http_route({"path": {"regex": "/a.*"}}))


def test_header_match_rules() -> None:
    header = {"name": "x-user", "match": {"exact": "a", "prefix": "b"}}
    bad(
        Kind.ROUTE,
        http_route({"prefix": "/", "headers": [header]}),
        "spec.httpRoute.match.headers[0].match: exactly one of exact, prefix, range, regex, suffix",
    )
    ranged = {"name": "x-n", "match": {"range": {"start": 5, "end": 5}}}
    bad(
        Kind.ROUTE,
        http_route({"prefix": "/", "headers": [ranged]}),
        "spec.httpRoute.match.headers[0].match.range.end: must be greater than start",
    )
    ok = {"name": "x-n", "invert": True, "match": {"range": {"start": 5, "end": 6}}}
    parse_spec(Kind.ROUTE, http_route({"prefix": "/", "headers": [ok]}))


def test_grpc_metadata_and_method_rules() -> None:
    grpc = {"match": {"methodName": "Get"}, "action": TARGETS}
    bad(Kind.ROUTE, {"grpcRoute": grpc}, "spec.grpcRoute.match.methodName: requires serviceName")
    metadata = [{"name": "m", "match": {}}]
    grpc = {"match": {"serviceName": "s", "metadata": metadata}, "action": TARGETS}
    bad(Kind.ROUTE, {"grpcRoute": grpc}, "spec.grpcRoute.match.metadata[0].match: exactly one of")
    grpc = {"match": {"serviceName": "s", "methodName": "Get"}, "action": TARGETS}
    parse_spec(Kind.ROUTE, {"grpcRoute": grpc})


def test_weighted_targets() -> None:
    action = {"weightedTargets": []}
    doc = {"httpRoute": {"match": {"prefix": "/"}, "action": action}}
    bad(Kind.ROUTE, doc, "spec.httpRoute.action.weightedTargets: must have at least 1 item")
    action = {"weightedTargets": [{"virtualNode": "a", "weight": 1}] * 11}
    doc = {"httpRoute": {"match": {"prefix": "/"}, "action": action}}
    bad(Kind.ROUTE, doc, "weightedTargets: must have at most 10 item")
    action = {"weightedTargets": [{"virtualNode": "a", "weight": -1}]}
    doc = {"tcpRoute": {"action": action}}
    bad(Kind.ROUTE, doc, "spec.tcpRoute.action.weightedTargets[0].weight: must be at least 0")
    zero = {"tcpRoute": {"action": {"weightedTargets": [{"virtualNode": "a", "weight": 0}]}}}
    assert dump_spec(parse_spec(Kind.ROUTE, zero)) == zero


def test_retry_policy_rules() -> None:
    policy: dict[str, Any] = {"maxRetries": 2, "perRetryTimeout": SECOND}
    bad(
        Kind.ROUTE,
        http_route({"prefix": "/"}, retryPolicy=policy),
        "spec.httpRoute.retryPolicy: at least one of httpRetryEvents, tcpRetryEvents",
    )
    wrong = {**policy, "httpRetryEvents": ["server-error", "oops"]}
    bad(
        Kind.ROUTE,
        http_route({"prefix": "/"}, retryPolicy=wrong),
        "spec.httpRoute.retryPolicy.httpRetryEvents[1]: must be one of server-error",
    )
    tcp = {**policy, "tcpRetryEvents": ["connection-reset"]}
    bad(Kind.ROUTE, http_route({"prefix": "/"}, retryPolicy=tcp), "tcpRetryEvents[0]: must be one")
    grpc_policy = {**policy, "grpcRetryEvents": ["unavailable", "nope"]}
    grpc = {"match": {"serviceName": "s"}, "action": TARGETS, "retryPolicy": grpc_policy}
    bad(Kind.ROUTE, {"grpcRoute": grpc}, "spec.grpcRoute.retryPolicy.grpcRetryEvents[1]")
    grpc["retryPolicy"] = policy
    bad(Kind.ROUTE, {"grpcRoute": grpc}, "at least one of grpcRetryEvents, httpRetryEvents")
    good = {**policy, "httpRetryEvents": ["server-error", "gateway-error", "client-error"]}
    doc = http_route({"prefix": "/"}, retryPolicy=good)
    assert dump_spec(parse_spec(Kind.ROUTE, doc)) == doc


def test_duration_rules() -> None:
    timeout = {"idle": {"unit": "m", "value": 1}}
    bad(Kind.ROUTE, http_route({"prefix": "/"}, timeout=timeout), "timeout.idle.unit: must be one")
    timeout = {"perRequest": {"unit": "s", "value": -1}}
    bad(Kind.ROUTE, http_route({"prefix": "/"}, timeout=timeout), "perRequest.value: must be at")
    timeout = {"perRequest": {"unit": "s"}}
    bad(Kind.ROUTE, http_route({"prefix": "/"}, timeout=timeout), "perRequest.value: is required")


# --- virtual nodes ------------------------------------------------------------------------


def listener(protocol: str = "http", port: int = 8080, **extra: Any) -> dict[str, Any]:
    return {"portMapping": {"port": port, "protocol": protocol}, **extra}


def test_service_discovery_required_with_listener() -> None:
    bad(
        Kind.VIRTUAL_NODE,
        {"listeners": [listener()]},
        "spec.serviceDiscovery: ServiceDiscovery must be specified when a listener is specified",
    )
    parse_spec(Kind.VIRTUAL_NODE, {"backends": []})


def test_unique_listener_ports_and_backends() -> None:
    doc = {"listeners": [listener(), listener("tcp")], "serviceDiscovery": DNS}
    bad(Kind.VIRTUAL_NODE, doc, "spec.listeners[1].portMapping.port: duplicate listener port")
    backend = {"virtualService": {"virtualServiceName": "a.local"}}
    bad(
        Kind.VIRTUAL_NODE,
        {"backends": [backend, backend]},
        "spec.backends[1].virtualService.virtualServiceName: duplicate backend 'a.local'",
    )
    routers = {"listeners": [listener(), listener()]}
    bad(Kind.VIRTUAL_ROUTER, routers, "spec.listeners[1].portMapping.port: duplicate")


@pytest.mark.parametrize("protocol", ["http", "http2", "grpc", "tcp"])
def test_listener_pool_and_timeout_match_protocol(protocol: str) -> None:
    pools = {
        "http": {"maxConnections": 1},
        "http2": {"maxRequests": 1},
        "grpc": {"maxRequests": 1},
        "tcp": {"maxConnections": 1},
    }
    for kind, pool in pools.items():
        timeout = {"idle": SECOND}
        lst = listener(protocol, connectionPool={kind: pool}, timeout={kind: timeout})
        doc = {"listeners": [lst], "serviceDiscovery": DNS}
        if kind == protocol:
            spec = parse_spec(Kind.VIRTUAL_NODE, doc)
            assert isinstance(spec, VirtualNodeSpec)
            assert dump_spec(spec) == doc
        else:
            bad(
                Kind.VIRTUAL_NODE,
                doc,
                f"spec.listeners[0].connectionPool: a {protocol} listener takes a {protocol}"
                f" connection pool (got {kind})",
                f"spec.listeners[0].timeout: a {protocol} listener takes a {protocol} timeout",
            )


def test_health_check_limits() -> None:
    check = {
        "protocol": "http",
        "path": "/health",
        "healthyThreshold": 1,
        "unhealthyThreshold": 11,
        "intervalMillis": 4999,
        "timeoutMillis": 60001,
        "port": 0,
    }
    doc = {"listeners": [listener(healthCheck=check)], "serviceDiscovery": DNS}
    message = bad(Kind.VIRTUAL_NODE, doc)
    for part in (
        "healthCheck.healthyThreshold: must be at least 2 (got 1)",
        "healthCheck.unhealthyThreshold: must be at most 10 (got 11)",
        "healthCheck.intervalMillis: must be at least 5000 (got 4999)",
        "healthCheck.timeoutMillis: must be at most 60000 (got 60001)",
        "healthCheck.port: must be at least 1 (got 0)",
    ):
        assert f"spec.listeners[0].{part}" in message
    check = {**check, "healthyThreshold": 2, "unhealthyThreshold": 10, "intervalMillis": 5000}
    check |= {"timeoutMillis": 2000, "port": 9090, "protocol": "tcp"}
    parse_spec(
        Kind.VIRTUAL_NODE, {"listeners": [listener(healthCheck=check)], "serviceDiscovery": DNS}
    )


def test_tls_unions_and_enforce_default() -> None:
    tls = {"mode": "STRICT", "certificate": {}}
    doc = {"listeners": [listener(tls=tls)], "serviceDiscovery": DNS}
    bad(Kind.VIRTUAL_NODE, doc, "spec.listeners[0].tls.certificate: exactly one of acm, file, sds")
    trust = {"acm": {"certificateAuthorityArns": ["arn:ca"]}}
    tls = {
        "mode": "STRICT",
        "certificate": {"sds": {"secretName": "s"}},
        "validation": {"trust": trust},
    }
    doc = {"listeners": [listener(tls=tls)], "serviceDiscovery": DNS}
    bad(Kind.VIRTUAL_NODE, doc, "spec.listeners[0].tls.validation.trust.acm: is not a known member")
    client = {"tls": {"validation": {"trust": trust}}}
    spec = dump_spec(parse_spec(Kind.VIRTUAL_NODE, {"backendDefaults": {"clientPolicy": client}}))
    assert spec["backendDefaults"] == {"clientPolicy": {"tls": {**client["tls"], "enforce": True}}}
    client = {"tls": {"validation": {"trust": trust}, "enforce": False, "ports": [443]}}
    doc = {"backendDefaults": {"clientPolicy": client}}
    assert dump_spec(parse_spec(Kind.VIRTUAL_NODE, doc)) == doc


def test_cloud_map_attribute_pattern() -> None:
    cloud_map = {
        "namespaceName": "ns",
        "serviceName": "svc",
        "attributes": [{"key": "bad key", "value": "v"}],
    }
    bad(
        Kind.VIRTUAL_NODE,
        {"serviceDiscovery": {"awsCloudMap": cloud_map}},
        "spec.serviceDiscovery.awsCloudMap.attributes[0].key: must match the pattern",
    )


def test_logging_format_union() -> None:
    fmt = {"text": "%START_TIME%", "json": [{"key": "a", "value": "b"}]}
    doc = {"logging": {"accessLog": {"file": {"path": "/dev/stdout", "format": fmt}}}}
    bad(Kind.VIRTUAL_NODE, doc, "spec.logging.accessLog.file.format: exactly one of json, text")
    doc["logging"]["accessLog"]["file"]["format"] = {"json": [{"key": "a", "value": "b"}]}
    assert dump_spec(parse_spec(Kind.VIRTUAL_NODE, doc)) == doc


# --- virtual gateways ---------------------------------------------------------------------


def test_gateway_listeners() -> None:
    bad(Kind.VIRTUAL_GATEWAY, {}, "spec.listeners: is required")
    bad(Kind.VIRTUAL_GATEWAY, {"listeners": []}, "spec.listeners: at least one listener")
    bad(Kind.VIRTUAL_GATEWAY, {"listeners": [listener("tcp")]}, "protocol: must be one of")
    lst = listener(outlierDetection={})
    bad(Kind.VIRTUAL_GATEWAY, {"listeners": [lst]}, "outlierDetection: is not a known member")
    lst = listener(timeout={"http": {}})
    bad(Kind.VIRTUAL_GATEWAY, {"listeners": [lst]}, "timeout: is not a known member")
    lst = listener("http2", connectionPool={"http": {"maxConnections": 5}})
    bad(Kind.VIRTUAL_GATEWAY, {"listeners": [lst]}, "a http2 listener takes a http2 connection")
    lst = listener("grpc", connectionPool={"grpc": {"maxRequests": 5}})
    bad(Kind.VIRTUAL_GATEWAY, {"listeners": [lst, lst]}, "spec.listeners[1].portMapping.port")
    parse_spec(Kind.VIRTUAL_GATEWAY, {"listeners": [lst]})


# --- gateway routes -----------------------------------------------------------------------


def test_gateway_route_type_and_match() -> None:
    bad(Kind.GATEWAY_ROUTE, {}, "spec: exactly one of grpcRoute, http2Route, httpRoute")
    bad(
        Kind.GATEWAY_ROUTE,
        gw_http({}),
        "spec.httpRoute.match: Either prefix or path or hostname must be specified",
    )
    spec = parse_spec(Kind.GATEWAY_ROUTE, gw_http({"hostname": {"suffix": ".example.com"}}))
    assert isinstance(spec, GatewayRouteSpec)
    assert spec.route_type == "httpRoute"
    bad(Kind.GATEWAY_ROUTE, gw_http({"prefix": "x"}), "spec.httpRoute.match.prefix: must start")
    both = {"exact": "a.com", "suffix": ".com"}
    bad(
        Kind.GATEWAY_ROUTE,
        gw_http({"hostname": both}),
        "spec.httpRoute.match.hostname: exactly one of exact, suffix",
    )
    grpc = {"match": {}, "action": GW_ACTION}
    bad(
        Kind.GATEWAY_ROUTE,
        {"grpcRoute": grpc},
        "spec.grpcRoute.match: Either serviceName or hostname must be specified",
    )


@pytest.mark.parametrize("prefix", ["/aws-appmesh", "/aws-app-mesh/x", "/aws-appmesh-admin"])
def test_gateway_route_reserved_paths(prefix: str) -> None:
    bad(Kind.GATEWAY_ROUTE, gw_http({"prefix": prefix}), "spec.httpRoute.match.prefix: must not")
    bad(
        Kind.GATEWAY_ROUTE,
        gw_http({"path": {"exact": prefix}}),
        "spec.httpRoute.match.path.exact: must not start with the reserved",
    )


@pytest.mark.parametrize("service", ["aws.appmesh.Admin", "aws.app-mesh.x"])
def test_gateway_route_reserved_grpc_services(service: str) -> None:
    grpc = {"match": {"serviceName": service}, "action": GW_ACTION}
    bad(Kind.GATEWAY_ROUTE, {"grpcRoute": grpc}, "spec.grpcRoute.match.serviceName: must not")


def test_gateway_route_rewrites() -> None:
    def action(rewrite: dict[str, Any]) -> dict[str, Any]:
        return {**GW_ACTION, "rewrite": rewrite}

    both = {"prefix": {"defaultPrefix": "DISABLED"}, "path": {"exact": "/x"}}
    bad(
        Kind.GATEWAY_ROUTE,
        gw_http({"prefix": "/a/"}, action(both)),
        "spec.httpRoute.action.rewrite: only one of prefix or path rewrite",
    )
    prefix = {"prefix": {"defaultPrefix": "ENABLED", "value": "/b/"}}
    bad(
        Kind.GATEWAY_ROUTE,
        gw_http({"prefix": "/a/"}, action(prefix)),
        "spec.httpRoute.action.rewrite.prefix: exactly one of defaultPrefix, value",
    )
    for value in ("b/", "/b", "b"):
        bad(
            Kind.GATEWAY_ROUTE,
            gw_http({"prefix": "/a/"}, action({"prefix": {"value": value}})),
            "spec.httpRoute.action.rewrite.prefix.value: New Rewrite Prefix must start and end",
        )
    good = gw_http({"prefix": "/a/"}, action({"prefix": {"value": "/b/"}, "hostname": {}}))
    assert dump_spec(parse_spec(Kind.GATEWAY_ROUTE, good)) == good
