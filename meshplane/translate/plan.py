"""What a virtual node's egress needs: its backends resolved down to provider listeners.

:func:`plan_egress` follows each backend virtual service of the node to its provider — a
virtual node (every listener of it) or a virtual router (each router listener with the
routes of that protocol whose port match fits it, in priority order) — and resolves every
weighted target to the provider listener it names (``target.port``, or the node's only
listener, or its first listener of the route's protocol).  The result, an
:class:`EgressPlan`, is what the route, listener and cluster builders render: HTTP-like
backends become virtual hosts, TCP backends their own listeners, and every provider listener
reached becomes one ``cds_egress_…`` cluster.  Only the declared backends are visited, so the
plan's size does not depend on the mesh's.  :func:`plan_services` does the same for any list of
virtual services (a virtual gateway plans the services its gateway routes target).

Called by :mod:`meshplane.translate.proxy` and :mod:`meshplane.translate.gateway`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from meshplane.model.common import Duration, PortProtocol
from meshplane.model.route import GrpcRoute, HttpRoute, HttpRouteAction, RouteSpec
from meshplane.model.route_types import ROUTE_TYPE_OF_PROTOCOL
from meshplane.model.virtual_node import Listener, VirtualNodeSpec
from meshplane.translate import names
from meshplane.translate.context import SharedContext
from meshplane.translate.view import NamedRoute

HttpProtocol = Literal["http", "http2", "grpc"]


@dataclass(frozen=True, slots=True)
class Provider:
    """One listener of a provider virtual node, as consumers reach it: one egress cluster."""

    node: str
    spec: VirtualNodeSpec
    listener: Listener
    cluster: str

    @property
    def protocol(self) -> PortProtocol:
        return self.listener.portMapping.protocol

    @property
    def port(self) -> int:
        return self.listener.portMapping.port


@dataclass(frozen=True, slots=True)
class Target:
    """A weighted egress cluster."""

    cluster: str
    weight: int


@dataclass(frozen=True, slots=True)
class HttpRule:
    """One Envoy route: an App Mesh route, or (``route`` None) a virtual node provider."""

    name: str
    protocol: HttpProtocol
    route: HttpRoute | GrpcRoute | None
    targets: tuple[Target, ...]
    stat_prefix: str = ""
    """The Envoy route's ``stat_prefix`` (:func:`~meshplane.translate.names.route_stat_prefix`):
    per-route stats the telemetry reads as the service edge."""


@dataclass(frozen=True, slots=True)
class HttpBackend:
    """One virtual host of the egress route table: a service on one provider port."""

    service: str
    virtual_host: str
    port: int
    protocol: HttpProtocol
    domains: tuple[str, ...]
    rules: tuple[HttpRule, ...]


@dataclass(frozen=True, slots=True)
class TcpBackend:
    """One TCP backend port: a local listener proxying to the targets."""

    service: str
    port: int
    first: bool
    """The service's first TCP port (``ProxyOptions.tcp_egress_ports`` may name it by service)."""
    targets: tuple[Target, ...]
    idle: Duration | None


@dataclass(frozen=True, slots=True)
class EgressPlan:
    http: tuple[HttpBackend, ...]
    tcp: tuple[TcpBackend, ...]
    providers: tuple[Provider, ...]


def plan_egress(ctx: SharedContext, node: VirtualNodeSpec) -> EgressPlan:
    """Resolve the backends of ``node`` (see the module docstring)."""
    return plan_services(
        ctx,
        [
            backend.virtualService.virtualServiceName
            for backend in node.backends or ()
            if backend.virtualService is not None
        ],
    )


def plan_services(ctx: SharedContext, services: Iterable[str]) -> EgressPlan:
    """Resolve the virtual services ``services`` (a node's backends, or the targets of a
    gateway's routes), each once, in order.

    A service resolves the same way for every proxy (its virtual hosts are numbered within the
    service only), so each is resolved once per view (:func:`_service_plan`) and the plan is
    their concatenation, the providers in first-seen order."""
    http: list[HttpBackend] = []
    tcp: list[TcpBackend] = []
    providers: dict[str, Provider] = {}
    for service in dict.fromkeys(services):
        part = _service_plan(ctx, service)
        http.extend(part.http)
        tcp.extend(part.tcp)
        for provider in part.providers:
            providers.setdefault(provider.cluster, provider)
    return EgressPlan(tuple(http), tuple(tcp), tuple(providers.values()))


def _service_plan(ctx: SharedContext, service: str) -> EgressPlan:
    """One service's plan, resolved once per view (:meth:`Context.shared`)."""

    def build(own: SharedContext) -> EgressPlan:
        planner = _Planner(own)
        planner.add_service(service)
        return EgressPlan(
            tuple(planner.http), tuple(planner.tcp), tuple(planner.providers.values())
        )

    return ctx.shared(service_plan_key(service), build)


def service_plan_key(service: str) -> tuple[str, str]:
    """The view memo's key of a service's plan (its inputs are what the service's egress
    virtual host is made from too)."""
    return ("service-plan", service)


