"""App Mesh route matches as Envoy ``RouteMatch`` messages.

HTTP and HTTP/2 routes: ``prefix``, ``path`` (exact, or regex as ``safe_regex``), headers
(exact, prefix, suffix, regex, end-exclusive range, presence; ``invert``), ``method`` and
``scheme`` as ``:method``/``:scheme`` header matches, exact query parameters (presence when
no match is given).  gRPC routes: ``serviceName``/``methodName`` as the request path
(``/<service>/`` prefix or ``/<service>/<method>`` exactly) and metadata as header matches.
Port matches are applied earlier, when routes are assigned to router listeners
(:mod:`meshplane.translate.plan`).

Used by :mod:`meshplane.translate.routes` and :mod:`meshplane.translate.gateway_matches`.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import range_pb2

from meshplane.model.matches import HttpQueryParameter, HttpRouteHeader
from meshplane.model.route import GrpcRouteMatch, HttpRouteMatch


def http_route_match(match: HttpRouteMatch) -> rc.RouteMatch:
    """The Envoy match of an HTTP or HTTP/2 route."""
    result = rc.RouteMatch()
    if match.path is not None and match.path.exact is not None:
        result.path = match.path.exact
    elif match.path is not None and match.path.regex is not None:
        result.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=match.path.regex))
    else:
        result.prefix = match.prefix or "/"
    result.headers.extend(header_matcher(header) for header in match.headers or ())
    if match.method is not None:
        result.headers.append(exact_header(":method", match.method))
    if match.scheme is not None:
        result.headers.append(exact_header(":scheme", match.scheme))
    result.query_parameters.extend(query_matcher(q) for q in match.queryParameters or ())
    return result


def grpc_route_match(match: GrpcRouteMatch) -> rc.RouteMatch:
    """The Envoy match of a gRPC route: the service and method are the request path."""
    result = rc.RouteMatch()
    if match.serviceName is not None and match.methodName is not None:
        result.path = f"/{match.serviceName}/{match.methodName}"
    elif match.serviceName is not None:
        result.prefix = f"/{match.serviceName}/"
    else:
        result.prefix = "/"
    result.headers.extend(header_matcher(item) for item in match.metadata or ())
    return result


def match_all() -> rc.RouteMatch:
    return rc.RouteMatch(prefix="/")


def header_matcher(header: HttpRouteHeader) -> rc.HeaderMatcher:
    """An App Mesh header (or gRPC metadata) match; no match method means "present"."""
    result = rc.HeaderMatcher(name=header.name.lower(), invert_match=bool(header.invert))
    method = header.match
    if method is None:
        result.present_match = True
    elif method.range is not None:
        result.range_match.CopyFrom(
            range_pb2.Int64Range(start=method.range.start, end=method.range.end)
        )
    else:
        result.string_match.CopyFrom(
            _string_matcher(
                exact=method.exact, prefix=method.prefix, suffix=method.suffix, regex=method.regex
            )
        )
    return result


def _string_matcher(
    *, exact: str | None, prefix: str | None, suffix: str | None, regex: str | None
) -> string_pb2.StringMatcher:
    if exact is not None:
        return string_pb2.StringMatcher(exact=exact)
    if prefix is not None:
        return string_pb2.StringMatcher(prefix=prefix)
    if suffix is not None:
        return string_pb2.StringMatcher(suffix=suffix)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=regex or ""))


def exact_header(name: str, value: str) -> rc.HeaderMatcher:
    return rc.HeaderMatcher(name=name, string_match=string_pb2.StringMatcher(exact=value))


def query_matcher(query: HttpQueryParameter) -> rc.QueryParameterMatcher:
    if query.match is None or query.match.exact is None:
        return rc.QueryParameterMatcher(name=query.name, present_match=True)
    return rc.QueryParameterMatcher(
        name=query.name, string_match=string_pb2.StringMatcher(exact=query.match.exact)
    )
