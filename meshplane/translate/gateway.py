"""Virtual gateway proxies: ingress listeners whose gateway routes lead into the mesh.

A gateway's Envoy gets, for each of its listeners, ``lds_ingress_<address>_<port>`` bound on
the gateway's address (``ProxyOptions.address``; replicas on one host use different
addresses) with the route table ``rds_ingress_<proto>_<port>``
(:mod:`~meshplane.translate.gateway_routes`) — always, even without gateway routes, so a load
balancer's TCP check passes and every request gets 404 — and the ``cds_egress_…`` clusters
(and Cloud Map assignments) of the provider listeners those routes reach.  Only the virtual
services its gateway routes target are planned (:func:`~meshplane.translate.plan.plan_services`,
the same resolution a sidecar's egress makes), so its size follows its routes, not the mesh.

App Mesh routes a gateway route to a ``self_redirect`` cluster pointing back at the gateway's
own egress listener, which then routes like a sidecar's.  meshplane routes straight to the
provider clusters: one hop less and no egress port to bind, so replicas cannot collide on it;
the router routes are folded into the gateway routes instead
(:mod:`~meshplane.translate.gateway_matches`).

What else of the gateway spec applies:

- ``logging``: the access log of every listener;
- ``listeners[].connectionPool``: circuit breakers on the clusters the listener's routes reach
  (App Mesh puts them on the listener's self-redirect cluster; without it they limit each
  destination rather than their sum).  A cluster reached from several listeners keeps the
  tightest limit of each kind;
- ``listeners[].healthCheck``: answered by the gateway on the listener (HTTP and HTTP/2 with a
  path; see :mod:`~meshplane.translate.listeners`); a gRPC check is not answered (a problem);
- ``listeners[].tls``: served as a node listener's is (:mod:`~meshplane.translate.security`).
  The mesh's mTLS switch does not reach a gateway listener without ``tls``: its clients are
  outside the mesh and hold no mesh certificate;
- ``backendDefaults.clientPolicy``: the client TLS policy towards every target (else, with the
  mesh's mTLS switch on, the gateway's own mesh identity), as a node's backends get theirs.

A gateway route serves the listeners of its protocol (``httpRoute``: http, ``http2Route``:
http2, ``grpcRoute``: grpc) whose port its ``match.port`` names; without a port match it serves
every listener of its protocol (App Mesh requires the port when there are several listeners,
so that is reported as a problem).

Called by :mod:`meshplane.translate.proxy`.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from meshplane.model.route_types import GATEWAY_ROUTE_PROTOCOLS
from meshplane.model.tls import ClientPolicy
from meshplane.model.virtual_gateway import (
    VirtualGatewayConnectionPool,
    VirtualGatewayListener,
    VirtualGatewaySpec,
)
from meshplane.translate import clusters, endpoints, gateway_routes, listeners, security
from meshplane.translate.access_logs import access_logs, tap_logs
from meshplane.translate.context import Context, SharedContext
from meshplane.translate.plan import HttpBackend, plan_services
from meshplane.translate.protos import circuit_breakers
from meshplane.translate.resources import ProxyResources
from meshplane.translate.tracing import tracing_clusters
from meshplane.translate.view import NamedGatewayRoute


def translate_gateway(ctx: Context) -> ProxyResources:
    """The resources of the gateway ``ctx.target`` (empty when it does not exist)."""
    name = ctx.target.name
    gateway = ctx.gateway(name)
    if gateway is None:
        ctx.problem(f"virtual gateway {name!r} does not exist")
        return ProxyResources()
    routes = ctx.gateway_routes(name)
    plan = plan_services(
        ctx,
        [
            gateway_routes.gateway_route(r.spec).action.target.virtualService.virtualServiceName
            for r in routes
        ],
    )
    backends: dict[str, list[HttpBackend]] = {}
    for backend in plan.http:
        backends.setdefault(backend.service, []).append(backend)
    logs = access_logs(gateway.logging) + tap_logs(ctx.observability)
    served = _serving_listeners(ctx, gateway, routes)
    out_listeners: list[listener_pb2.Listener] = []
    out_routes: list[route_pb2.RouteConfiguration] = []
    pools: dict[str, list[VirtualGatewayConnectionPool | None]] = {}
    for listener in gateway.listeners:
        port = listener.portMapping.port
        out_listeners.append(listeners.gateway_listener(ctx, listener, logs))
        config, reached = gateway_routes.route_config(ctx, listener, served[port], backends)
        out_routes.append(config)
        for name_reached in reached:
            pools.setdefault(name_reached, []).append(listener.connectionPool)
        _health_problem(ctx, listener)
    used = [p for p in plan.providers if p.cluster in pools]
    out_clusters = []
    for provider in used:
        built = clusters.egress_cluster(ctx, provider)
        if built is not None:
            _limit(built, pools[provider.cluster])
            out_clusters.append(built)
    own_tls = [lst for lst in gateway.listeners if lst.tls is not None]
    defaults = gateway.backendDefaults.clientPolicy if gateway.backendDefaults else None

    def policy_of(service: str) -> ClientPolicy | None:
        return defaults

    preference = ctx.mesh_spec.serviceDiscovery
    targets = endpoints.cloud_map_targets(
        used, preference.ipPreference if preference is not None else None
    )
    return ProxyResources(
        clusters=(
            *security.secure_egress(ctx, policy_of, plan, out_clusters),
            *tracing_clusters(ctx.observability.tracing, ctx.options.tracer),
        ),
        endpoints=tuple(endpoints.empty_assignments(targets)),
        discovery=targets,
        listeners=tuple(security.secure_ingress(ctx, own_tls, out_listeners)),
        routes=tuple(out_routes),
    )


def _serving_listeners(
    ctx: SharedContext, gateway: VirtualGatewaySpec, routes: Sequence[NamedGatewayRoute]
) -> dict[int, list[NamedGatewayRoute]]:
    """The gateway routes of each listener port, in order."""
    served: dict[int, list[NamedGatewayRoute]] = {
        lst.portMapping.port: [] for lst in gateway.listeners
    }
    for named in routes:
        protocol = GATEWAY_ROUTE_PROTOCOLS[named.spec.route_type]
        port = gateway_routes.gateway_route(named.spec).match.port
        same = [lst for lst in gateway.listeners if lst.portMapping.protocol == protocol]
        fitting = [lst for lst in same if port is None or lst.portMapping.port == port]
        where = f"gateway route {named.name!r}"
        if not fitting:
            on = "" if port is None else f" on port {port}"
            ctx.problem(f"{where} is not served: the gateway has no {protocol} listener{on}")
        elif port is None and len(gateway.listeners) > 1:
            ctx.problem(
                f"{where} has no port match while the gateway has several listeners;"
                f" it is served on every {protocol} listener"
            )
        for lst in fitting:
            served[lst.portMapping.port].append(named)
    return served


def _health_problem(ctx: SharedContext, listener: VirtualGatewayListener) -> None:
    check = listener.healthCheck
    if check is not None and check.protocol == "grpc":
        ctx.problem(
            f"listener port {listener.portMapping.port}: a gRPC health check is not"
            " answered by the gateway (check the port over TCP, or use http2)"
        )


def _limit(
    cluster: cluster_pb2.Cluster, pools: Sequence[VirtualGatewayConnectionPool | None]
) -> None:
    """The tightest connection pool limits of the listeners reaching ``cluster``."""
    connections: list[int] = []
    pending: list[int] = []
    requests: list[int] = []
    for pool in pools:
        if pool is None:
            continue
        if pool.http is not None:
            connections.append(pool.http.maxConnections)
            if pool.http.maxPendingRequests is not None:
                pending.append(pool.http.maxPendingRequests)
        for h2 in (pool.http2, pool.grpc):
            if h2 is not None:
                requests.append(h2.maxRequests)
    if connections or pending or requests:
        cluster.circuit_breakers.CopyFrom(
            circuit_breakers(
                max_connections=min(connections, default=None),
                max_pending_requests=min(pending, default=None),
                max_requests=min(requests, default=None),
            )
        )
