"""Listeners: a virtual node's ingress listeners and its egress listeners.

- ``lds_ingress_<address>_<port>`` per virtual node listener, bound on the workload address
  (INBOUND).  http/http2/grpc: an HTTP connection manager (stat prefix
  ``ingress.<proto>.<port>``, routes over RDS ``rds_ingress_<proto>_<port>``, stream idle
  timeout from the listener's ``timeout.idle``); tcp: a TCP proxy to the application (idle
  timeout from ``timeout.tcp.idle``).
- ``lds_egress_<egress address>_<egress port>`` (OUTBOUND), always present: one HTTP
  connection manager with automatic codec (HTTP/1.1, h2c and gRPC on one port, absolute-URI
  proxy requests accepted) over RDS ``rds_egress_http_<egress port>``; with an ALLOW_ALL mesh
  the dynamic forward proxy filter runs before the router.  The HTTP filters of every
  connection manager come in the order of :mod:`meshplane.translate.http_filters`.
- ``lds_egress_<egress address>_<local port>`` per TCP backend port: a TCP proxy to the
  provider cluster(s).
- ``lds_ingress_<address>_<port>`` per virtual gateway listener (INBOUND): an HTTP connection
  manager like a node's ingress one (automatic codec: HTTP/1.1, h2c and gRPC), over RDS
  ``rds_ingress_<proto>_<port>``; an HTTP or HTTP/2 ``healthCheck`` with a path is answered
  there by Envoy's health check filter (200 while the gateway serves, 503 once it drains),
  so whatever checks the gateway (a load balancer) gets an answer from the gateway itself.

Every connection manager normalises paths, merges slashes and allows websocket upgrades, as
App Mesh's do, and traces when the mesh (or the proxy) has a tracer
(:mod:`meshplane.translate.tracing`); every listener logs to the node's access log.

Used by :mod:`meshplane.translate.proxy` and :mod:`meshplane.translate.gateway`.
"""

from __future__ import annotations

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import (
    dynamic_forward_proxy_pb2 as dfp_filter_pb2,
)
from envoy.extensions.filters.http.health_check.v3 import health_check_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import message, wrappers_pb2

from meshplane.model.common import Duration
from meshplane.model.virtual_gateway import VirtualGatewayListener
from meshplane.model.virtual_node import Listener
from meshplane.translate import names
from meshplane.translate.access_logs import GRPC_ACCESS_LOGGER
from meshplane.translate.clusters import allow_all_dns_cache
from meshplane.translate.context import Context, SharedContext
from meshplane.translate.http_filters import DYNAMIC_FORWARD_PROXY, HEALTH_CHECK, HttpFilters
from meshplane.translate.matches import exact_header
from meshplane.translate.plan import Target
from meshplane.translate.protos import ads, duration, pack, socket_address
from meshplane.translate.tracing import http_tracing

HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
_HCM = hcm_pb2.HttpConnectionManager


def ingress_listener(
    ctx: Context, listener: Listener, logs: list[accesslog_pb2.AccessLog]
) -> listener_pb2.Listener:
    """The inbound listener of one virtual node listener."""
    mapping = listener.portMapping
    protocol, port = mapping.protocol, mapping.port
    timeout = listener.timeout
    if protocol == "tcp":
        idle = timeout.tcp.idle if timeout is not None and timeout.tcp is not None else None
        cluster = names.ingress_cluster(ctx.mesh, ctx.target.name, protocol, port)
        chain = network_filter(
            TCP_PROXY,
            tcp_proxy(names.ingress_stat_prefix(protocol, port), (Target(cluster, 1),), idle, logs),
        )
    else:
        limits = timeout.http or timeout.http2 or timeout.grpc if timeout is not None else None
        manager = _http_manager(
            names.ingress_stat_prefix(protocol, port),
            names.ingress_route_config(protocol, port),
            logs,
            HttpFilters(),
            proxy_tracing(ctx),
        )
        if limits is not None and limits.idle is not None:
            manager.stream_idle_timeout.CopyFrom(duration(limits.idle))
        chain = network_filter(HTTP_CONNECTION_MANAGER, manager)
    return _listener(
        names.ingress_listener(ctx.options.address, port),
        ctx.options.address,
        port,
        base_pb2.INBOUND,
        chain,
    )


def proxy_tracing(ctx: Context) -> hcm_pb2.HttpConnectionManager.Tracing | None:
    """The tracing of every HTTP connection manager of the proxy ``ctx.target``."""
    return http_tracing(ctx.observability.tracing, ctx.options.tracer, ctx.target.name)


def egress_http_listener(
    ctx: SharedContext,
    address: str,
    port: int,
    logs: list[accesslog_pb2.AccessLog],
    tracing: hcm_pb2.HttpConnectionManager.Tracing | None = None,
) -> listener_pb2.Listener:
    """The HTTP egress listener every sidecar has (the application's HTTP proxy), on
    ``address:port`` (the proxy's egress address and port)."""
    return _listener(
        names.egress_listener(address, port),
        address,
        port,
        base_pb2.OUTBOUND,
        network_filter(HTTP_CONNECTION_MANAGER, egress_http_manager(ctx, port, logs, tracing)),
    )


