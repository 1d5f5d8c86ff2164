"""Gateway route matches and rewrites, and how they combine with the target's own routes.

A gateway route matches the request as the client sent it — a prefix, an exact or regex path,
the hostname (exact or suffix, any port, case-insensitive), headers, the method and query
parameters; gRPC: the service name, hostname and metadata — and rewrites it for its target:
the Host becomes the target virtual service's name (unless
``rewrite.hostname.defaultTargetHostname`` is DISABLED) and a matched prefix becomes ``/``
(unless ``rewrite.prefix.defaultPrefix`` is DISABLED, or it becomes ``rewrite.prefix.value``;
``rewrite.path.exact`` replaces the whole path instead).  The prefix rewrite is a
``regex_rewrite`` of ``^P/?`` (``P`` without its trailing slash), so under the prefix
``/chapter`` both ``/chapter/1`` and ``/chapter1`` become ``/1`` — what App Mesh's prefix
rewrite followed by its egress listener's slash merging gives.  The query string is kept.

App Mesh sends the rewritten request through the gateway's own egress listener, where the
target's virtual router routes it.  meshplane routes it in one hop, so each pair (gateway
route, router route) becomes one Envoy route matching *both*, on the original request
(:func:`compose`):

- the router route's headers, method, scheme and query parameters are not touched by the
  rewrite and are added as they are;
- its path match is carried back through the path rewrite: unchanged through no rewrite;
  decided here, once, through a fixed path; through a prefix rewrite ``P -> R`` a prefix or
  exact path ``R + T`` becomes the regex ``P/?T…`` on the original path, and a regex that
  starts with the literal ``R`` gets ``P/?`` instead (exact, unless the rest of the regex can
  match something starting with ``/``, which the rewrite never leaves).  Any other regex
  cannot be carried back: :class:`NotComposable` says why and the caller leaves the pair out;
- two path conditions that one ``RouteMatch`` path specifier cannot hold are split: the more
  specific is the specifier, the other a ``:path`` header match (query string allowed).

Used by :mod:`meshplane.translate.gateway_routes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from meshplane.model.gateway_route import (
    GatewayRouteHostnameMatch,
    GrpcGatewayRoute,
    HttpGatewayRoute,
)
from meshplane.model.route import GrpcRoute, HttpRoute
from meshplane.translate.matches import (
    exact_header,
    grpc_route_match,
    header_matcher,
    http_route_match,
    query_matcher,
)

PathKind = Literal["prefix", "exact", "regex"]
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")
_QUANTIFIERS = ("*", "+", "?", "{")
_QUERY = r"(?:\?.*)?"
_SPECIFICITY = {"exact": 0, "regex": 1, "prefix": 2}


class NotComposable(Exception):
    """A router route's path match cannot be carried back through a gateway route's rewrite."""


@dataclass(frozen=True, slots=True)
class PathCondition:
    """A condition on the request path (without the query string)."""

    kind: PathKind
    value: str


@dataclass(frozen=True, slots=True)
class PathRewrite:
    """How a gateway route rewrites the path: nothing, a matched prefix, or the whole path."""

    prefix: str | None = None
    """The matched prefix without its trailing slash (``""`` for ``/``)."""
    replacement: str = "/"
    exact: str | None = None

    def apply(self, action: rc.RouteAction) -> None:
        """Set the rewrite on ``action``."""
        if self.exact is not None:
            pattern, substitution = "^.*$", self.exact
        elif self.prefix is not None:
            pattern, substitution = f"^{escape(self.prefix)}/?", self.replacement
        else:
            return
        action.regex_rewrite.CopyFrom(
            regex_pb2.RegexMatchAndSubstitute(
                pattern=regex_pb2.RegexMatcher(regex=pattern), substitution=substitution
            )
        )


NO_REWRITE = PathRewrite()


@dataclass(frozen=True, slots=True)
class Conditions:
    """Everything a route requires: path conditions (all hold), headers, query parameters."""

    paths: tuple[PathCondition, ...] = ()
    headers: tuple[rc.HeaderMatcher, ...] = ()
    queries: tuple[rc.QueryParameterMatcher, ...] = ()

    def route_match(self) -> rc.RouteMatch:
        """The Envoy match: the first path condition as the path specifier, any other as a
        ``:path`` header match."""
        match = rc.RouteMatch()
        first, *rest = self.paths or (PathCondition("prefix", "/"),)
        if first.kind == "prefix":
            match.prefix = first.value
        elif first.kind == "exact":
            match.path = first.value
        else:
            match.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=first.value))
        for extra in rest:
            match.headers.append(_path_header(extra))
        match.headers.extend(self.headers)
        match.query_parameters.extend(self.queries)
        return match


def escape(text: str) -> str:
    """``text`` as an RE2 literal."""
    return "".join(f"\\{c}" if c in _RE2_SPECIAL else c for c in text)


def gateway_conditions(route: HttpGatewayRoute | GrpcGatewayRoute) -> Conditions:
    """What a gateway route itself requires of a request."""
    headers: list[rc.HeaderMatcher] = []
    paths: tuple[PathCondition, ...] = ()
    queries: tuple[rc.QueryParameterMatcher, ...] = ()
    if isinstance(route, GrpcGatewayRoute):
        grpc = route.match
        if grpc.serviceName is not None:
            paths = (PathCondition("prefix", f"/{grpc.serviceName}/"),)
        headers.extend(header_matcher(item) for item in grpc.metadata or ())
        hostname = grpc.hostname
    else:
        http = route.match
        if http.path is not None and http.path.exact is not None:
            paths = (PathCondition("exact", http.path.exact),)
        elif http.path is not None and http.path.regex is not None:
            paths = (PathCondition("regex", http.path.regex),)
        elif http.prefix is not None and http.prefix != "/":
            paths = (PathCondition("prefix", http.prefix),)
        headers.extend(header_matcher(header) for header in http.headers or ())
        if http.method is not None:
            headers.append(exact_header(":method", http.method))
        queries = tuple(query_matcher(q) for q in http.queryParameters or ())
        hostname = http.hostname
    if hostname is not None:
        headers.append(_hostname_matcher(hostname))
    return Conditions(paths, tuple(headers), queries)


def path_rewrite(route: HttpGatewayRoute | GrpcGatewayRoute) -> tuple[PathRewrite, str | None]:
    """The path rewrite of a gateway route, and a problem when its rewrite cannot apply."""
    if isinstance(route, GrpcGatewayRoute):
        return NO_REWRITE, None
    rewrite = route.action.rewrite
    if rewrite is not None and rewrite.path is not None and rewrite.path.exact is not None:
        return PathRewrite(exact=rewrite.path.exact), None
    prefix = rewrite.prefix if rewrite is not None else None
    matched = route.match.prefix
    if matched is None:
        problem = None
        if prefix is not None:
            problem = "rewrite.prefix needs a prefix match and is ignored"
        return NO_REWRITE, problem
    if prefix is not None and prefix.defaultPrefix == "DISABLED":
        return NO_REWRITE, None
    replacement = prefix.value if prefix is not None and prefix.value is not None else "/"
    stripped = matched.rstrip("/")
    if not stripped and replacement == "/":
        return NO_REWRITE, None
    return PathRewrite(prefix=stripped, replacement=replacement), None


def target_hostname(route: HttpGatewayRoute | GrpcGatewayRoute, service: str) -> str | None:
    """The Host a request leaves with: the target service's name unless rewriting is off."""
    rewrite = route.action.rewrite
    hostname = rewrite.hostname if rewrite is not None else None
    if hostname is not None and hostname.defaultTargetHostname == "DISABLED":
        return None
    return service


