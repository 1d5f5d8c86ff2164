"""Clusters: the local application behind each listener, and every provider a node reaches.

- ``cds_ingress_<mesh>_<node>_<proto>_<port>``: STATIC, the application at
  ``app_address:app_port``; the listener's ``connectionPool`` becomes its circuit breakers
  (App Mesh applies connection pools on the provider's inbound side).
- ``cds_egress_<mesh>_<node>_<proto>_<port>``: a provider node's listener as clients see it.
  DNS discovery: ``responseType`` ENDPOINTS -> STRICT_DNS, LOADBALANCER (default) ->
  LOGICAL_DNS, the node's hostname at the listener port; the lookup family follows the
  provider node's ``ipPreference``, else the mesh's (none: Envoy's AUTO, IPv6 first, as App
  Mesh's "no preference").  Cloud Map discovery -> EDS over ADS; its endpoints come from the
  instance registry (see :mod:`~meshplane.translate.endpoints`).  The provider listener's
  ``healthCheck`` is an active health check and its ``outlierDetection`` outlier detection
  here, on the clients' side, where App Mesh puts them, with Envoy's panic mode off (healthy
  panic threshold 0%) so that an endpoint failing either gets no traffic even when it is the
  only one; circuit breakers stay at App Mesh's client-side 2147483647.
- ``cds_egress_<mesh>_mesh-allow-all``: a dynamic forward proxy for ALLOW_ALL meshes.

HTTP/2 and gRPC clusters speak HTTP/2 upstream.  Used by :mod:`meshplane.translate.proxy`.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster_pb2
from envoy.extensions.common.dynamic_forward_proxy.v3 import dns_cache_pb2
from envoy.type.v3 import http_pb2

from meshplane.model.common import HealthCheckPolicy, IpPreference
from meshplane.model.virtual_node import Listener, OutlierDetection
from meshplane.translate import names
from meshplane.translate.context import Context, SharedContext
from meshplane.translate.plan import Provider
from meshplane.translate.protos import (
    ads,
    circuit_breakers,
    pack,
    positive_duration,
    seconds,
    socket_address,
    u32,
    upstream_http_options,
)

CONNECT_TIMEOUT_SECONDS = 1
DYNAMIC_FORWARD_PROXY_CLUSTER = "envoy.clusters.dynamic_forward_proxy"
_C = cluster_pb2.Cluster
LOOKUP_FAMILY: dict[IpPreference, int] = {
    "IPv4_ONLY": _C.V4_ONLY,
    "IPv6_ONLY": _C.V6_ONLY,
    "IPv4_PREFERRED": _C.V4_PREFERRED,
    "IPv6_PREFERRED": _C.AUTO,
}


def ingress_cluster(ctx: Context, listener: Listener) -> cluster_pb2.Cluster:
    """The local application behind one virtual node listener."""
    mapping = listener.portMapping
    name = names.ingress_cluster(ctx.mesh, ctx.target.name, mapping.protocol, mapping.port)
    options = ctx.options
    cluster = _C(
        name=name,
        type=_C.STATIC,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        load_assignment=_assignment(
            name, options.app_address, options.local_app_port(mapping.port)
        ),
        typed_extension_protocol_options=upstream_http_options(mapping.protocol),
    )
    pool = listener.connectionPool
    if pool is None:
        cluster.circuit_breakers.CopyFrom(circuit_breakers())
    elif pool.tcp is not None:
        cluster.circuit_breakers.CopyFrom(circuit_breakers(max_connections=pool.tcp.maxConnections))
    elif pool.http is not None:
        cluster.circuit_breakers.CopyFrom(
            circuit_breakers(
                max_connections=pool.http.maxConnections,
                max_pending_requests=pool.http.maxPendingRequests,
            )
        )
    else:
        h2 = pool.http2 or pool.grpc
        assert h2 is not None
        cluster.circuit_breakers.CopyFrom(circuit_breakers(max_requests=h2.maxRequests))
    return cluster


def egress_cluster(ctx: SharedContext, provider: Provider) -> cluster_pb2.Cluster | None:
    """How this proxy reaches one provider listener (None without service discovery)."""
    discovery = provider.spec.serviceDiscovery
    if discovery is None:
        ctx.problem(f"virtual node {provider.node!r} has no service discovery")
        return None
    cluster = _C(
        name=provider.cluster,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        circuit_breakers=circuit_breakers(),
        typed_extension_protocol_options=upstream_http_options(provider.protocol),
    )
    preference: IpPreference | None = None
    if discovery.dns is not None:
        dns = discovery.dns
        preference = dns.ipPreference
        cluster.type = _C.STRICT_DNS if dns.responseType == "ENDPOINTS" else _C.LOGICAL_DNS
        cluster.load_assignment.CopyFrom(_assignment(provider.cluster, dns.hostname, provider.port))
    elif discovery.awsCloudMap is not None:
        preference = discovery.awsCloudMap.ipPreference
        cluster.type = _C.EDS
        cluster.eds_cluster_config.CopyFrom(
            _C.EdsClusterConfig(eds_config=ads(), service_name=provider.cluster)
        )
        # a deregistered instance stops receiving traffic at once, active health checks or
        # not (App Mesh roadmap #213)
        cluster.ignore_health_on_host_removal = True
    family = _lookup_family(ctx, preference)
    if family is not None and discovery.dns is not None:
        cluster.dns_lookup_family = family
    listener = provider.listener
    if listener.healthCheck is not None:
        policy = listener.healthCheck
        if policy.protocol == "grpc" and provider.protocol not in ("http2", "grpc"):
            ctx.problem(
                f"virtual node {provider.node!r} port {provider.port}: a gRPC health"
                f" check needs an http2 or grpc listener, a TCP check is used instead"
            )
            policy = policy.model_copy(update={"protocol": "tcp"})
        cluster.health_checks.append(health_check(policy))
    if listener.outlierDetection is not None:
        cluster.outlier_detection.CopyFrom(outlier_detection(listener.outlierDetection))
    if cluster.health_checks or cluster.HasField("outlier_detection"):
        # no panic mode: an endpoint that fails its check or is ejected gets no traffic,
        # even when it is the only one (Envoy's default 50% would send to it anyway)
        cluster.common_lb_config.healthy_panic_threshold.value = 0.0
    return cluster


def allow_all_dns_cache(ctx: SharedContext) -> dns_cache_pb2.DnsCacheConfig:
    """The DNS cache shared by the allow-all cluster and the egress forward-proxy filter."""
    config = dns_cache_pb2.DnsCacheConfig(name=names.ALLOW_ALL_DNS_CACHE)
    family = _lookup_family(ctx, None)
    if family is not None:
        config.dns_lookup_family = family
    return config


def allow_all_cluster(ctx: SharedContext) -> cluster_pb2.Cluster:
    """The ALLOW_ALL pass-through: a dynamic forward proxy to the request's Host."""
    config = dfp_cluster_pb2.ClusterConfig(dns_cache_config=allow_all_dns_cache(ctx))
    return _C(
        name=names.allow_all_cluster(ctx.mesh),
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        lb_policy=_C.CLUSTER_PROVIDED,
        cluster_type=_C.CustomClusterType(
            name=DYNAMIC_FORWARD_PROXY_CLUSTER, typed_config=pack(config)
        ),
        circuit_breakers=circuit_breakers(),
    )


