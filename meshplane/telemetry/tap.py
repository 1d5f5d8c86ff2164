"""``meshplane tap``: access logs on demand, through Envoy's gRPC access log service.

:class:`TapHub` keeps the open tap sessions (at most ``max_sessions``).  While at least one
session covers a proxy (its mesh, and its name when the session names a node), the proxy is
*tapped*: the control loop gives its HTTP listeners an ``envoy.access_loggers.http_grpc``
logger to this server (over LDS) carrying a secret derived for that proxy and this hub
(HMAC); when the last session covering it ends, the logger goes away again — an idle mesh
pays nothing.  :meth:`TapHub.secret_of` is the function the control loop asks.

Envoy applies a listener's new filter chain to connections accepted after the update; a
keep-alive connection accepted before it (a client sidecar's pooled connection to a server
sidecar) keeps the chain without the logger until it drains.  The proxies meshplane starts use
``--drain-strategy immediate`` (:class:`meshplane.proxy.EnvoyOptions`), so such a connection
closes after its first response once the tap is on; that one response is not tapped on the
accepting side (the other side's proxy still reports it).

:class:`AccessLogService` serves ``StreamAccessLogs`` on the xDS port: messages arrive as
bytes (bounded); the first names the node; the stream is accepted only when its
``x-meshplane-tap`` metadata is that node's current secret (so entries are attributed to the
identity the secret was issued for, and only while it is tapped).  Each entry goes to the
sessions whose filters it matches (node, virtual service, path prefix, status class), into a
bounded queue per session (a slow reader loses entries, counted, never memory).

Used by the server wiring and :mod:`meshplane.telemetry.http`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf.message import DecodeError

from meshplane.errors import TooManyRequestsError
from meshplane.xds import InvalidNodeIdError, ProxyIdentity, parse_node_id

log = logging.getLogger(__name__)

SERVICE = "envoy.service.accesslog.v3.AccessLogService"
TAP_HEADER = "x-meshplane-tap"


@dataclass(frozen=True, slots=True)
class TapFilter:
    mesh: str
    node: str | None = None
    service: str | None = None
    path_prefix: str | None = None
    status: str | None = None
    """``5xx`` style class or an exact code."""

    def covers(self, mesh: str, name: str) -> bool:
        return mesh == self.mesh and (self.node is None or self.node == name)

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.service is not None and entry["authority"].split(":")[0] != self.service:
            return False
        if self.path_prefix is not None and not entry["path"].startswith(self.path_prefix):
            return False
        if self.status is not None:
            code = str(entry["status"])
            if self.status.endswith("xx"):
                return code[:1] == self.status[:1]
            return code == self.status
        return True


@dataclass(eq=False)
class TapSession:
    filter: TapFilter
    queue: asyncio.Queue[dict[str, Any]]
    dropped: int = 0
    id: int = 0


@dataclass
class TapHub:
    apply: Callable[[Callable[[str, str, str], str | None]], object]
    """Called with :meth:`secret_of` whenever the set of tapped proxies changes."""
    max_sessions: int = 16
    queue_size: int = 1000
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    sessions: dict[int, TapSession] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def secret_of(self, mesh: str, kind: str, name: str) -> str | None:
        """The secret of a proxy's access log stream while a session covers it."""
        return tap_secret(self.key, [s.filter for s in self.sessions.values()], mesh, kind, name)

    def open(self, tap: TapFilter) -> TapSession:
        if len(self.sessions) >= self.max_sessions:
            raise TooManyRequestsError(f"at most {self.max_sessions} taps at once")
        session = TapSession(tap, asyncio.Queue(self.queue_size), id=next(self._ids))
        self.sessions[session.id] = session
        self._changed()
        return session

    def close(self, session: TapSession) -> None:
        if self.sessions.pop(session.id, None) is not None:
            self._changed()

    def _changed(self) -> None:
        # a new function object, so the control loop compares before/after per proxy
        filters = [s.filter for s in self.sessions.values()]
        key = self.key

        def secret_of(mesh: str, kind: str, name: str) -> str | None:
            return tap_secret(key, filters, mesh, kind, name)

        try:
            self.apply(secret_of)
        except Exception:
            log.exception("switching the access log streams failed")

    def publish(self, identity: ProxyIdentity, entry: dict[str, Any]) -> None:
        for session in list(self.sessions.values()):
            if not session.filter.covers(identity.mesh, identity.name):
                continue
            if not session.filter.matches(entry):
                continue
            try:
                session.queue.put_nowait(entry)
            except asyncio.QueueFull:
                session.dropped += 1