def rule_conditions(route: HttpRoute | GrpcRoute | None) -> Conditions:
    """What a target's route (None: a virtual node provider, which takes everything)
    requires of the request it sees."""
    if route is None:
        return Conditions()
    match = (
        grpc_route_match(route.match)
        if isinstance(route, GrpcRoute)
        else (http_route_match(route.match))
    )
    which = match.WhichOneof("path_specifier")
    paths: tuple[PathCondition, ...] = ()
    if which == "path":
        paths = (PathCondition("exact", match.path),)
    elif which == "safe_regex":
        paths = (PathCondition("regex", match.safe_regex.regex),)
    elif match.prefix != "/":
        paths = (PathCondition("prefix", match.prefix),)
    return Conditions(paths, tuple(match.headers), tuple(match.query_parameters))


def compose(gateway: Conditions, rule: Conditions, rewrite: PathRewrite) -> Conditions | None:
    """The conditions, on the original request, of the gateway route followed by the rule;
    None when no request can meet both.  Raises :class:`NotComposable`."""
    paths = list(gateway.paths)
    for condition in rule.paths:
        carried = _carry(condition, rewrite)
        if carried is False:
            return None
        if carried is not True:
            paths.append(carried)
    narrowed = _intersect(paths)
    if narrowed is None:
        return None
    return Conditions(narrowed, gateway.headers + rule.headers, gateway.queries + rule.queries)


