"""A real OTLP/gRPC trace receiver for end-to-end tests.

:class:`OtlpReceiver` is a gRPC server on loopback implementing
``opentelemetry.proto.collector.trace.v1.TraceService/Export`` (the ``opentelemetry-proto``
package's generated service), as an OpenTelemetry collector does.  It keeps the spans it
receives, each with the ``service.name`` of its resource, up to ``max_spans`` (the rest are
counted and dropped), and refuses messages over 4 MiB.  Used by ``tests/test_e2e_tracing.py``.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

from tests.support.ports import free_port

MAX_MESSAGE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One span as the receiver got it (ids as hex, kind as the OTLP enum's name)."""

    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    attributes: tuple[tuple[str, str], ...] = ()
    """The span's attributes, as text (Envoy's ``http.url``, ``upstream_cluster``, ...)."""

    def attribute(self, key: str) -> str | None:
        return next((value for k, value in self.attributes if k == key), None)


def _text(value: common_pb2.AnyValue) -> str:
    kind = value.WhichOneof("value")
    return "" if kind is None else str(getattr(value, kind))


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        spans = []
        for resource_spans in request.resource_spans:
            service = ""
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    service = attribute.value.string_value
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    kind = span.DESCRIPTOR.fields_by_name["kind"].enum_type
                    spans.append(
                        ReceivedSpan(
                            service=service,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=kind.values_by_number[span.kind].name,
                            attributes=tuple(
                                (a.key, _text(a.value)) for a in span.attributes[:100]
                            ),
                        )
                    )
        self.receiver.add(spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """An OTLP/gRPC trace receiver on ``127.0.0.1:<port>``; start/stop or a context manager."""

    def __init__(self, max_spans: int = 10_000) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.max_spans = max_spans
        self.dropped = 0
        self.exports = 0
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        self._server.add_insecure_port(self.address)

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self.exports += 1
            room = max(0, self.max_spans - len(self._spans))
            self._spans.extend(spans[:room])
            self.dropped += len(spans) - min(room, len(spans))

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=1).wait(5)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
