"""Envoy's metrics service (``StreamMetrics``) on the xDS server's port.

Every proxy meshplane starts streams its stats here (the bootstrap's
``envoy.stat_sinks.metrics_service``, see :mod:`meshplane.proxy.bootstrap`).  Per stream:

1. Before anything it sent is parsed, the call metadata goes through the ADS streams' ``admit``
   hook (a stream without valid credentials, when they are required, ends with
   ``PERMISSION_DENIED``).
2. Messages arrive as bytes: gRPC refuses one larger than the xDS server's
   ``XdsLimits.max_message``; one larger than ``max_message_bytes`` ends the stream with
   ``RESOURCE_EXHAUSTED``; one that does not parse ends it with ``INVALID_ARGUMENT``.
3. The first message must carry ``identifier.node``; its id is parsed like an ADS node id and
   the stream is authorized by the very authorizer of the ADS streams (the token must be
   scoped to that identity).  Everything the stream reports is attributed to that identity
   only (:mod:`meshplane.telemetry.stats` ignores what is not the proxy's to report).
4. Each further message is one flush, read into the proxy's window; flushes closer together
   than ``min_interval`` seconds are dropped unread (a flood costs no parsing).

With ``relay`` set (an xDS worker process, ``--xds-workers``), each flush read and the end of
each stream (``None``) are also handed to ``relay(key, flush)``: the worker sends them to the
main process, whose :class:`TelemetryStore` serves ``/metrics``, ``stat``/``top`` and the
console; the worker's own store then keeps only what the limits need.

Registered on the xDS server's gRPC server by the server wiring
(:meth:`meshplane.xds.XdsServer` ``services``); :class:`MetricsService` also counts what it
refused (``meshplane_telemetry_refused_total{reason}``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry, Counter

from meshplane.telemetry.stats import Flush, read_flush
from meshplane.telemetry.window import ProxyKey, TelemetryStore
from meshplane.telemetry.wire import messages
from meshplane.xds import Authorizer, InvalidNodeIdError, parse_node_id
from meshplane.xds.producer import Admission

log = logging.getLogger(__name__)

SERVICE = "envoy.service.metrics.v3.MetricsService"
Relay = Callable[[ProxyKey, Flush | None], None]
"""Where a worker process sends each flush (None: the proxy's stream ended)."""


@dataclass(frozen=True, slots=True)
class StreamLimits:
    max_message_bytes: int = 4 * 1024 * 1024
    min_interval: float = 0.5


class MetricsService:
    """The ``StreamMetrics`` handler feeding a :class:`TelemetryStore`."""

    def __init__(
        self,
        store: TelemetryStore,
        *,
        authorize: Authorizer | None = None,
        admit: Admission | None = None,
        limits: StreamLimits | None = None,
        registry: CollectorRegistry | None = None,
        relay: Relay | None = None,
    ) -> None:
        self.store = store
        self.relay = relay
        self.authorize = authorize
        self.admit = admit
        self.limits = limits or StreamLimits()
        self._refused = Counter(
            "meshplane_telemetry_refused",
            "Metrics streams or messages refused (reason: unauthenticated, too_large, malformed,"
            " no_node, denied, too_many_proxies, too_frequent).",
            ["reason"],
            registry=registry if registry is not None else CollectorRegistry(),
        )

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler to add to a ``grpc.aio`` server (messages stay bytes)."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "StreamMetrics": grpc.stream_unary_rpc_method_handler(
                    self.stream_metrics,
                    request_deserializer=None,
                    response_serializer=lambda message: message.SerializeToString(),
                )
            },
        )

    async def _refuse(
        self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, reason: str, text: str
    ) -> None:
        self._refused.labels(reason).inc()
        await context.abort(code, text)

    def _parse(self, raw: bytes) -> Any:
        message = messages().StreamMetricsMessage()
        message.ParseFromString(raw)
        return message

    async def stream_metrics(self, requests: AsyncIterator[bytes], context: Any) -> Any:
        metadata = tuple(context.invocation_metadata() or ())
        if self.admit is not None:
            try:
                self.admit(metadata, None)
            except PermissionError as error:
                await self._refuse(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    "unauthenticated",
                    f"may not stream metrics: {error}",
                )
        key: ProxyKey | None = None
        clock = self.store.clock
        last = float("-inf")
        window = None
        try:
            async for raw in requests:
                if len(raw) > self.limits.max_message_bytes:
                    await self._refuse(
                        context,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        "too_large",
                        f"a metrics message may hold at most {self.limits.max_message_bytes}"
                        f" bytes (got {len(raw)})",
                    )
                if key is not None and clock() - last < self.limits.min_interval:
                    self._refused.labels("too_frequent").inc()
                    continue
                try:
                    message = self._parse(raw)
                except DecodeError:
                    await self._refuse(
                        context,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "malformed",
                        "the metrics message does not parse",
                    )
                if key is None:
                    key = await self._open(message, metadata, context)
                    window = self.store.window(key)
                    if window is None:
                        await self._refuse(
                            context,
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            "too_many_proxies",
                            "the control plane keeps telemetry of no more proxies",
                        )
                    assert window is not None
                    window.connected = True
                last = clock()
                assert window is not None
                flush = read_flush(
                    message.envoy_metrics,
                    last,
                    key.mesh,
                    key.kind,
                    key.name,
                    self.store.settings.max_series,
                )
                window.add(flush)
                if self.relay is not None:
                    self.relay(key, flush)
        finally:
            if window is not None:
                window.connected = False
                if self.relay is not None and key is not None:
                    self.relay(key, None)
        return messages().StreamMetricsResponse()

    async def _open(self, message: Any, metadata: Any, context: Any) -> ProxyKey:
        node = message.identifier.node
        if not node.id:
            await self._refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "no_node",
                "the first metrics message has no identifier.node.id",
            )
        try:
            identity = parse_node_id(node.id)
        except InvalidNodeIdError as error:
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "no_node", error.message)
        if self.authorize is not None:
            try:
                outcome = self.authorize(identity, metadata, None)
                if inspect.isawaitable(outcome):
                    await outcome
            except PermissionError as error:
                await self._refuse(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    "denied",
                    f"{identity} may not stream metrics: {error}",
                )
        own = node.metadata.fields.get("meshplane")
        instance = ""
        if own is not None and own.HasField("struct_value"):
            fields = own.struct_value.fields
            for name in ("admin", "workload_address"):
                value = fields.get(name)
                if value is not None and value.HasField("string_value"):
                    instance = value.string_value[:256]
                    break
        return ProxyKey(identity.mesh, identity.kind.value, identity.name, instance)
