"""Small real applications for end-to-end tests, each in its own thread.

:class:`App` is a threaded HTTP/1.1 server that answers with JSON saying which app answered,
the path and Host it saw and its request headers (and an ``x-app`` header).  Its behaviour can
be changed while it runs: fail every Nth request (with 503, or ``fail_status``), answer
slowly, or fail its ``/health`` endpoint.  With ``forward`` set it calls a backend through its
sidecar's egress first (passing on the trace context headers it got, as an instrumented
application does) and answers with the backend's answer inside its own.  Used by the mesh
end-to-end tests and the demo-like fixtures.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.net import ThreadedServer

TRACE_HEADERS = (
    "traceparent",
    "tracestate",
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
)
"""The trace context headers a forwarding app passes on (W3C, Envoy's request id, B3 as
Zipkin uses, Datadog's)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def _answer(self) -> None:
        app = self.server.app
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/health"):
            status = 200 if app.healthy else 503
            self._send(status, {"app": app.name, "healthy": app.healthy})
            return
        number = app.count()
        if app.forward is not None:
            self._forward(app.forward)
            return
        if app.delay:
            time.sleep(app.delay)
            with app._lock:
                app.slept += 1
        status = 200
        if app.fail_every and number % app.fail_every == 0:
            status = app.fail_status
        if app.status is not None:
            status = app.status
        self._send(
            status,
            {
                "app": app.name,
                "path": self.path,
                "host": self.headers.get("host", ""),
                "method": self.command,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            },
        )

    def _forward(self, forward: tuple[str, int, str]) -> None:
        """Call ``http://<host>:<port><path>`` with Host ``authority`` (the egress), passing on
        the trace context, and answer with the backend's status and answer."""
        host, port, authority = forward
        headers = {"host": authority}
        for name in TRACE_HEADERS:
            value = self.headers.get(name)
            if value is not None:
                headers[name] = value
        connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            connection.request("GET", self.path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            status = response.status
        finally:
            connection.close()
        try:
            backend: object = json.loads(body)
        except ValueError:
            backend = body.decode(errors="replace")
        self._send(status, {"app": self.server.app.name, "path": self.path, "backend": backend})

    def _send(self, status: int, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-app", self.server.app.name)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        super().__init__(address, _Handler)


class App(ThreadedServer):
    """An HTTP application that says who it is."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.name = name
        self.requests = 0
        self.fail_every = 0
        self.fail_status = 503
        self.delay = 0.0
        self.slept = 0
        """Requests whose ``delay`` is over (whether or not their answer could still be sent)."""
        self.status: int | None = None
        self.healthy = True
        self.forward: tuple[str, int, str] | None = None
        """(egress host, egress port, Host header): call that backend for each request."""
        self._lock = threading.Lock()

    def count(self) -> int:
        with self._lock:
            self.requests += 1
            return self.requests

    def _build(self) -> ThreadingHTTPServer:
        return _Server((self.host, self.port), self)
