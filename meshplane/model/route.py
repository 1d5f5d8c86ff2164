"""Route specs: HTTP, HTTP/2, gRPC and TCP routes of a virtual router.

``RouteSpec`` and every shape under it, with the App Mesh rules: exactly one route type,
a match needs a prefix ('/'-rooted) or a path, a gRPC method name needs a service name,
retry policies name at least one retry event from the documented sets.  Used by
``meshplane.model.specs`` (parse/dump) and by the route translation.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self, cast

from pydantic import Field, Strict, model_validator

from meshplane.model.common import (
    INT64_MAX,
    Duration,
    GrpcTimeout,
    HttpTimeout,
    ListenerPort,
    PercentInt,
    Priority,
    Problems,
    ResourceName,
    ServiceName,
    SpecModel,
    String,
    TcpTimeout,
    UnicodeText,
)
from meshplane.model.matches import (
    GrpcRouteMetadata,
    HttpPathMatch,
    HttpQueryParameter,
    HttpRouteHeader,
    check_prefix_or_path,
)
from meshplane.model.route_types import ROUTE_TYPES, OneRouteType, RouteType

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
HttpScheme = Literal["http", "https"]
TcpRetryPolicyEvent = Literal["connection-error"]
GrpcRetryPolicyEvent = Literal[
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"
]
HttpRetryPolicyEvent = Annotated[str, Strict(), Field(min_length=1, max_length=25), UnicodeText]
HTTP_RETRY_EVENTS = ("server-error", "gateway-error", "client-error", "stream-error")
MaxRetries = Annotated[int, Strict(), Field(ge=0, le=INT64_MAX)]
MethodName = Annotated[str, Strict(), Field(min_length=1, max_length=50), UnicodeText]
RoutePriority = Priority


class WeightedTarget(SpecModel):
    port: ListenerPort | None = None
    virtualNode: ResourceName
    weight: PercentInt


WeightedTargets = Annotated[tuple[WeightedTarget, ...], Field(min_length=1, max_length=10)]


class HttpRouteAction(SpecModel):
    weightedTargets: WeightedTargets


GrpcRouteAction = HttpRouteAction
TcpRouteAction = HttpRouteAction


class HttpRouteMatch(SpecModel):
    headers: Annotated[tuple[HttpRouteHeader, ...], Field(min_length=1, max_length=10)] | None = (
        None
    )
    method: HttpMethod | None = None
    path: HttpPathMatch | None = None
    port: ListenerPort | None = None
    prefix: String | None = None
    queryParameters: (
        Annotated[tuple[HttpQueryParameter, ...], Field(min_length=1, max_length=10)] | None
    ) = None
    scheme: HttpScheme | None = None

    @model_validator(mode="after")
    def _prefix_or_path(self) -> Self:
        problems = Problems()
        check_prefix_or_path(
            problems, self.prefix, self.path, "Either prefix or path must be specified"
        )
        problems.raise_if_any()
        return self


def _check_retry_events(problems: Problems, events: dict[str, tuple[str, ...] | None]) -> None:
    """At least one kind of retry event; HTTP events from the documented set."""
    if not any(events.values()):
        problems.add("", f"at least one of {', '.join(events)} must be given")
    allowed = ", ".join(HTTP_RETRY_EVENTS)
    for i, event in enumerate(events.get("httpRetryEvents") or ()):
        if event not in HTTP_RETRY_EVENTS:
            problems.add(f"httpRetryEvents[{i}]", f"must be one of {allowed} (got {event!r})")


class HttpRetryPolicy(SpecModel):
    httpRetryEvents: (
        Annotated[tuple[HttpRetryPolicyEvent, ...], Field(min_length=1, max_length=25)] | None
    ) = None
    maxRetries: MaxRetries
    perRetryTimeout: Duration
    tcpRetryEvents: (
        Annotated[tuple[TcpRetryPolicyEvent, ...], Field(min_length=1, max_length=1)] | None
    ) = None

    @model_validator(mode="after")
    def _events(self) -> Self:
        problems = Problems()
        _check_retry_events(
            problems,
            {"httpRetryEvents": self.httpRetryEvents, "tcpRetryEvents": self.tcpRetryEvents},
        )
        problems.raise_if_any()
        return self


class GrpcRetryPolicy(SpecModel):
    grpcRetryEvents: (
        Annotated[tuple[GrpcRetryPolicyEvent, ...], Field(min_length=1, max_length=5)] | None
    ) = None
    httpRetryEvents: (
        Annotated[tuple[HttpRetryPolicyEvent, ...], Field(min_length=1, max_length=25)] | None
    ) = None
    maxRetries: MaxRetries
    perRetryTimeout: Duration
    tcpRetryEvents: (
        Annotated[tuple[TcpRetryPolicyEvent, ...], Field(min_length=1, max_length=1)] | None
    ) = None

    @model_validator(mode="after")
    def _events(self) -> Self:
        problems = Problems()
        _check_retry_events(
            problems,
            {
                "grpcRetryEvents": self.grpcRetryEvents,
                "httpRetryEvents": self.httpRetryEvents,
                "tcpRetryEvents": self.tcpRetryEvents,
            },
        )
        problems.raise_if_any()
        return self


class HttpRoute(SpecModel):
    action: HttpRouteAction
    match: HttpRouteMatch
    retryPolicy: HttpRetryPolicy | None = None
    timeout: HttpTimeout | None = None


class GrpcRouteMatch(SpecModel):
    metadata: (
        Annotated[tuple[GrpcRouteMetadata, ...], Field(min_length=1, max_length=10)] | None
    ) = None
    methodName: MethodName | None = None
    port: ListenerPort | None = None
    serviceName: ServiceName | None = None

    @model_validator(mode="after")
    def _method_needs_service(self) -> Self:
        if self.methodName is not None and self.serviceName is None:
            problems = Problems()
            problems.add("methodName", "requires serviceName to be specified")
            problems.raise_if_any()
        return self


class GrpcRoute(SpecModel):
    action: GrpcRouteAction
    match: GrpcRouteMatch
    retryPolicy: GrpcRetryPolicy | None = None
    timeout: GrpcTimeout | None = None


class TcpRouteMatch(SpecModel):
    port: ListenerPort | None = None


class TcpRoute(SpecModel):
    action: TcpRouteAction
    match: TcpRouteMatch | None = None
    timeout: TcpTimeout | None = None


class RouteSpec(OneRouteType):
    """A route: exactly one of httpRoute, http2Route, grpcRoute, tcpRoute; priority 0..1000."""

    grpcRoute: GrpcRoute | None = None
    http2Route: HttpRoute | None = None
    httpRoute: HttpRoute | None = None
    priority: RoutePriority | None = None
    tcpRoute: TcpRoute | None = None

    route_types = ROUTE_TYPES

    @property
    def route_type(self) -> RouteType:
        """Which route member is set."""
        return cast(RouteType, self.chosen_route_type())
