"""Small real applications for end-to-end tests, each in its own thread.

:class:`App` is a threaded HTTP/1.1 server that answers with JSON saying which app answered,
the path and Host it saw and its request headers (and an ``x-app`` header).  Its behaviour can
be changed while it runs: fail every Nth request (with 503, or ``fail_status``), answer
slowly, or fail its ``/health`` endpoint.  Used by the mesh end-to-end tests and the
demo-like fixtures.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.net import ThreadedServer


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
        if app.delay:
            time.sleep(app.delay)
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
        self.status: int | None = None
        self.healthy = True
        self._lock = threading.Lock()

    def count(self) -> int:
        with self._lock:
            self.requests += 1
            return self.requests

    def _build(self) -> ThreadingHTTPServer:
        return _Server((self.host, self.port), self)
