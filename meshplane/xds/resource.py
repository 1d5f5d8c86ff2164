"""One xDS resource, serialized once: name, type, bytes, content-hash version and references.

A :class:`Resource` wraps an Envoy protobuf message (Cluster, ClusterLoadAssignment, Listener,
RouteConfiguration or Secret).  It is serialized exactly once, deterministically, when it is
made; its version is a short hash of those bytes, and the ADS server packs the same bytes into
every response that carries it.  A producer that gives the same :class:`Resource` object to
10,000 proxy snapshots therefore pays for one marshal, not 10,000.  The message must not be
mutated after it is wrapped.

Each resource also knows which other resources it references (``refs``): a cluster its
ClusterLoadAssignment (EDS over ADS) and secrets (SDS over ADS); a listener its route
configurations (RDS over ADS), clusters (tcp_proxy, inline routes, an OpenTelemetry tracer's
collector) and secrets; a route configuration its clusters.  Snapshots use these for the
consistency check and the planner for make-before-break ordering.

Called by producers (translation output), :mod:`meshplane.xds.snapshot`, the planner and the
protocol handlers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.config.trace.v3 import opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from meshplane.errors import BadRequestError
from meshplane.xds import types
from meshplane.xds._proto import Message, any_pb2

Ref = tuple[str, str]
"""A reference to another resource: ``(type_url, name)``."""

_MESSAGES: dict[type[Message], str] = {
    cluster_pb2.Cluster: types.CLUSTER,
    endpoint_pb2.ClusterLoadAssignment: types.ENDPOINT,
    listener_pb2.Listener: types.LISTENER,
    route_pb2.RouteConfiguration: types.ROUTE,
    secret_pb2.Secret: types.SECRET,
}

_HCM_URL = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_TCP_URL = "type.googleapis.com/" + tcp_proxy_pb2.TcpProxy.DESCRIPTOR.full_name
_UPSTREAM_TLS_URL = "type.googleapis.com/" + tls_pb2.UpstreamTlsContext.DESCRIPTOR.full_name
_DOWNSTREAM_TLS_URL = "type.googleapis.com/" + tls_pb2.DownstreamTlsContext.DESCRIPTOR.full_name
_OTEL_URL = "type.googleapis.com/" + opentelemetry_pb2.OpenTelemetryConfig.DESCRIPTOR.full_name


class ResourceError(BadRequestError):
    """A message that cannot be an xDS resource (unknown type, no name)."""


@dataclass(frozen=True, slots=True, eq=False)
class Resource:
    """An immutable, serialized xDS resource.  Make it with :meth:`of`."""

    type_url: str
    name: str
    message: Message = field(repr=False)
    body: bytes = field(repr=False)
    version: str
    refs: frozenset[Ref] = field(repr=False)
    _refs_by_type: dict[str, tuple[str, ...]] = field(repr=False, default_factory=dict)

    @classmethod
    def of(cls, message: Message) -> Resource:
        """Wrap and serialize ``message`` (deterministically, once)."""
        type_url = _MESSAGES.get(type(message))
        if type_url is None:
            raise ResourceError(f"{type(message).__name__} is not an xDS resource type")
        name = resource_name(message)
        if not name:
            raise ResourceError(f"a {type(message).__name__} resource needs a name")
        body = message.SerializeToString(deterministic=True)
        version = hashlib.blake2b(body, digest_size=8).hexdigest()
        refs = frozenset(references(message))
        by_type: dict[str, list[str]] = {}
        for ref_type, ref_name in sorted(refs):
            by_type.setdefault(ref_type, []).append(ref_name)
        return cls(
            type_url,
            name,
            message,
            body,
            version,
            refs,
            {ref_type: tuple(names) for ref_type, names in by_type.items()},
        )

    def as_any(self) -> any_pb2.Any:
        """The resource packed into an ``Any`` from its stored bytes (no re-serialization)."""
        return any_pb2.Any(type_url=self.type_url, value=self.body)

    def refs_of(self, type_url: str) -> tuple[str, ...]:
        """Names of the resources of ``type_url`` this resource references (sorted)."""
        return self._refs_by_type.get(type_url, ())


def resource_name(message: Message) -> str:
    """The xDS resource name of a message (``cluster_name`` for a ClusterLoadAssignment)."""
    if isinstance(message, endpoint_pb2.ClusterLoadAssignment):
        return str(message.cluster_name)
    return str(getattr(message, "name", ""))


def references(message: Message) -> Iterator[Ref]:
    """Every resource ``message`` references and that Envoy would fetch over ADS."""
    if isinstance(message, cluster_pb2.Cluster):
        yield from _cluster_refs(message)
    elif isinstance(message, listener_pb2.Listener):
        yield from _listener_refs(message)
    elif isinstance(message, route_pb2.RouteConfiguration):
        yield from _route_config_refs(message)


def _is_ads(source: config_source_pb2.ConfigSource) -> bool:
    return bool(source.HasField("ads"))


def _cluster_refs(cluster: cluster_pb2.Cluster) -> Iterator[Ref]:
    if cluster.type == cluster_pb2.Cluster.EDS and _is_ads(cluster.eds_cluster_config.eds_config):
        yield types.ENDPOINT, cluster.eds_cluster_config.service_name or cluster.name
    sockets = [cluster.transport_socket]
    sockets.extend(match.transport_socket for match in cluster.transport_socket_matches)
    for socket in sockets:
        if socket.typed_config.type_url == _UPSTREAM_TLS_URL:
            context = tls_pb2.UpstreamTlsContext()
            socket.typed_config.Unpack(context)
            yield from _tls_refs(context.common_tls_context)


def _tls_refs(context: tls_pb2.CommonTlsContext) -> Iterator[Ref]:
    configs = list(context.tls_certificate_sds_secret_configs)
    if context.HasField("validation_context_sds_secret_config"):
        configs.append(context.validation_context_sds_secret_config)
    if context.HasField("combined_validation_context"):
        configs.append(context.combined_validation_context.validation_context_sds_secret_config)
    for config in configs:
        if config.name and _is_ads(config.sds_config):
            yield types.SECRET, config.name


def _listener_refs(listener: listener_pb2.Listener) -> Iterator[Ref]:
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        if chain.transport_socket.typed_config.type_url == _DOWNSTREAM_TLS_URL:
            context = tls_pb2.DownstreamTlsContext()
            chain.transport_socket.typed_config.Unpack(context)
            yield from _tls_refs(context.common_tls_context)
        for network_filter in chain.filters:
            config = network_filter.typed_config
            if config.type_url == _HCM_URL:
                hcm = hcm_pb2.HttpConnectionManager()
                config.Unpack(hcm)
                if hcm.HasField("rds") and _is_ads(hcm.rds.config_source):
                    yield types.ROUTE, hcm.rds.route_config_name
                elif hcm.HasField("route_config"):
                    yield from _route_config_refs(hcm.route_config)
                yield from _tracer_refs(hcm)
            elif config.type_url == _TCP_URL:
                tcp = tcp_proxy_pb2.TcpProxy()
                config.Unpack(tcp)
                if tcp.cluster:
                    yield types.CLUSTER, tcp.cluster
                for weighted in tcp.weighted_clusters.clusters:
                    yield types.CLUSTER, weighted.name


def _tracer_refs(hcm: hcm_pb2.HttpConnectionManager) -> Iterator[Ref]:
    """The cluster an OpenTelemetry tracer reports to over gRPC (Envoy refuses a listener
    whose tracer names a cluster it does not have)."""
    provider = hcm.tracing.provider.typed_config
    if provider.type_url == _OTEL_URL:
        config = opentelemetry_pb2.OpenTelemetryConfig()
        provider.Unpack(config)
        if config.grpc_service.envoy_grpc.cluster_name:
            yield types.CLUSTER, config.grpc_service.envoy_grpc.cluster_name


def _route_config_refs(config: route_pb2.RouteConfiguration) -> Iterator[Ref]:
    for host in config.virtual_hosts:
        for route in host.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            if action.cluster:
                yield types.CLUSTER, action.cluster
            for weighted in action.weighted_clusters.clusters:
                yield types.CLUSTER, weighted.name
            for mirror in action.request_mirror_policies:
                if mirror.cluster:
                    yield types.CLUSTER, mirror.cluster
