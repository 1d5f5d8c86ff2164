"""The route types of App Mesh and the listener protocol each serves: one table.

A route (of a virtual router) is exactly one of ``httpRoute``, ``http2Route``, ``grpcRoute``
or ``tcpRoute``; a gateway route exactly one of the first three.  Each serves the listeners of
one protocol (:data:`ROUTE_PROTOCOLS`).  :func:`check_one_route_type` is the "exactly one
route type" rule of both specs; :func:`route_member` reads which one is set from spec JSON.

Pure; used by the route and gateway route models, the service layer's reference rules,
translation (routes and gateways) and the CLI's tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import model_validator

from meshplane.model.common import PortProtocol, Problems, SpecModel, VirtualGatewayPortProtocol

RouteType = Literal["httpRoute", "http2Route", "grpcRoute", "tcpRoute"]
GatewayRouteType = Literal["httpRoute", "http2Route", "grpcRoute"]

ROUTE_PROTOCOLS: Mapping[RouteType, PortProtocol] = {
    "httpRoute": "http",
    "http2Route": "http2",
    "grpcRoute": "grpc",
    "tcpRoute": "tcp",
}
"""Each route type and the listener protocol it serves."""
ROUTE_TYPES: tuple[RouteType, ...] = tuple(ROUTE_PROTOCOLS)
GATEWAY_ROUTE_TYPES: tuple[GatewayRouteType, ...] = ("httpRoute", "http2Route", "grpcRoute")
"""The route types a gateway route can be (every one but ``tcpRoute``)."""
GATEWAY_ROUTE_PROTOCOLS: Mapping[GatewayRouteType, VirtualGatewayPortProtocol] = {
    "httpRoute": "http",
    "http2Route": "http2",
    "grpcRoute": "grpc",
}
ROUTE_TYPE_OF_PROTOCOL: Mapping[PortProtocol, RouteType] = {
    protocol: route_type for route_type, protocol in ROUTE_PROTOCOLS.items()
}


def check_one_route_type(chosen: Iterable[str], types: Iterable[str]) -> None:
    """The rule of routes and gateway routes: of ``types``, exactly one member is set
    (``chosen``: the members that are)."""
    allowed = sorted(types)
    got = [member for member in chosen if member in allowed]
    if len(got) != 1:
        problems = Problems()
        problems.add(
            "",
            f"exactly one of {', '.join(allowed)} must be set (got {', '.join(got) or 'none'})",
        )
        problems.raise_if_any()


class OneRouteType(SpecModel):
    """A spec that is exactly one of ``route_types`` (a route, a gateway route)."""

    route_types: ClassVar[tuple[str, ...]]

    @model_validator(mode="after")
    def _one_route_type(self) -> Self:
        check_one_route_type(self.set_members(), self.route_types)
        return self

    def chosen_route_type(self) -> str:
        """Which route member is set."""
        for name in self.route_types:
            if getattr(self, name) is not None:
                return name
        raise AssertionError(f"a validated {type(self).__name__} has a route")


def route_member(spec: Mapping[str, Any], types: Iterable[str] = ROUTE_TYPES) -> str | None:
    """Which of ``types`` a (route or gateway route) spec's JSON sets, None if none."""
    return next((t for t in types if spec.get(t)), None)
