"""Real trace receivers for end-to-end tests: OTLP/gRPC, and Zipkin's HTTP JSON API.

:class:`OtlpReceiver` is a gRPC server on loopback implementing
``opentelemetry.proto.collector.trace.v1.TraceService/Export`` (the ``opentelemetry-proto``
package's generated service), as an OpenTelemetry collector does.  It keeps the spans it
receives, each with the ``service.name`` of its resource, up to ``max_spans`` (the rest are
counted and dropped), and refuses messages over 4 MiB.  :class:`ZipkinReceiver` is an HTTP
server taking ``POST /api/v2/spans`` (JSON, as Envoy's Zipkin tracer sends with
``JAEGER_TRACER_VERSION=JSON``) and a Datadog agent's ``POST /v0.4/traces``, bodies up to 4 MiB.  Used by ``tests/test_e2e_tracing.py``.
"""

from __future__ import annotations

import json
import threading
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

from tests.support.net import ThreadedServer
from tests.support.ports import free_port

MAX_MESSAGE = 4 * 1024 * 1024
ZIPKIN_SPANS = "/api/v2/spans"
DATADOG_TRACES = "/v0.4/traces"


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


class _ZipkinHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ZipkinServer

    def _body(self) -> bytes | None:
        """The request body (Content-Length or chunked), None when over 4 MiB."""
        if "chunked" not in (self.headers.get("transfer-encoding") or "").lower():
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length <= MAX_MESSAGE else None
        body = b""
        while True:
            size = int(self.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
            if len(body) + size > MAX_MESSAGE:
                return None
            body += self.rfile.read(size)
            self.rfile.readline(64)  # the CRLF after the chunk
            if size == 0:
                return body

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            self._answer(413, b"")
            return
        self.server.receiver.posted(self.path, {k.lower(): v for k, v in self.headers.items()})
        if self.path == DATADOG_TRACES:
            self._answer(200, b"{}")  # an agent answers with its sampling rates
            return
        if self.path != ZIPKIN_SPANS:
            self._answer(404, b"")
            return
        try:
            spans = json.loads(body)
        except ValueError:
            spans = None
        if isinstance(spans, list):
            self.server.receiver.add([s for s in spans if isinstance(s, dict)])
        self._answer(202 if isinstance(spans, list) else 400, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        if status == 413:
            self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class _ZipkinServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: ZipkinReceiver) -> None:
        self.receiver = receiver
        super().__init__(address, _ZipkinHandler)


class ZipkinReceiver(ThreadedServer):
    """A Zipkin v2 span receiver (JSON) on ``127.0.0.1:<port>``, keeping up to 10,000 spans;
    it also answers a Datadog agent's ``/v0.4/traces`` (and records the headers of every POST,
    up to 10,000: Datadog's ``x-datadog-trace-count`` says how many traces came)."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", free_port())
        self._spans: list[dict[str, Any]] = []
        self._posts: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()

    def posted(self, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            if len(self._posts) < 10_000:
                self._posts.append((path, headers))

    def posts(self) -> list[tuple[str, dict[str, str]]]:
        with self._lock:
            return list(self._posts)

    def add(self, spans: list[dict[str, Any]]) -> None:
        with self._lock:
            self._spans.extend(spans[: max(0, 10_000 - len(self._spans))])

    def spans(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._spans)

    def _build(self) -> ThreadingHTTPServer:
        return _ZipkinServer((self.host, self.port), self)
