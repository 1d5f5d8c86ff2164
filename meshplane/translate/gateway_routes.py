"""The route table of one virtual gateway listener: its gateway routes, routed into the mesh.

``rds_ingress_<proto>_<port>`` has one virtual host, ``ingress``, for every Host (a gateway
route's hostname match is a route condition).  The gateway routes come in order (priority,
then most specific: see :func:`~meshplane.translate.view.gateway_route_order`); each one's
target — a virtual service and, if given, its provider's port — resolves to one HTTP-like
backend of the gateway's plan (:func:`~meshplane.translate.plan.plan_services`), whose rules
are what a sidecar's egress would route that service with: one catch-all to a virtual node
provider, or a virtual router's routes for that port.  Every rule becomes one Envoy route
(``<gateway route>`` or ``<gateway route>/<route>``) matching the gateway route and the rule
together (:mod:`~meshplane.translate.gateway_matches`), with the rule's weighted clusters,
timeout and retry policy and the gateway route's rewrites.  A request the gateway route takes
but none of its rules does gets 404, as App Mesh's egress listener would answer it; so does
every request when the target cannot be resolved.  Requests no gateway route takes get
Envoy's 404.

Used by :mod:`meshplane.translate.gateway`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from meshplane.model.gateway_route import GatewayRouteSpec, GrpcGatewayRoute, HttpGatewayRoute
from meshplane.model.virtual_gateway import VirtualGatewayListener
from meshplane.translate import gateway_matches, names
from meshplane.translate.context import SharedContext
from meshplane.translate.plan import HttpBackend
from meshplane.translate.routes import egress_route
from meshplane.translate.view import NamedGatewayRoute

NOT_FOUND = 404


def gateway_route(spec: GatewayRouteSpec) -> HttpGatewayRoute | GrpcGatewayRoute:
    """The one route member of a gateway route spec."""
    route = getattr(spec, spec.route_type)
    assert isinstance(route, HttpGatewayRoute | GrpcGatewayRoute)
    return route


def route_config(
    ctx: SharedContext,
    listener: VirtualGatewayListener,
    routes: Sequence[NamedGatewayRoute],
    backends: Mapping[str, Sequence[HttpBackend]],
) -> tuple[route_pb2.RouteConfiguration, set[str]]:
    """The listener's route table and the clusters it sends to."""
    mapping = listener.portMapping
    out: list[rc.Route] = []
    clusters: set[str] = set()
    for named in routes:
        out.extend(_routes(ctx, named, mapping.protocol, backends, clusters))
    config = route_pb2.RouteConfiguration(
        name=names.ingress_route_config(mapping.protocol, mapping.port),
        virtual_hosts=[rc.VirtualHost(name=names.INGRESS_VIRTUAL_HOST, domains=["*"], routes=out)],
    )
    return config, clusters


def _routes(
    ctx: SharedContext,
    named: NamedGatewayRoute,
    protocol: str,
    backends: Mapping[str, Sequence[HttpBackend]],
    clusters: set[str],
) -> list[rc.Route]:
    route = gateway_route(named.spec)
    own = gateway_matches.gateway_conditions(route)
    fallback = rc.Route(name=named.name, match=own.route_match())
    fallback.direct_response.status = NOT_FOUND
    backend = _backend(ctx, named.name, route, protocol, backends)
    if backend is None:
        return [fallback]
    rewrite, problem = gateway_matches.path_rewrite(route)
    if problem is not None:
        ctx.problem(f"gateway route {named.name!r}: {problem}")
    hostname = gateway_matches.target_hostname(route, backend.service)
    out: list[rc.Route] = []
    for rule in backend.rules:
        try:
            conditions = gateway_matches.compose(
                own, gateway_matches.rule_conditions(rule.route), rewrite
            )
        except gateway_matches.NotComposable as error:
            ctx.problem(
                f"gateway route {named.name!r}: route {rule.name!r} of"
                f" {backend.service!r} is left out: {error}"
            )
            continue
        if conditions is None:
            continue  # no request the gateway route takes can reach this rule
        envoy_route = egress_route(rule)
        envoy_route.name = named.name if rule.route is None else f"{named.name}/{rule.name}"
        envoy_route.match.CopyFrom(conditions.route_match())
        if envoy_route.HasField("route"):
            action = envoy_route.route
            if hostname is not None:
                action.host_rewrite_literal = hostname
            rewrite.apply(action)
            clusters.update(c.name for c in action.weighted_clusters.clusters)
        out.append(envoy_route)
        if conditions == own:
            return out  # this rule takes every request the gateway route takes
    out.append(fallback)
    return out


def _backend(
    ctx: SharedContext,
    name: str,
    route: HttpGatewayRoute | GrpcGatewayRoute,
    protocol: str,
    backends: Mapping[str, Sequence[HttpBackend]],
) -> HttpBackend | None:
    """The backend a gateway route's target names (``target.port``, else the provider's only
    HTTP-like port, else its first of the route's protocol)."""
    target = route.action.target
    service = target.virtualService.virtualServiceName
    candidates = backends.get(service, ())
    where = f"gateway route {name!r}: target virtual service {service!r}"
    if target.port is not None:
        chosen = next((b for b in candidates if b.port == target.port), None)
        if chosen is None:
            ctx.problem(f"{where} has no HTTP, HTTP/2 or gRPC listener on port {target.port}")
        return chosen
    if not candidates:
        ctx.problem(f"{where} has no HTTP, HTTP/2 or gRPC listener to route to")
        return None
    if len(candidates) == 1:
        return candidates[0]
    chosen = next((b for b in candidates if b.protocol == protocol), candidates[0])
    ports = ", ".join(str(b.port) for b in candidates)
    ctx.problem(
        f"{where} has several listeners ({ports}) and the target names no port;"
        f" port {chosen.port} is used"
    )
    return chosen
