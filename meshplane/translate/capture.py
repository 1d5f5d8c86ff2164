"""The listeners of a captured sidecar (traffic redirected by App Mesh's iptables rules).

A proxy whose node metadata says it captures (``ProxyOptions.capture``, written by
``meshplane envoy --capture``) gets two listeners instead of one per virtual node listener and
one per TCP backend, named as App Mesh names them:

- ``lds_ingress_0.0.0.0_<ingress port>`` (15000): the ``original_dst`` listener filter restores
  the address the caller dialled; one filter chain per virtual node listener matches its port
  (``destination_port``) and holds exactly what the explicit listener would (HTTP connection
  manager or TCP proxy, timeouts, TLS and the mesh's mTLS, access logs), so a listener behaves
  the same whether it is reached directly or through capture.
- ``lds_egress_0.0.0.0_<egress port>`` (15001): ``original_dst`` then ``http_inspector``.
  HTTP/1.x and h2c (gRPC too) go to the egress connection manager, routed by Host/:authority
  over the same ``rds_egress_http_<port>`` as an explicit sidecar; a TCP backend is matched by
  its port, as App Mesh matches TCP routes (the inspector is off on those ports, so a
  client-first protocol is never held up), and first by its virtual service's VIP and port
  (the address meshplane's DNS server gives the name), so two TCP services may share a port
  (App Mesh could not, roadmap #46); anything else — an
  undeclared destination — is passed straight to where it was going (``ORIGINAL_DST`` cluster
  ``cds_egress_<mesh>_mesh-passthrough``) under ALLOW_ALL and closed under DROP_ALL.  Envoy's own
  connections are never captured: the rules skip its uid.

Pure; called by :mod:`meshplane.translate.proxy`.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.type.v3 import range_pb2
from google.protobuf import wrappers_pb2

from meshplane.model.virtual_node import Listener
from meshplane.translate import names
from meshplane.translate.clusters import CONNECT_TIMEOUT_SECONDS
from meshplane.translate.context import Context
from meshplane.translate.listeners import (
    HTTP_CONNECTION_MANAGER,
    TCP_PROXY,
    egress_http_manager,
    network_filter,
    proxy_tracing,
    tcp_proxy,
)
from meshplane.translate.plan import EgressPlan, Target
from meshplane.translate.protos import circuit_breakers, pack, seconds, socket_address

ORIGINAL_DST = "envoy.filters.listener.original_dst"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
HTTP_PROTOCOLS = ("http/1.0", "http/1.1", "h2c")
"""What ``http_inspector`` reports for plain-text HTTP (HTTP/2 with prior knowledge: h2c)."""
WILDCARD = "0.0.0.0"
LISTENER_FILTERS_TIMEOUT = 2.0
"""Seconds the HTTP inspector waits for a request line; then the connection goes on as TCP.
Server-first protocols (MySQL, SMTP) to undeclared destinations wait that long under
ALLOW_ALL: add their ports to the ignored egress ports, as App Mesh advises."""
PASSTHROUGH_STAT_PREFIX = "egress.passthrough"
_C = cluster_pb2.Cluster


def _original_dst() -> listener_components_pb2.ListenerFilter:
    return listener_components_pb2.ListenerFilter(
        name=ORIGINAL_DST, typed_config=pack(original_dst_pb2.OriginalDst())
    )


def inbound_listener(
    ctx: Context, specs: Sequence[Listener], explicit: Sequence[listener_pb2.Listener]
) -> listener_pb2.Listener | None:
    """One listener on the ingress port dispatching by original destination port to the
    filter chains of the node's ``explicit`` (secured) ingress listeners; None without any."""
    by_name = {names.ingress_listener(ctx.options.address, s.portMapping.port): s for s in specs}
    chains: list[listener_components_pb2.FilterChain] = []
    filters = [_original_dst()]
    for listener in explicit:
        spec = by_name.get(listener.name)
        if spec is None:
            continue
        protocol, port = spec.portMapping.protocol, spec.portMapping.port
        for chain in listener.filter_chains:
            moved = listener_components_pb2.FilterChain()
            moved.CopyFrom(chain)
            moved.filter_chain_match.destination_port.value = port
            moved.name = f"{protocol}_{port}" + (f"_{chain.name}" if chain.name else "")
            chains.append(moved)
        for extra in listener.listener_filters:
            if all(f.name != extra.name for f in filters):
                filters.append(extra)
    if not chains:
        return None
    port = ctx.options.ingress_port
    return listener_pb2.Listener(
        name=names.ingress_listener(WILDCARD, port),
        address=socket_address(WILDCARD, port),
        traffic_direction=base_pb2.INBOUND,
        listener_filters=filters,
        filter_chains=chains,
        enable_reuse_port=wrappers_pb2.BoolValue(value=False),
    )


