"""Network helpers for tests: small real HTTP upstreams.

:class:`EchoServer` is a threaded HTTP/1.1 server on a 127.0.0.x address that answers every
request with 200 and its own name (body and ``x-served-by`` header), counting requests.  It runs
in its own thread, so it keeps answering while a test's event loop is busy.

Used by the real-Envoy tests of every layer.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else Nagle + delayed ACK add 40 ms to every answer
    server: _EchoHTTPServer

    def do_GET(self) -> None:
        self.server.owner._count()
        body = self.server.owner.name.encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-served-by", self.server.owner.name)
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        return


class _EchoHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: EchoServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class ThreadedServer:
    """A ``ThreadingHTTPServer`` served from its own thread: start/stop, or a context manager.
    Subclasses say which server to build (:meth:`_build`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _build(self) -> ThreadingHTTPServer:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = self._build()
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EchoServer(ThreadedServer):
    """An HTTP server that says who it is.  Use as a context manager or call start/stop."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.name = name
        self.requests = 0
        self._lock = threading.Lock()

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def _build(self) -> ThreadingHTTPServer:
        return _EchoHTTPServer((self.host, self.port), self)
