"""Folding a target's router routes into a gateway route gives the same answer as App Mesh's two
hops (match the gateway route, rewrite, then match the router route on the rewritten path).

The reference here plays both hops on a path with Python's ``re`` (the rewrite is the very
pattern Envoy gets), and the composed conditions are evaluated the way Envoy evaluates a route
match; the two must agree for every gateway match, rewrite and router match below, on every
short path.  Real Envoy runs the same rules in ``test_e2e_gateway.py``.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from meshplane.model import GatewayRouteSpec, Kind, RouteSpec, parse_spec
from meshplane.translate import gateway_matches as gm
from meshplane.translate.gateway_matches import Conditions, PathCondition, PathRewrite

SEGMENTS = ["a", "ab", "api", "b", "1", "aapi", "x1"]
GATEWAY_MATCHES: list[dict[str, Any]] = [
    {"prefix": "/"},
    {"prefix": "/a"},
    {"prefix": "/a/"},
    {"prefix": "/ab"},
    {"prefix": "/api/"},
    {"path": {"exact": "/a/1"}},
    {"path": {"regex": "/a.*"}},
    {"hostname": {"exact": "h.example.com"}},
]
REWRITES: list[dict[str, Any] | None] = [
    None,
    {"prefix": {"defaultPrefix": "DISABLED"}},
    {"prefix": {"defaultPrefix": "ENABLED"}},
    {"prefix": {"value": "/b/"}},
    {"prefix": {"value": "/api/"}},
    {"path": {"exact": "/api/1"}},
    {"path": {"exact": "/b"}},
]
ROUTE_MATCHES: list[dict[str, Any]] = [
    {"prefix": "/"},
    {"prefix": "/a"},
    {"prefix": "/api"},
    {"prefix": "/b/a"},
    {"prefix": "/api/1"},
    {"prefix": "/b/"},
    {"prefix": "/1"},
    {"prefix": "/b//"},
    {"path": {"exact": "/"}},
    {"path": {"exact": "/a"}},
    {"path": {"exact": "/api"}},
    {"path": {"exact": "/b/a"}},
    {"path": {"exact": "/api/1"}},
    {"path": {"exact": "/b/"}},
    {"path": {"regex": "/a.*"}},
    {"path": {"regex": "/api/[0-9]+"}},
    {"path": {"regex": "/b/.*"}},
    {"path": {"regex": "^/b/a$"}},
    {"path": {"regex": "/(a|b)"}},
    {"path": {"regex": ".*1"}},
    {"path": {"regex": "/a|/b"}},
    {"path": {"regex": "/b?a"}},
    {"path": {"regex": "/b/?a"}},
]

PATHS = sorted(
    {
        "/" + "/".join(parts) + tail
        for depth in range(4)
        for parts in itertools.product(SEGMENTS, repeat=depth)
        for tail in ("", "/")
        if parts or not tail
    }
)
"""Every normalized path of up to three segments, with and without a trailing slash."""


def gateway_route(match: dict[str, Any], rewrite: dict[str, Any] | None) -> Any:
    action: dict[str, Any] = {"target": {"virtualService": {"virtualServiceName": "s"}}}
    if rewrite is not None:
        action["rewrite"] = rewrite
    spec = parse_spec(Kind.GATEWAY_ROUTE, {"httpRoute": {"match": match, "action": action}})
    assert isinstance(spec, GatewayRouteSpec) and spec.httpRoute is not None
    return spec.httpRoute


def router_route(match: dict[str, Any]) -> Any:
    spec = parse_spec(
        Kind.ROUTE,
        {
            "httpRoute": {
                "match": match,
                "action": {"weightedTargets": [{"virtualNode": "n", "weight": 1}]},
            }
        },
    )
    assert isinstance(spec, RouteSpec) and spec.httpRoute is not None
    return spec.httpRoute


def meets(condition: PathCondition, path: str) -> bool:
    if condition.kind == "prefix":
        return path.startswith(condition.value)
    if condition.kind == "exact":
        return path == condition.value
    return re.fullmatch(condition.value, path) is not None


def envoy_matches(match: Any, path: str) -> bool:
    """An Envoy route match, evaluated on a path without query string."""
    which = match.WhichOneof("path_specifier")
    if which == "prefix" and not path.startswith(match.prefix):
        return False
    if which == "path" and path != match.path:
        return False
    if which == "safe_regex" and re.fullmatch(match.safe_regex.regex, path) is None:
        return False
    for header in match.headers:
        if header.name != ":path":
            continue
        string = header.string_match
        if string.prefix and not path.startswith(string.prefix):
            return False
        if string.HasField("safe_regex") and re.fullmatch(string.safe_regex.regex, path) is None:
            return False
    return True


def rewritten(rewrite: PathRewrite, path: str) -> str:
    if rewrite.exact is not None:
        return rewrite.exact
    if rewrite.prefix is None:
        return path
    return re.sub(f"^{gm.escape(rewrite.prefix)}/?", rewrite.replacement, path, count=1)


@pytest.mark.parametrize("rewrite_spec", REWRITES)
@pytest.mark.parametrize("gateway_match", GATEWAY_MATCHES)
def test_composed_route_matches_the_two_hops(
    gateway_match: dict[str, Any], rewrite_spec: dict[str, Any] | None
) -> None:
    gateway = gateway_route(gateway_match, rewrite_spec)
    own = gm.gateway_conditions(gateway)
    rewrite, _ = gm.path_rewrite(gateway)
    left_out = []
    for route_match in ROUTE_MATCHES:
        rule = gm.rule_conditions(router_route(route_match))
        try:
            composed = gm.compose(own, rule, rewrite)
        except gm.NotComposable:
            left_out.append(route_match["path"]["regex"])
            continue
        match = composed.route_match() if composed is not None else None
        for path in PATHS:
            first_hop = all(meets(c, path) for c in own.paths)
            expected = first_hop and all(meets(c, rewritten(rewrite, path)) for c in rule.paths)
            got = match is not None and envoy_matches(match, path)
            assert got == expected, (route_match, path, rewritten(rewrite, path), composed)
    if rewrite.prefix is not None:
        # a regex can follow a prefix rewrite when it starts with the new prefix literally
        assert set(left_out) <= {
            "/a|/b",
            ".*1",
            "/b?a",
            "/(a|b)",
            "/a.*",
            "/api/[0-9]+",
            "/b/.*",
            "^/b/a$",
            "/b/?a",
        }
        assert ".*1" in left_out and "/a|/b" in left_out
    else:
        assert left_out == []


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("/chapter", "/chapter/1", "/1"),
        ("/chapter", "/chapter1", "/1"),
        ("/chapter", "/chapter", "/"),
        ("/chapter/", "/chapter/1", "/1"),
        ("/", "/x/y", "/x/y"),
    ],
)
def test_default_prefix_rewrite_as_app_mesh_documents(
    prefix: str, path: str, expected: str
) -> None:
    rewrite, problem = gm.path_rewrite(gateway_route({"prefix": prefix}, None))
    assert problem is None
    assert rewritten(rewrite, path) == expected


def test_regex_escape_is_literal_in_re2_and_python() -> None:
    text = "a.b+c*d?e(f)g|h[i]j{k}l^m$n\\o"
    assert re.fullmatch(gm.escape(text), text)
    assert gm.escape("/plain/path-1_x") == "/plain/path-1_x"


def test_contradictions_and_implications_are_decided_here() -> None:
    def conditions(*items: tuple[str, str]) -> Conditions:
        return Conditions(tuple(PathCondition(k, v) for k, v in items))  # type: ignore[arg-type]

    no_rewrite = PathRewrite()
    assert (
        gm.compose(conditions(("prefix", "/a")), conditions(("prefix", "/b")), no_rewrite) is None
    )
    assert gm.compose(
        conditions(("prefix", "/a")), conditions(("prefix", "/a/b")), no_rewrite
    ) == conditions(("prefix", "/a/b"))
    assert gm.compose(
        conditions(("exact", "/a/1")), conditions(("regex", "/a/[0-9]")), no_rewrite
    ) == conditions(("exact", "/a/1"))
    assert (
        gm.compose(conditions(("exact", "/a/x")), conditions(("regex", "/a/[0-9]")), no_rewrite)
        is None
    )
    both = gm.compose(conditions(("prefix", "/a")), conditions(("regex", "/a/[0-9]")), no_rewrite)
    assert both == conditions(("regex", "/a/[0-9]"), ("prefix", "/a"))
    assert both is not None
    match = both.route_match()
    assert match.safe_regex.regex == "/a/[0-9]"
    assert [(h.name, h.string_match.prefix) for h in match.headers] == [(":path", "/a")]
