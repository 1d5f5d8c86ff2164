"""Small protobuf builders shared by the output modules.

Packing into ``Any``, App Mesh durations to ``google.protobuf.Duration`` (clamped to what
Envoy accepts: about 292 years), clamped ``UInt32Value``s, socket addresses, the ADS config
source, upstream HTTP protocol options by App Mesh protocol, and circuit breakers.

Used by :mod:`~meshplane.translate.listeners`, :mod:`~meshplane.translate.routes`,
:mod:`~meshplane.translate.clusters` and :mod:`~meshplane.translate.endpoints`.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, duration_pb2, message, wrappers_pb2

from meshplane.model.common import Duration

UINT32_MAX = 2**32 - 1
APP_MESH_UNLIMITED = 2**31 - 1
"""App Mesh's client-side circuit breaker thresholds (2147483647: effectively off)."""
_MAX_SECONDS = (2**63 - 1) // 10**9 - 1
"""Longest duration, in seconds: Envoy turns some durations into int64 nanoseconds."""
UPSTREAM_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def pack(msg: message.Message) -> any_pb2.Any:
    """``msg`` in an ``Any`` (its ``_pb2`` module is imported by the caller)."""
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed


def seconds(value: float) -> duration_pb2.Duration:
    """A protobuf duration of ``value`` seconds, clamped to what Envoy accepts."""
    value = min(max(value, 0.0), float(_MAX_SECONDS))
    whole = int(value)
    return duration_pb2.Duration(seconds=whole, nanos=round((value - whole) * 1e9))


def duration(spec: Duration) -> duration_pb2.Duration:
    """An App Mesh ``{unit, value}`` duration, clamped to what Envoy accepts."""
    value = spec.value or 0
    if spec.unit == "ms":
        whole, millis = divmod(value, 1000)
        if whole >= _MAX_SECONDS:
            return duration_pb2.Duration(seconds=_MAX_SECONDS)
        return duration_pb2.Duration(seconds=whole, nanos=millis * 1_000_000)
    return duration_pb2.Duration(seconds=min(value, _MAX_SECONDS))


def positive_duration(spec: Duration | None) -> duration_pb2.Duration | None:
    """``duration(spec)``, or None when absent or zero (for fields Envoy wants > 0)."""
    if spec is None or not spec.value:
        return None
    return duration(spec)


def u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=min(max(value, 0), UINT32_MAX))


def socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def ads() -> config_source_pb2.ConfigSource:
    """The config source of every RDS and EDS resource: the proxy's ADS stream."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def upstream_http_options(protocol: str) -> dict[str, any_pb2.Any]:
    """``typed_extension_protocol_options`` of a cluster: HTTP/2 for http2 and grpc."""
    if protocol not in ("http2", "grpc"):
        return {}
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    return {UPSTREAM_HTTP_OPTIONS: pack(options)}


def circuit_breakers(
    max_connections: int | None = None,
    max_pending_requests: int | None = None,
    max_requests: int | None = None,
) -> circuit_breaker_pb2.CircuitBreakers:
    """Default-priority thresholds: the given limits, App Mesh's 2147483647 for the rest."""

    def limit(value: int | None) -> wrappers_pb2.UInt32Value:
        return u32(APP_MESH_UNLIMITED if value is None else value)

    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                max_connections=limit(max_connections),
                max_pending_requests=limit(max_pending_requests),
                max_requests=limit(max_requests),
                max_retries=limit(None),
            )
        ]
    )
