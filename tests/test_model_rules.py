"""Generic parsing behaviour and the mesh and route rules, each with its message and path.

Also holds the helpers (``bad``, ``http_route``, ``gw_http``) the other rule tests import.
"""

from __future__ import annotations

from typing import Any

import pytest

from meshplane.errors import BadRequestError
from meshplane.model import (
    Kind,
    MeshSpec,
    RouteSpec,
    dump_spec,
    parse_spec,
)
from meshplane.model.kinds import APP_MESH_KINDS

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
    for kind in APP_MESH_KINDS:
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