class _Planner:
    def __init__(self, ctx: SharedContext) -> None:
        self.ctx = ctx
        self.http: list[HttpBackend] = []
        self.tcp: list[TcpBackend] = []
        self.providers: dict[str, Provider] = {}

    def add_service(self, name: str) -> None:
        ctx = self.ctx
        service = ctx.service(name)
        if service is None:
            ctx.problem(f"backend virtual service {name!r} does not exist")
            return
        provider = service.provider
        if provider is None:
            ctx.problem(f"backend virtual service {name!r} has no provider")
        elif provider.virtualNode is not None:
            self._node_provider(name, provider.virtualNode.virtualNodeName)
        elif provider.virtualRouter is not None:
            self._router_provider(name, provider.virtualRouter.virtualRouterName)

    def _node_provider(self, service: str, node_name: str) -> None:
        node = self.ctx.node(node_name)
        if node is None or not node.listeners:
            what = "does not exist" if node is None else "has no listeners"
            self.ctx.problem(f"virtual node {node_name!r} (provider of {service!r}) {what}")
            return
        for listener in node.listeners:
            provider = self._provider(node_name, node, listener)
            targets = (Target(provider.cluster, 100),)
            protocol = provider.protocol
            if protocol == "tcp":
                self._add_tcp(service, provider.port, targets, None)
            else:
                prefix = names.route_stat_prefix(service, "", "")
                rule = HttpRule(service, protocol, None, targets, prefix)
                self._add_http(service, provider.port, protocol, (rule,))

    def _router_provider(self, service: str, router_name: str) -> None:
        router = self.ctx.router(router_name)
        if router is None or not router.listeners:
            what = "does not exist" if router is None else "has no listeners"
            self.ctx.problem(f"virtual router {router_name!r} (provider of {service!r}) {what}")
            return
        routes = self.ctx.routes(router_name)
        for router_listener in router.listeners:
            protocol = router_listener.portMapping.protocol
            port = router_listener.portMapping.port
            fitting = [r for r in routes if _fits(r.spec, protocol, port)]
            if protocol == "tcp":
                self._router_tcp(service, router_name, port, fitting)
                continue
            rules = []
            for route in fitting:
                http = (
                    route.spec.grpcRoute
                    if protocol == "grpc"
                    else (route.spec.httpRoute or route.spec.http2Route)
                )
                assert http is not None
                targets = self._targets(route.name, http.action, protocol)
                prefix = names.route_stat_prefix(service, router_name, route.name)
                rules.append(HttpRule(route.name, protocol, http, targets, prefix))
            self._add_http(service, port, protocol, tuple(rules))

    def _router_tcp(self, service: str, router: str, port: int, routes: list[NamedRoute]) -> None:
        if not routes:
            self.ctx.problem(f"virtual router {router!r} has no tcp route for port {port}")
            return
        route = routes[0].spec.tcpRoute
        assert route is not None
        targets = self._targets(routes[0].name, route.action, "tcp")
        idle = route.timeout.idle if route.timeout is not None else None
        self._add_tcp(service, port, targets, idle)

    def _targets(
        self, route: str, action: HttpRouteAction, protocol: PortProtocol
    ) -> tuple[Target, ...]:
        weights: dict[str, int] = {}
        for target in action.weightedTargets:
            node = self.ctx.node(target.virtualNode)
            listener = _target_listener(node, target.port, protocol)
            if node is None or listener is None:
                where = f"route {route!r}: target virtual node {target.virtualNode!r}"
                if node is None:
                    self.ctx.problem(f"{where} does not exist")
                else:
                    port = "" if target.port is None else f" on port {target.port}"
                    self.ctx.problem(f"{where} has no listener{port}")
                continue
            cluster = self._provider(target.virtualNode, node, listener).cluster
            weights[cluster] = weights.get(cluster, 0) + target.weight
        return tuple(Target(cluster, weight) for cluster, weight in weights.items())

    def _provider(self, node_name: str, node: VirtualNodeSpec, listener: Listener) -> Provider:
        mapping = listener.portMapping
        cluster = names.egress_cluster(self.ctx.mesh, node_name, mapping.protocol, mapping.port)
        provider = self.providers.get(cluster)
        if provider is None:
            provider = self.providers[cluster] = Provider(node_name, node, listener, cluster)
        return provider

    def _add_http(
        self, service: str, port: int, protocol: HttpProtocol, rules: tuple[HttpRule, ...]
    ) -> None:
        first = not any(b.service == service for b in self.http)
        domains = (service, f"{service}:{port}") if first else (f"{service}:{port}",)
        vhost = service if first else f"{service}_{port}"
        self.http.append(HttpBackend(service, vhost, port, protocol, domains, rules))

    def _add_tcp(
        self, service: str, port: int, targets: tuple[Target, ...], idle: Duration | None
    ) -> None:
        first = not any(b.service == service for b in self.tcp)
        self.tcp.append(TcpBackend(service, port, first, targets, idle))


def _fits(spec: RouteSpec, protocol: PortProtocol, port: int) -> bool:
    """A route serves a router listener if its type is the listener's protocol and its port
    match, if any, is the listener's port."""
    route = getattr(spec, ROUTE_TYPE_OF_PROTOCOL[protocol])
    if route is None:
        return False
    match = route.match
    return match is None or match.port is None or match.port == port


def _target_listener(
    node: VirtualNodeSpec | None, port: int | None, protocol: PortProtocol
) -> Listener | None:
    listeners = (node.listeners or ()) if node is not None else ()
    if port is not None:
        return next((lst for lst in listeners if lst.portMapping.port == port), None)
    if len(listeners) <= 1:
        return listeners[0] if listeners else None
    same = [lst for lst in listeners if lst.portMapping.protocol == protocol]
    return same[0] if same else listeners[0]
