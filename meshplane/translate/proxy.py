"""The entry point: one proxy's Envoy resources from a mesh view.

:func:`translate_proxy` builds everything a sidecar or a gateway needs, as real
protobuf messages, in :class:`ProxyResources`.  A proxy whose mesh or resource is unknown
gets empty resources and waits; a translation never raises for a mesh the API accepted.
What had to be left out is in ``problems``, and ``inputs`` lists every resource the
translation read or looked for (routes counted as their router, see
:func:`~meshplane.translate.view.dependency_key`), so the control loop re-translates a
proxy only when one of them changes.

A virtual node gets its ingress listeners, route tables and application clusters, the
egress HTTP listener and route table, one TCP listener per TCP backend port, and the
clusters (and Cloud Map assignments) of the providers its declared backends resolve to —
nothing else, so its size does not depend on the size of the mesh.  Listeners that would
bind an address and port already taken are left out.  Listener TLS and client TLS policies
(and the mesh's mTLS switch) become transport sockets (:mod:`~meshplane.translate.security`)
that name their certificates and trust bundles as SDS secrets; the control loop serves them.

Called by the control loop (``meshplane.control``), the translation benchmark and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from meshplane.model import Kind, ResourceKey, VirtualNodeSpec
from meshplane.model.proxy import ProxyIdentity
from meshplane.translate import capture, clusters, endpoints, listeners, routes, security
from meshplane.translate.access_logs import access_logs, tap_logs
from meshplane.translate.context import Context, SharedContext
from meshplane.translate.endpoints import CloudMapTarget
from meshplane.translate.gateway import translate_gateway
from meshplane.translate.options import MeshSecurity, Observability, ProxyOptions
from meshplane.translate.plan import EgressPlan, Provider, plan_services
from meshplane.translate.resources import ProxyResources
from meshplane.translate.tracing import tracing_clusters
from meshplane.translate.view import MeshView

_WILDCARDS = ("0.0.0.0", "::")


def translate_proxy(
    view: MeshView,
    target: ProxyIdentity,
    options: ProxyOptions | None = None,
    security: MeshSecurity | None = None,
    observability: Observability | None = None,
) -> ProxyResources:
    """The resources of the proxy running as ``target`` (empty when it is unknown).

    ``security`` holds the trust domain and the mesh's mTLS switch (default: the default trust
    domain, mTLS off); listeners and clusters name their SDS secrets after it.
    ``observability`` switches the control plane's access log stream on (while tapped).
    """
    options = options or ProxyOptions()
    mesh_key = ResourceKey(Kind.MESH, target.mesh, target.mesh)
    mesh_spec = view.mesh_spec if target.mesh == view.mesh else None
    if mesh_spec is None:
        return ProxyResources(
            inputs=frozenset({mesh_key}), problems=(f"mesh {target.mesh!r} does not exist",)
        )
    ctx = Context(view, target, options, mesh_spec, security, observability)
    if target.kind is Kind.VIRTUAL_NODE:
        return _translate_node(ctx)
    if target.kind is Kind.VIRTUAL_GATEWAY:
        return _wrap(ctx, translate_gateway(ctx))
    ctx.problem(f"a proxy cannot run as a {target.kind.title}")
    return _wrap(ctx, ProxyResources())


def _translate_node(ctx: Context) -> ProxyResources:
    name = ctx.target.name
    node = ctx.node(name)
    if node is None:
        ctx.problem(f"virtual node {name!r} does not exist")
        return _wrap(ctx, ProxyResources())
    logs = access_logs(node.logging) + tap_logs(ctx.observability)
    egress = _shared_egress(ctx, node)
    plan = egress.plan
    out_clusters = [clusters.ingress_cluster(ctx, lst) for lst in node.listeners or ()]
    out_routes: list[route_pb2.RouteConfiguration] = []
    out_listeners: list[listener_pb2.Listener] = []
    for listener in node.listeners or ():
        out_listeners.append(listeners.ingress_listener(ctx, listener, logs))
        if listener.portMapping.protocol != "tcp":
            out_routes.append(routes.ingress_route_config(ctx, listener))
    out_listeners = security.secure_ingress(ctx, node.listeners or (), out_listeners)
    out_routes.append(egress.route_config)
    out_clusters.extend(egress.clusters)
    shared = {id(egress.route_config), *map(id, egress.clusters)}
    if ctx.options.capture:
        inbound = capture.inbound_listener(ctx, node.listeners or (), out_listeners)
        out_listeners = [] if inbound is None else [inbound]
        out_listeners.append(capture.outbound_listener(ctx, plan, logs))
        if ctx.mesh_spec.egressFilter.type == "ALLOW_ALL":
            out_clusters.append(capture.passthrough_cluster(ctx))
    else:
        egress_listener = _shared_egress_listener(ctx, node, logs)
        shared.add(id(egress_listener))
        out_listeners.append(egress_listener)
        for backend in plan.tcp:
            port = ctx.options.tcp_egress_port(backend.service, backend.port, backend.first)
            tcp = listeners.egress_tcp_listener(ctx, port, backend.targets, backend.idle, logs)
            if tcp is None:
                ctx.problem(f"tcp backend {backend.service!r} port {backend.port} has no target")
            else:
                out_listeners.append(tcp)
    out_clusters = security.secure_egress(ctx, security.node_policies(node), plan, out_clusters)
    out_clusters.extend(tracing_clusters(ctx.observability.tracing, ctx.options.tracer))
    result = ProxyResources(
        clusters=tuple(out_clusters),
        endpoints=egress.endpoints,
        discovery=egress.discovery,
        listeners=_bindable(ctx, out_listeners),
        routes=tuple(out_routes),
    )
    return replace(
        _wrap(ctx, result), shared=frozenset(id(m) for m in result.all() if id(m) in shared)
    )


@dataclass(frozen=True, slots=True)
class _Egress:
    """The part of a virtual node's translation that only its backends decide: shared by
    every consumer of the same view with the same backends and egress port."""

    plan: EgressPlan
    route_config: route_pb2.RouteConfiguration
    clusters: tuple[cluster_pb2.Cluster, ...]
    """The provider clusters (and the allow-all cluster), before client TLS."""
    endpoints: tuple[endpoint_pb2.ClusterLoadAssignment, ...]
    discovery: tuple[CloudMapTarget, ...]


def _shared_egress(ctx: Context, node: VirtualNodeSpec) -> _Egress:
    """The egress plan, route table and clusters of ``node``, made once per view for every
    node with the same backends and egress port (:meth:`Context.shared`)."""
    services = tuple(
        backend.virtualService.virtualServiceName
        for backend in node.backends or ()
        if backend.virtualService is not None
    )

    egress_port = ctx.options.egress_port

    def build(own: SharedContext) -> _Egress:
        plan = plan_services(own, services)
        route_config = routes.egress_route_config(own, plan, egress_port)
        out = [c for c in map(partial(_shared_cluster, own), plan.providers) if c]
        if own.mesh_spec.egressFilter.type == "ALLOW_ALL":
            out.append(clusters.allow_all_cluster(own))
        preference = own.mesh_spec.serviceDiscovery
        targets = endpoints.cloud_map_targets(
            plan.providers, preference.ipPreference if preference is not None else None
        )
        assignments = tuple(endpoints.empty_assignments(targets))
        return _Egress(plan, route_config, tuple(out), assignments, targets)

    return ctx.shared(("egress", services, egress_port), build)


def _shared_cluster(ctx: SharedContext, provider: Provider) -> cluster_pb2.Cluster | None:
    """The egress cluster of one provider listener, made once per view for every consumer
    that reaches it, whatever their other backends; made from the provider's spec (read when
    it was planned) and the mesh's."""
    return ctx.shared(
        ("egress-cluster", provider.cluster),
        partial(clusters.egress_cluster, provider=provider),
        reads=(ctx.view.key(Kind.VIRTUAL_NODE, provider.node),),
    )