def egress_http_manager(
    ctx: SharedContext,
    egress_port: int,
    logs: list[accesslog_pb2.AccessLog],
    tracing: hcm_pb2.HttpConnectionManager.Tracing | None = None,
) -> hcm_pb2.HttpConnectionManager:
    """The egress connection manager: routes by Host/:authority over ``rds_egress_http_<port>``
    (explicit and captured sidecars alike), traced with ``tracing``."""
    filters = HttpFilters()
    if ctx.mesh_spec.egressFilter.type == "ALLOW_ALL":
        forward = dfp_filter_pb2.FilterConfig(dns_cache_config=allow_all_dns_cache(ctx))
        filters.add(DYNAMIC_FORWARD_PROXY, forward)
    manager = _http_manager(
        names.EGRESS_HTTP_STAT_PREFIX,
        names.egress_route_config(egress_port),
        logs,
        filters,
        tracing,
    )
    manager.http_protocol_options.allow_absolute_url.CopyFrom(wrappers_pb2.BoolValue(value=True))
    return manager


def egress_tcp_listener(
    ctx: Context,
    port: int,
    targets: tuple[Target, ...],
    idle: Duration | None,
    logs: list[accesslog_pb2.AccessLog],
) -> listener_pb2.Listener | None:
    """A TCP backend's local listener on ``egress_address:port`` (None: no live target)."""
    live = tuple(t for t in targets if t.weight > 0)
    if not live:
        return None
    address = ctx.options.egress_address
    proxy = tcp_proxy(names.egress_tcp_stat_prefix(port), live, idle, logs)
    return _listener(
        names.egress_listener(address, port),
        address,
        port,
        base_pb2.OUTBOUND,
        network_filter(TCP_PROXY, proxy),
    )


def gateway_listener(
    ctx: Context, listener: VirtualGatewayListener, logs: list[accesslog_pb2.AccessLog]
) -> listener_pb2.Listener:
    """The inbound listener of one virtual gateway listener, bound on the gateway address."""
    protocol, port = listener.portMapping.protocol, listener.portMapping.port
    filters = HttpFilters()
    check = listener.healthCheck
    if check is not None and check.protocol in ("http", "http2") and check.path:
        answer = health_check_pb2.HealthCheck(
            pass_through_mode=wrappers_pb2.BoolValue(value=False),
            headers=[exact_header(":path", check.path)],
        )
        filters.add(HEALTH_CHECK, answer)
    manager = _http_manager(
        names.ingress_stat_prefix(protocol, port),
        names.ingress_route_config(protocol, port),
        logs,
        filters,
        proxy_tracing(ctx),
    )
    address = ctx.options.address
    return _listener(
        names.ingress_listener(address, port),
        address,
        port,
        base_pb2.INBOUND,
        network_filter(HTTP_CONNECTION_MANAGER, manager),
    )


def listener_address(listener: listener_pb2.Listener) -> tuple[str, int]:
    """The (address, port) a listener binds."""
    socket = listener.address.socket_address
    return socket.address, socket.port_value


def _http_manager(
    stat_prefix: str,
    route_config: str,
    logs: list[accesslog_pb2.AccessLog],
    filters: HttpFilters,
    tracing: hcm_pb2.HttpConnectionManager.Tracing | None,
) -> hcm_pb2.HttpConnectionManager:
    manager = _HCM(
        stat_prefix=stat_prefix,
        codec_type=_HCM.AUTO,
        rds=hcm_pb2.Rds(config_source=ads(), route_config_name=route_config),
        http_filters=filters.build(),
        http2_protocol_options=protocol_pb2.Http2ProtocolOptions(),
        access_log=logs,
        normalize_path=wrappers_pb2.BoolValue(value=True),
        merge_slashes=True,
        upgrade_configs=[_HCM.UpgradeConfig(upgrade_type="websocket")],
    )
    if tracing is not None:
        manager.tracing.CopyFrom(tracing)
    return manager


def tcp_proxy(
    stat_prefix: str,
    targets: tuple[Target, ...],
    idle: Duration | None,
    logs: list[accesslog_pb2.AccessLog],
) -> tcp_proxy_pb2.TcpProxy:
    """A TCP proxy to one target or weighted targets."""
    # the tap's logger is an HTTP one (http_grpc): TCP proxies keep the node's file log only
    file_logs = [log for log in logs if log.name != GRPC_ACCESS_LOGGER]
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix, access_log=file_logs)
    if len(targets) == 1:
        proxy.cluster = targets[0].cluster
    else:
        weighted = tcp_proxy_pb2.TcpProxy.WeightedCluster
        proxy.weighted_clusters.CopyFrom(
            weighted(
                clusters=[weighted.ClusterWeight(name=t.cluster, weight=t.weight) for t in targets]
            )
        )
    if idle is not None:
        proxy.idle_timeout.CopyFrom(duration(idle))
    return proxy


def network_filter(name: str, config: message.Message) -> listener_components_pb2.Filter:
    """A network filter of a filter chain."""
    return listener_components_pb2.Filter(name=name, typed_config=pack(config))


def _listener(
    name: str,
    address: str,
    port: int,
    direction: int,
    chain_filter: listener_components_pb2.Filter,
) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=direction,
        filter_chains=[listener_components_pb2.FilterChain(filters=[chain_filter])],
        # Two proxies on one host must never share a port silently: with SO_REUSEPORT the
        # kernel would spread connections over both.  Without it the second bind fails and
        # Envoy reports the clash (a NACK in proxy-status).
        enable_reuse_port=wrappers_pb2.BoolValue(value=False),
    )
