"""The API's HTTP connections, bounded: uvicorn's httptools protocol with timeouts and limits.

uvicorn closes idle keep-alive connections, but a connection that never finishes its request
head (slowloris), never sends anything at all, or sends its body a byte a minute stays open
for ever, and nothing bounds how many are open.  :func:`guarded_protocol` makes the protocol
class ``meshplane serve`` gives uvicorn (:class:`~meshplane.api.limits.HttpLimits`):

- a connection has ``header_timeout`` seconds from its start (and each request on it from its
  first byte) to send a whole request head of at most ``MAX_HEAD`` bytes (408 / 431, closed);
- a request has ``body_timeout`` seconds from the end of its head to send its whole body
  (408, closed; the application sees a disconnect);
- past ``max_connections`` open connections a new one is answered 503 with a JSON message
  and closed at once, before anything is read from it.

:func:`quiet_accept_errors` keeps the event loop from logging "socket.accept() out of system
resource" once per attempt (a descriptor-exhausting flood grew the log by 358 MB a minute):
at most one line per ``every`` seconds, with the count.  Used by :mod:`meshplane.server.run`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from meshplane.api.limits import HttpLimits

log = logging.getLogger("meshplane")

MAX_HEAD = 64 * 1024
"""Bytes of one request head (request line and headers)."""


def _response(status: str, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    code = "ServiceUnavailableException" if status.startswith("503") else "BadRequestException"
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"x-amzn-errortype: {code}:\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class _GuardedProtocol(HttpToolsProtocol):
    limits: HttpLimits = HttpLimits()
    max_connections: int = HttpLimits().max_connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._parsed_head = 0
        self._refused = False

    # -- connection --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refused = True
            self._close(
                "503 Service Unavailable",
                f"the server has {self.max_connections} open connections (the limit);"
                " try again later",
            )
            return
        self._arm(self.limits.header_timeout, "408 Request Timeout", "the request head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEAD and not self.transport.is_closing():
            self._close(
                "431 Request Header Fields Too Large",
                f"the request head is larger than {MAX_HEAD} bytes (the limit)",
            )

    # -- parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._parsed_head = 0
        if self._deadline is None:
            self._head_bytes = 0
            self._arm(self.limits.header_timeout, "408 Request Timeout", "the request head")

    def on_url(self, url: bytes) -> None:
        self._parsed_head += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_head += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        if self._parsed_head > MAX_HEAD:
            self._refused = True  # the rest of what arrives is not parsed
            self._close(
                "431 Request Header Fields Too Large",
                f"the request head is larger than {MAX_HEAD} bytes (the limit)",
            )
            return
        super().on_headers_complete()
        self._arm(self.limits.body_timeout, "408 Request Timeout", "the request body")

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self._refused:
            super().on_message_complete()

    # -- timers ------------------------------------------------------------------------

    def _arm(self, seconds: float, status: str, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(
            seconds, self._close, status, f"{what} did not arrive within {seconds:g} s"
        )

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _close(self, status: str, message: str) -> None:
        self._disarm()
        if self.transport is None or self.transport.is_closing():
            return
        responding = self.cycle is not None and self.cycle.response_started
        if not responding:
            self.transport.write(_response(status, message))
        if self.cycle is not None:
            self.cycle.keep_alive = False
        self.transport.close()


def guarded_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` option, with ``limits`` (see the module
    docstring); the connection limit is lowered to what the process's descriptor limit
    allows (raised to its hard limit first), so that refusing stays possible."""
    return type(
        "GuardedHttpProtocol",
        (_GuardedProtocol,),
        {"limits": limits, "max_connections": _connection_budget(limits.max_connections)},
    )


def _connection_budget(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    # half the descriptors for API connections, the rest for xDS, the store and files
    budget = max(16, (soft - 256) // 2) if soft != resource.RLIM_INFINITY else wanted
    if wanted > budget:
        log.warning(
            "--max-connections %d lowered to %d: the process may open %d files (ulimit -n)",
            wanted,
            budget,
            soft,
        )
        return budget
    return wanted


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, every: float = 10.0) -> None:
    """Log the loop's "out of system resource" accept errors at most once per ``every``
    seconds (with how many there were); other loop errors are logged as before."""
    state = {"last": 0.0, "count": 0}

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "out of system resource" not in str(context.get("message", "")):
            loop.default_exception_handler(context)
            return
        state["count"] += 1
        now = time.monotonic()
        if now - state["last"] >= every:
            log.error(
                "cannot accept connections: %s (%d time(s) since the last report); "
                "open connections are at the process's descriptor limit",
                context.get("exception"),
                state["count"],
            )
            state["last"] = now
            state["count"] = 0

    loop.set_exception_handler(handler)