def tap_secret(key: bytes, filters: list[TapFilter], mesh: str, kind: str, name: str) -> str | None:
    """The secret of a proxy's access log stream under ``filters`` (None: not tapped)."""
    if not any(f.covers(mesh, name) for f in filters):
        return None
    return hmac.new(key, f"{mesh}/{kind}/{name}".encode(), hashlib.sha256).hexdigest()


def entry_json(identity: ProxyIdentity, entry: Any) -> dict[str, Any]:
    """One HTTP access log entry as the tap shows it."""
    common = entry.common_properties
    request = entry.request
    start = common.start_time.ToMilliseconds() / 1000 if common.HasField("start_time") else None
    duration = (
        common.time_to_last_downstream_tx_byte.ToMilliseconds()
        if common.HasField("time_to_last_downstream_tx_byte")
        else None
    )
    headers = dict(request.request_headers)
    traceparent = headers.get("traceparent", "")
    trace = traceparent.split("-")[1] if traceparent.count("-") >= 3 else None
    address = common.downstream_remote_address.socket_address
    upstream = common.upstream_cluster
    return {
        "time": start,
        "proxy": f"{identity.kind.value}/{identity.name}",
        "mesh": identity.mesh,
        "direction": "inbound" if upstream.startswith("cds_ingress_") else "outbound",
        "method": request.request_method and als_method(request.request_method),
        "authority": request.authority[:1000],
        "path": request.path[:4000],
        "status": entry.response.response_code.value,
        "durationMs": duration,
        "source": f"{address.address}:{address.port_value}" if address.address else None,
        "destination": upstream or None,
        "route": common.route_name or None,
        "requestId": request.request_id or None,
        "traceId": trace,
    }


def als_method(method: int) -> str:
    from envoy.config.core.v3 import base_pb2

    return str(base_pb2.RequestMethod.Name(method))


class TapSink(Protocol):
    """What the access log service needs of the taps: a :class:`TapHub`, or in an xDS worker
    process its mirror of the main process's hub (``meshplane.server.worker``)."""

    def secret_of(self, mesh: str, kind: str, name: str) -> str | None: ...

    def publish(self, identity: ProxyIdentity, entry: dict[str, Any]) -> None: ...


class AccessLogService:
    """``StreamAccessLogs`` feeding a :class:`TapSink`."""

    def __init__(self, hub: TapSink, *, max_message_bytes: int = 4 * 1024 * 1024) -> None:
        self.hub = hub
        self.max_message_bytes = max_message_bytes
        self.refused = 0

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "StreamAccessLogs": grpc.stream_unary_rpc_method_handler(
                    self.stream_access_logs,
                    request_deserializer=None,
                    response_serializer=lambda message: message.SerializeToString(),
                )
            },
        )

    async def _refuse(self, context: Any, code: grpc.StatusCode, text: str) -> None:
        self.refused += 1
        await context.abort(code, text)

    async def stream_access_logs(self, requests: AsyncIterator[bytes], context: Any) -> Any:
        metadata = dict(
            (k.lower(), v if isinstance(v, str) else v.decode(errors="replace"))
            for k, v in (context.invocation_metadata() or ())
        )
        shown = metadata.get(TAP_HEADER)
        if not shown:
            await self._refuse(context, grpc.StatusCode.PERMISSION_DENIED, "no tap secret")
        identity: ProxyIdentity | None = None
        async for raw in requests:
            if len(raw) > self.max_message_bytes:
                await self._refuse(
                    context, grpc.StatusCode.RESOURCE_EXHAUSTED, "access log message too large"
                )
            message = als_pb2.StreamAccessLogsMessage()
            try:
                message.ParseFromString(raw)
            except DecodeError:
                await self._refuse(
                    context, grpc.StatusCode.INVALID_ARGUMENT, "the message does not parse"
                )
            if identity is None:
                try:
                    identity = parse_node_id(message.identifier.node.id)
                except InvalidNodeIdError as error:
                    await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, error.message)
                assert identity is not None
            expected = self.hub.secret_of(identity.mesh, identity.kind.value, identity.name)
            if expected is None or not hmac.compare_digest(expected, str(shown)):
                # not tapped (any more), or another proxy's secret: nothing is taken
                await self._refuse(
                    context, grpc.StatusCode.PERMISSION_DENIED, f"{identity} is not tapped"
                )
            for entry in message.http_logs.log_entry[:10_000]:
                self.hub.publish(identity, entry_json(identity, entry))
            await asyncio.sleep(0)
        return als_pb2.StreamAccessLogsResponse()