def outbound_listener(
    ctx: Context, plan: EgressPlan, logs: list[accesslog_pb2.AccessLog]
) -> listener_pb2.Listener:
    """The listener on the egress port that every captured outbound connection reaches."""
    allow_all = ctx.mesh_spec.egressFilter.type == "ALLOW_ALL"
    http = network_filter(
        HTTP_CONNECTION_MANAGER,
        egress_http_manager(ctx, ctx.options.egress_port, logs, proxy_tracing(ctx)),
    )
    chains: list[listener_components_pb2.FilterChain] = [_http_chain("http", http, None)]
    tcp_ports: set[int] = set()
    for backend in plan.tcp:
        live = tuple(t for t in backend.targets if t.weight > 0)
        if not live:
            ctx.problem(f"tcp backend {backend.service!r} port {backend.port} has no target")
            continue
        proxy = tcp_proxy(names.egress_tcp_stat_prefix(backend.port), live, backend.idle, logs)
        vip = ctx.vip(backend.service)
        if vip is not None:  # by the service's VIP and port: unambiguous
            by_vip = listener_components_pb2.FilterChain(
                name=f"tcp_{vip}_{backend.port}", filters=[network_filter(TCP_PROXY, proxy)]
            )
            by_vip.filter_chain_match.destination_port.value = backend.port
            by_vip.filter_chain_match.prefix_ranges.add(
                address_prefix=vip, prefix_len=wrappers_pb2.UInt32Value(value=32)
            )
            chains.append(by_vip)
        if backend.port in tcp_ports:
            if vip is None:
                ctx.problem(
                    f"tcp backend {backend.service!r} port {backend.port}: another TCP backend "
                    "has this port and this one has no VIP yet; only the first is reached by port"
                )
            continue
        tcp_ports.add(backend.port)
        chain = listener_components_pb2.FilterChain(
            name=f"tcp_{backend.port}", filters=[network_filter(TCP_PROXY, proxy)]
        )
        chain.filter_chain_match.destination_port.value = backend.port
        chains.append(chain)
    if allow_all:
        passthrough = tcp_proxy(
            PASSTHROUGH_STAT_PREFIX, (Target(names.passthrough_cluster(ctx.mesh), 1),), None, logs
        )
        chains.append(
            listener_components_pb2.FilterChain(
                name="passthrough", filters=[network_filter(TCP_PROXY, passthrough)]
            )
        )
    port = ctx.options.egress_port
    return listener_pb2.Listener(
        name=names.egress_listener(WILDCARD, port),
        address=socket_address(WILDCARD, port),
        traffic_direction=base_pb2.OUTBOUND,
        listener_filters=[_original_dst(), _http_inspector(sorted(tcp_ports))],
        listener_filters_timeout=seconds(LISTENER_FILTERS_TIMEOUT),
        continue_on_listener_filters_timeout=True,
        filter_chains=chains,
        enable_reuse_port=wrappers_pb2.BoolValue(value=False),
    )


def _http_inspector(tcp_ports: list[int]) -> listener_components_pb2.ListenerFilter:
    """The HTTP inspector, off for the ports of TCP backends: it waits for a whole request
    line, which a client-first TCP protocol may never send."""
    inspector = listener_components_pb2.ListenerFilter(
        name=HTTP_INSPECTOR, typed_config=pack(http_inspector_pb2.HttpInspector())
    )
    predicate = listener_components_pb2.ListenerFilterChainMatchPredicate
    ranges = [
        predicate(destination_port_range=range_pb2.Int32Range(start=port, end=port + 1))
        for port in tcp_ports
    ]
    if len(ranges) == 1:
        inspector.filter_disabled.CopyFrom(ranges[0])
    elif ranges:
        inspector.filter_disabled.or_match.rules.extend(ranges)
    return inspector


def _http_chain(
    name: str, manager: listener_components_pb2.Filter, port: int | None
) -> listener_components_pb2.FilterChain:
    chain = listener_components_pb2.FilterChain(name=name, filters=[manager])
    chain.filter_chain_match.application_protocols.extend(HTTP_PROTOCOLS)
    if port is not None:
        chain.filter_chain_match.destination_port.value = port
    return chain


def passthrough_cluster(ctx: Context) -> cluster_pb2.Cluster:
    """ALLOW_ALL for captured traffic: connect to the destination the application dialled."""
    return _C(
        name=names.passthrough_cluster(ctx.mesh),
        type=_C.ORIGINAL_DST,
        lb_policy=_C.CLUSTER_PROVIDED,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        circuit_breakers=circuit_breakers(),
    )