def _carry(condition: PathCondition, rewrite: PathRewrite) -> PathCondition | bool:
    """``condition`` on the rewritten path as a condition on the original one; True: always
    met, False: never."""
    kind, value = condition.kind, condition.value
    if rewrite.exact is not None:
        met = _fullmatch(condition, rewrite.exact)
        if met is None:
            raise NotComposable(
                f"its path regex {value!r} cannot be checked against the rewritten path"
            )
        return met
    if rewrite.prefix is None:
        return condition
    head, replacement = escape(rewrite.prefix) + "/?", rewrite.replacement
    if kind == "regex":
        rest = _strip_literal(value, replacement)
        if rest is None:
            raise NotComposable(
                f"its path regex {value!r} does not start with the rewritten prefix"
                f" {replacement!r}, so it cannot be matched before the rewrite"
            )
        return PathCondition("regex", f"{head}(?:{rest})")
    if kind == "prefix" and len(value) <= len(replacement):
        return replacement.startswith(value)
    if not value.startswith(replacement):
        return False
    tail = value[len(replacement) :]
    if tail.startswith("/"):
        return False  # the rewrite never leaves "//" (slashes are merged before it)
    return PathCondition("regex", head + escape(tail) + (".*" if kind == "prefix" else ""))


def _intersect(paths: list[PathCondition]) -> tuple[PathCondition, ...] | None:
    """The conditions without those another one implies; None when two contradict."""
    kept: list[PathCondition] = []
    for condition in paths:
        needed = True
        survivors = []
        for other in kept:
            verdict = _combine(other, condition)
            if verdict == "never":
                return None
            if verdict != "second":
                survivors.append(other)
            needed = needed and verdict != "first"
        kept = survivors + ([condition] if needed else [])
    return tuple(sorted(dict.fromkeys(kept), key=lambda c: _SPECIFICITY[c.kind]))


def _combine(
    first: PathCondition, second: PathCondition
) -> Literal["first", "second", "both", "never"]:
    """Which of two conditions implies the other (that one is enough), "both" when neither
    does or it cannot be told, "never" when no path meets both."""
    if first.kind == "exact" or second.kind == "exact":
        exact, other = (first, second) if first.kind == "exact" else (second, first)
        met = _fullmatch(other, exact.value)
        if met is None:
            return "both"
        if not met:
            return "never"
        return "first" if exact is first else "second"
    if first.kind == "prefix" and second.kind == "prefix":
        if first.value.startswith(second.value):
            return "first"
        return "second" if second.value.startswith(first.value) else "never"
    return "both"


def _fullmatch(condition: PathCondition, path: str) -> bool | None:
    """Whether ``path`` meets ``condition``; None when the regex is not one Python reads."""
    if condition.kind == "prefix":
        return path.startswith(condition.value)
    if condition.kind == "exact":
        return path == condition.value
    try:
        return re.fullmatch(condition.value, path) is not None
    except re.error:
        return None


def _strip_literal(regex: str, literal: str) -> str | None:
    """``regex`` without its leading literal ``literal``, or None when it does not start so."""
    if _has_top_level_alternation(regex):
        return None
    body = regex[1:] if regex.startswith("^") else regex
    prefix = escape(literal)
    if not body.startswith(prefix):
        return None
    rest = body[len(prefix) :]
    if rest.startswith(_QUANTIFIERS):
        return None  # the quantifier applies to the literal's last character
    return rest


def _has_top_level_alternation(regex: str) -> bool:
    depth, i, in_class = 0, 0, False
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return True
        i += 1
    return False


def _path_header(condition: PathCondition) -> rc.HeaderMatcher:
    """A path condition as a match of the ``:path`` header, which carries the query."""
    if condition.kind == "prefix":
        matcher = string_pb2.StringMatcher(prefix=condition.value)
    else:
        regex = escape(condition.value) if condition.kind == "exact" else condition.value
        matcher = string_pb2.StringMatcher(
            safe_regex=regex_pb2.RegexMatcher(regex=f"(?:{regex}){_QUERY}")
        )
    return rc.HeaderMatcher(name=":path", string_match=matcher)


def _hostname_matcher(hostname: GatewayRouteHostnameMatch) -> rc.HeaderMatcher:
    """The Host (``:authority``), with or without a port, case-insensitively."""
    if hostname.exact is not None:
        pattern = escape(hostname.exact)
    else:
        pattern = ".*" + escape(hostname.suffix or "")
    return rc.HeaderMatcher(
        name=":authority",
        string_match=string_pb2.StringMatcher(
            safe_regex=regex_pb2.RegexMatcher(regex=f"(?i){pattern}(?::[0-9]+)?")
        ),
    )
