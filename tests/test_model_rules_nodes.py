"""The App Mesh / controller rules for virtual nodes, virtual gateways and gateway routes."""

from __future__ import annotations

from typing import Any

import pytest

from meshplane.model import GatewayRouteSpec, Kind, VirtualNodeSpec, dump_spec, parse_spec
from tests.test_model_rules import DNS, GW_ACTION, SECOND, bad, gw_http

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


def test_python_name_of_json_member_is_not_wire_name() -> None:
    fmt = {"json_": [{"key": "a", "value": "b"}]}
    doc = {"logging": {"accessLog": {"file": {"path": "/dev/stdout", "format": fmt}}}}
    bad(Kind.VIRTUAL_NODE, doc, "spec.logging.accessLog.file.format.json_: is not a known member")