def health_check(policy: HealthCheckPolicy) -> health_check_pb2.HealthCheck:
    """An App Mesh listener health check as an Envoy active health check.

    ``intervalMillis`` is the interval from the start: Envoy's ``no_traffic_interval`` (60 s
    by default, used until the cluster has had traffic, and for the check scheduled before
    it had) is set to it too, so a consumer that has just started notices a failing endpoint
    within the interval and thresholds the spec gives.
    """
    interval = seconds(policy.intervalMillis / 1000)
    check = health_check_pb2.HealthCheck(
        timeout=seconds(policy.timeoutMillis / 1000),
        interval=interval,
        no_traffic_interval=interval,
        healthy_threshold=u32(policy.healthyThreshold),
        unhealthy_threshold=u32(policy.unhealthyThreshold),
    )
    hc = health_check_pb2.HealthCheck
    if policy.protocol == "grpc":
        check.grpc_health_check.CopyFrom(hc.GrpcHealthCheck())
    elif policy.protocol == "tcp":
        check.tcp_health_check.CopyFrom(hc.TcpHealthCheck())
    else:
        http = hc.HttpHealthCheck(path=policy.path or "/")
        if policy.protocol == "http2":
            http.codec_client_type = http_pb2.HTTP2
        check.http_health_check.CopyFrom(http)
    return check


def outlier_detection(spec: OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    """App Mesh outlier detection: ``maxServerErrors`` consecutive 5xx eject a host."""
    result = outlier_detection_pb2.OutlierDetection(
        consecutive_5xx=u32(spec.maxServerErrors),
        max_ejection_percent=u32(spec.maxEjectionPercent),
    )
    interval = positive_duration(spec.interval)
    if interval is not None:
        result.interval.CopyFrom(interval)
    base = positive_duration(spec.baseEjectionDuration)
    if base is not None:
        result.base_ejection_time.CopyFrom(base)
    return result


def _lookup_family(ctx: SharedContext, preference: IpPreference | None) -> int | None:
    if preference is None and ctx.mesh_spec.serviceDiscovery is not None:
        preference = ctx.mesh_spec.serviceDiscovery.ipPreference
    return None if preference is None else LOOKUP_FAMILY[preference]


def _assignment(cluster: str, host: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(host, port))
    )
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
    )
