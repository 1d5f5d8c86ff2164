"""Tracing: the tracer of every HTTP connection manager of a proxy, and its collector cluster.

With the mesh's tracing on (:mod:`meshplane.model.tracing`: the ``meshplane.io/tracing`` tag
or the server's default collector), every HTTP connection manager a proxy has — a node's
ingress and egress, a gateway's listeners, the captured outbound listener — traces with
Envoy's OpenTelemetry tracer (``envoy.tracers.opentelemetry``): spans go over OTLP/gRPC
through the cluster :data:`~meshplane.translate.names.TRACING_CLUSTER` (sent over CDS with
the rest, so a tag change reaches running proxies, and the ACK-gated ordering brings the
cluster before the listeners that name it and removes it after them), the service name is
the virtual node's or virtual gateway's name, and ``random_sampling`` is the mesh's sampling
percentage.  Each proxy joins the trace named by the W3C ``traceparent`` it receives, and the
first proxy's sampling decision travels in ``x-request-id``, so gateway -> node -> node is one
whole trace with a span per hop at any rate (the applications pass both headers on, as with
Istio); ``x-client-trace-id`` from a caller forces a trace (Envoy's client sampling, 100 %).

A proxy started with one of App Mesh's tracing switches (``meshplane envoy`` with
``ENABLE_ENVOY_JAEGER_TRACING`` or ``ENABLE_ENVOY_DATADOG_TRACING``; its node metadata
names the tracer and the bootstrap cluster it added) traces with that tracer instead: the
proxy's own setting wins over the mesh's.

Pure; used by :mod:`meshplane.translate.listeners` and :mod:`meshplane.translate.proxy`.
"""

from __future__ import annotations

import ipaddress

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import grpc_service_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.trace.v3 import datadog_pb2, http_tracer_pb2, opentelemetry_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from meshplane.model.proxy import ProxyTracer
from meshplane.model.tracing import MeshTracing
from meshplane.translate import names
from meshplane.translate.protos import UPSTREAM_HTTP_OPTIONS, pack, seconds, socket_address

OPENTELEMETRY_TRACER = "envoy.tracers.opentelemetry"
OWN_TRACER_SAMPLING = 100.0
"""Percent of requests a proxy's own tracer samples (App Mesh's image traced them all)."""
ZIPKIN_TRACER = "envoy.tracers.zipkin"
DATADOG_TRACER = "envoy.tracers.datadog"


def http_tracing(
    mesh: MeshTracing | None, own: ProxyTracer | None, service_name: str
) -> hcm_pb2.HttpConnectionManager.Tracing | None:
    """The ``tracing`` of an HTTP connection manager of the proxy ``service_name`` (None:
    untraced): the proxy's own tracer if its bootstrap set one up, else the mesh's."""
    if own is not None:
        provider = _own_provider(own, service_name)
        sampling = OWN_TRACER_SAMPLING
    elif mesh is not None:
        config = opentelemetry_pb2.OpenTelemetryConfig(
            grpc_service=grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                    cluster_name=names.TRACING_CLUSTER
                ),
                timeout=seconds(5),
            ),
            service_name=service_name,
        )
        provider = http_tracer_pb2.Tracing.Http(
            name=OPENTELEMETRY_TRACER, typed_config=pack(config)
        )
        sampling = mesh.sampling
    else:
        return None
    return hcm_pb2.HttpConnectionManager.Tracing(
        provider=provider,
        random_sampling=percent_pb2.Percent(value=sampling),
    )


def _own_provider(own: ProxyTracer, service_name: str) -> http_tracer_pb2.Tracing.Http:
    name = own.service_name or service_name
    if own.driver == "datadog":
        datadog = datadog_pb2.DatadogConfig(collector_cluster=own.cluster, service_name=name)
        return http_tracer_pb2.Tracing.Http(name=DATADOG_TRACER, typed_config=pack(datadog))
    zipkin = zipkin_pb2.ZipkinConfig(
        collector_cluster=own.cluster,
        collector_endpoint="/api/v2/spans",
        collector_endpoint_version=(
            zipkin_pb2.ZipkinConfig.HTTP_JSON
            if own.zipkin_json
            else zipkin_pb2.ZipkinConfig.HTTP_PROTO
        ),
        shared_span_context=wrappers_pb2.BoolValue(value=False),
        trace_id_128bit=True,
    )
    return http_tracer_pb2.Tracing.Http(name=ZIPKIN_TRACER, typed_config=pack(zipkin))


def tracing_clusters(
    mesh: MeshTracing | None, own: ProxyTracer | None
) -> list[cluster_pb2.Cluster]:
    """The clusters the proxy's tracer needs over CDS: the mesh's collector, unless the proxy
    traces with its own tracer (whose cluster is in its bootstrap) or is untraced."""
    return [collector_cluster(mesh)] if mesh is not None and own is None else []


def collector_cluster(tracing: MeshTracing) -> cluster_pb2.Cluster:
    """The cluster of the mesh's OTLP/gRPC collector (HTTP/2; a DNS name is re-resolved)."""
    host, port = tracing.collector.host, tracing.collector.port
    try:
        ipaddress.ip_address(host)
        kind = cluster_pb2.Cluster.STATIC
    except ValueError:
        kind = cluster_pb2.Cluster.STRICT_DNS
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    return cluster_pb2.Cluster(
        name=names.TRACING_CLUSTER,
        type=kind,
        connect_timeout=seconds(1),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=names.TRACING_CLUSTER,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=socket_address(host, port)
                            )
                        )
                    ]
                )
            ],
        ),
        typed_extension_protocol_options={UPSTREAM_HTTP_OPTIONS: pack(options)},
    )
