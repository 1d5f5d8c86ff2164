"""Gateway route specs: how a virtual gateway sends requests to virtual services.

``GatewayRouteSpec`` and its HTTP/HTTP2/gRPC shapes, with the App Mesh rules: exactly one
route type; an HTTP match needs a prefix, path or hostname, a gRPC match a service name or
hostname; hostname exact XOR suffix; rewrite prefix XOR path, defaultPrefix XOR value, a
rewritten prefix starts and ends with '/'; reserved /aws-appmesh and /aws-app-mesh paths
and aws.appmesh / aws.app-mesh gRPC services are refused.  Used by
``meshplane.model.specs`` and by the gateway translation.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self, cast

from pydantic import Field, Strict, model_validator

from meshplane.model.common import (
    ListenerPort,
    Priority,
    Problems,
    ResourceName,
    ServiceName,
    SpecModel,
    String,
    UnicodeText,
)
from meshplane.model.matches import (
    GrpcGatewayRouteMetadata,
    HttpGatewayRouteHeader,
    HttpPathExact,
    HttpPathMatch,
    HttpQueryParameter,
    check_prefix_or_path,
)
from meshplane.model.route import HttpMethod
from meshplane.model.route_types import GATEWAY_ROUTE_TYPES, GatewayRouteType, OneRouteType

DefaultGatewayRouteRewrite = Literal["ENABLED", "DISABLED"]
ExactHostName = Annotated[str, Strict(), Field(min_length=1, max_length=253), UnicodeText]
SuffixHostname = ExactHostName
HttpGatewayRoutePrefix = Annotated[str, Strict(), Field(min_length=1, max_length=255), UnicodeText]
GatewayRoutePriority = Priority
RESERVED_PATH_PREFIXES = ("/aws-appmesh", "/aws-app-mesh")
RESERVED_GRPC_SERVICE_PREFIXES = ("aws.appmesh", "aws.app-mesh")


class GatewayRouteVirtualService(SpecModel):
    virtualServiceName: ResourceName


class GatewayRouteTarget(SpecModel):
    port: ListenerPort | None = None
    virtualService: GatewayRouteVirtualService


class GatewayRouteHostnameMatch(SpecModel):
    exact: ExactHostName | None = None
    suffix: SuffixHostname | None = None

    @model_validator(mode="after")
    def _exact_xor_suffix(self) -> Self:
        if (self.exact is None) == (self.suffix is None):
            problems = Problems()
            problems.add("", "exactly one of exact, suffix must be set")
            problems.raise_if_any()
        return self


class GatewayRouteHostnameRewrite(SpecModel):
    defaultTargetHostname: DefaultGatewayRouteRewrite | None = None


class HttpGatewayRoutePathRewrite(SpecModel):
    exact: HttpPathExact | None = None


class HttpGatewayRoutePrefixRewrite(SpecModel):
    defaultPrefix: DefaultGatewayRouteRewrite | None = None
    value: HttpGatewayRoutePrefix | None = None

    @model_validator(mode="after")
    def _default_xor_value(self) -> Self:
        problems = Problems()
        if (self.defaultPrefix is None) == (self.value is None):
            problems.add("", "exactly one of defaultPrefix, value must be set")
        if self.value is not None and not (self.value.startswith("/") and self.value.endswith("/")):
            problems.add(
                "value", f"New Rewrite Prefix must start and end with '/' (got {self.value!r})"
            )
        problems.raise_if_any()
        return self


class HttpGatewayRouteRewrite(SpecModel):
    hostname: GatewayRouteHostnameRewrite | None = None
    path: HttpGatewayRoutePathRewrite | None = None
    prefix: HttpGatewayRoutePrefixRewrite | None = None

    @model_validator(mode="after")
    def _prefix_xor_path(self) -> Self:
        if self.prefix is not None and self.path is not None:
            problems = Problems()
            problems.add("", "only one of prefix or path rewrite may be specified")
            problems.raise_if_any()
        return self


class HttpGatewayRouteAction(SpecModel):
    rewrite: HttpGatewayRouteRewrite | None = None
    target: GatewayRouteTarget


class GrpcGatewayRouteRewrite(SpecModel):
    hostname: GatewayRouteHostnameRewrite | None = None


class GrpcGatewayRouteAction(SpecModel):
    rewrite: GrpcGatewayRouteRewrite | None = None
    target: GatewayRouteTarget


def _reserved(value: str, prefixes: tuple[str, ...]) -> bool:
    return value.startswith(prefixes)


class HttpGatewayRouteMatch(SpecModel):
    headers: (
        Annotated[tuple[HttpGatewayRouteHeader, ...], Field(min_length=1, max_length=10)] | None
    ) = None
    hostname: GatewayRouteHostnameMatch | None = None
    method: HttpMethod | None = None
    path: HttpPathMatch | None = None
    port: ListenerPort | None = None
    prefix: String | None = None
    queryParameters: (
        Annotated[tuple[HttpQueryParameter, ...], Field(min_length=1, max_length=10)] | None
    ) = None

    @model_validator(mode="after")
    def _match_rules(self) -> Self:
        problems = Problems()
        missing = (
            None
            if self.hostname is not None
            else ("Either prefix or path or hostname must be specified")
        )
        check_prefix_or_path(problems, self.prefix, self.path, missing)
        reserved = " or ".join(RESERVED_PATH_PREFIXES)
        if self.prefix is not None and _reserved(self.prefix, RESERVED_PATH_PREFIXES):
            problems.add("prefix", f"must not start with the reserved {reserved}")
        if self.path is not None:
            member = "exact" if self.path.exact is not None else "regex"
            if _reserved(self.path.value, RESERVED_PATH_PREFIXES):
                problems.add(f"path.{member}", f"must not start with the reserved {reserved}")
        problems.raise_if_any()
        return self


class GrpcGatewayRouteMatch(SpecModel):
    hostname: GatewayRouteHostnameMatch | None = None
    metadata: (
        Annotated[tuple[GrpcGatewayRouteMetadata, ...], Field(min_length=1, max_length=10)] | None
    ) = None
    port: ListenerPort | None = None
    serviceName: ServiceName | None = None

    @model_validator(mode="after")
    def _match_rules(self) -> Self:
        problems = Problems()
        if self.serviceName is None and self.hostname is None:
            problems.add("", "Either serviceName or hostname must be specified")
        if self.serviceName is not None and _reserved(
            self.serviceName, RESERVED_GRPC_SERVICE_PREFIXES
        ):
            reserved = " or ".join(RESERVED_GRPC_SERVICE_PREFIXES)
            problems.add("serviceName", f"must not start with the reserved {reserved}")
        problems.raise_if_any()
        return self


class HttpGatewayRoute(SpecModel):
    action: HttpGatewayRouteAction
    match: HttpGatewayRouteMatch


class GrpcGatewayRoute(SpecModel):
    action: GrpcGatewayRouteAction
    match: GrpcGatewayRouteMatch


class GatewayRouteSpec(OneRouteType):
    """A gateway route: exactly one of httpRoute, http2Route, grpcRoute; priority 0..1000."""

    grpcRoute: GrpcGatewayRoute | None = None
    http2Route: HttpGatewayRoute | None = None
    httpRoute: HttpGatewayRoute | None = None
    priority: GatewayRoutePriority | None = None

    route_types = GATEWAY_ROUTE_TYPES

    @property
    def route_type(self) -> GatewayRouteType:
        """Which route member is set."""
        return cast(GatewayRouteType, self.chosen_route_type())