def _shared_egress_listener(
    ctx: Context, node: VirtualNodeSpec, logs: list[accesslog_pb2.AccessLog]
) -> listener_pb2.Listener:
    """The HTTP egress listener (made from the mesh's spec and the node's logging), shared by
    the nodes of the view with equal logging, egress address and tracing (a traced node's
    tracer names the node, so it has one of its own)."""
    logging = None if node.logging is None else node.logging.model_dump_json()
    address, port = ctx.options.egress_address, ctx.options.egress_port
    tracing = listeners.proxy_tracing(ctx)
    traced = None if tracing is None else tracing.SerializeToString(deterministic=True)
    key = ("egress-listener", logging, ctx.observability.access_log, address, port, traced)
    build = partial(
        listeners.egress_http_listener, address=address, port=port, logs=logs, tracing=tracing
    )
    return ctx.shared(key, build)


def _bindable(
    ctx: Context, candidates: list[listener_pb2.Listener]
) -> tuple[listener_pb2.Listener, ...]:
    """The listeners in order, leaving out any whose address and port are already bound."""
    kept: list[listener_pb2.Listener] = []
    bound: dict[int, set[str]] = {}
    for listener in candidates:
        address, port = listeners.listener_address(listener)
        taken = bound.setdefault(port, set())
        if address in taken or (taken and (address in _WILDCARDS or taken & set(_WILDCARDS))):
            ctx.problem(f"listener {listener.name!r} is left out: {address}:{port} is taken")
            continue
        taken.add(address)
        kept.append(listener)
    return tuple(kept)


def _wrap(ctx: Context, resources: ProxyResources) -> ProxyResources:
    return replace(resources, inputs=frozenset(ctx.inputs), problems=tuple(ctx.problems))
