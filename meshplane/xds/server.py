"""The ADS gRPC server: wires the snapshot cache, the producer and the protocol handlers.

:class:`XdsServer` serves ``envoy.service.discovery.v3.AggregatedDiscoveryService`` (both
``StreamAggregatedResources`` and ``DeltaAggregatedResources``) with ``grpc.aio`` in the
caller's event loop.  Per stream:

0. Before any message is read: the peer's open streams are counted against
   ``limits.streams_per_peer`` (``RESOURCE_EXHAUSTED``) and, if an ``admit`` hook is set,
   the call metadata is checked (``PERMISSION_DENIED``).  Messages arrive as bytes and are
   parsed here, the large ones in a worker thread; gRPC refuses one larger than
   ``limits.max_message`` before it is read (:mod:`meshplane.xds.limits`).
1. The first request (within ``limits.first_request_timeout``) must carry ``node``, with
   ``node.metadata`` under ``limits.max_node_metadata``; its id is parsed into a
   :class:`ProxyIdentity` (``INVALID_ARGUMENT`` if it names no virtual node/gateway) and,
   if an authorizer is set, authorized (``PERMISSION_DENIED`` when it raises
   :class:`PermissionError`).  Later requests need not repeat ``node``.
2. The stream watches its snapshot key in the cache — the producer's ``snapshot_key`` of the
   connection when it has one (:class:`~meshplane.xds.producer.SnapshotKeyer`), else its
   identity's node key — tells the producer it connected, and from then on reacts to
   requests and snapshot changes: it applies requests to its state
   (:mod:`meshplane.xds.sotw` / :mod:`meshplane.xds.delta`) and sends what
   :meth:`meshplane.xds.stream.Stream.outgoing` decides.  Without a snapshot it waits.
3. On close it unwatches and tells the producer.

Created by the control-plane wiring (server start-up) and by tests.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client import CollectorRegistry

from meshplane.model.proxy import InvalidNodeIdError, ProxyIdentity, parse_node_id
from meshplane.xds import delta, sotw
from meshplane.xds._proto import json_format
from meshplane.xds.cache import SnapshotCache
from meshplane.xds.limits import XdsLimits
from meshplane.xds.metrics import XdsMetrics
from meshplane.xds.producer import (
    Admission,
    Authorizer,
    ProxyConnection,
    SnapshotKeyer,
    SnapshotProducer,
)
from meshplane.xds.status import ProxyStatus
from meshplane.xds.stream import Builder, Stream

log = logging.getLogger(__name__)

_EOF = object()
_WAKE = object()


@dataclass(frozen=True, slots=True)
class _Close:
    """Queued to end a stream with ``PERMISSION_DENIED`` (its credential was revoked)."""

    reason: str


class XdsServer:
    """An ADS server for the snapshots in ``cache``."""

    def __init__(
        self,
        cache: SnapshotCache,
        producer: SnapshotProducer | None = None,
        registry: CollectorRegistry | None = None,
        *,
        authorize: Authorizer | None = None,
        nack_backoff: float = 1.0,
        nack_backoff_max: float = 30.0,
        credentials: grpc.ServerCredentials | None = None,
        admit: Admission | None = None,
        limits: XdsLimits | None = None,
        handlers: Sequence[grpc.GenericRpcHandler] = (),
        stream_ids: Iterator[int] | None = None,
    ) -> None:
        self.cache = cache
        self.admit = admit
        self.limits = limits or XdsLimits()
        self._per_peer: dict[str, int] = {}
        self.producer = producer
        self.metrics = XdsMetrics(registry if registry is not None else CollectorRegistry())
        self.authorize = authorize
        self.nack_backoff = nack_backoff
        self.nack_backoff_max = nack_backoff_max
        self.credentials = credentials
        self.handlers = tuple(handlers)
        """Further gRPC services served on the same port (Envoy's metrics and access log
        services), added by the server wiring."""
        self._server: grpc.aio.Server | None = None
        self.activity = 0
        """Requests handled and responses sent so far, on every stream (the process paces its
        garbage collection by it: :mod:`meshplane.server.gc_pacing`)."""
        self._streams: dict[int, Stream] = {}
        self._controls: dict[int, tuple[object, asyncio.Queue[object]]] = {}
        """stream id -> (its credential from the authorizer, its request queue)"""
        self._ids = stream_ids if stream_ids is not None else itertools.count(1)
        """Stream ids: the xDS worker processes of one server each count in their own
        residue class, so that ids are unique across the server."""
        # nonces differ between server instances, so a reconnecting client's are never current
        self._nonce_prefix = secrets.token_hex(3) + "-"
        self.port: int | None = None

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False
    ) -> int:
        """Start serving on ``host:port`` (0 picks a free port); return the bound port.
        ``reuse_port``: bind with ``SO_REUSEPORT`` so that several processes serve one port
        (the kernel spreads new connections over them: ``--xds-workers``)."""
        limits = self.limits
        shared = [("grpc.so_reuseport", 1)] if reuse_port else []
        server = grpc.aio.server(
            options=[
                *shared,
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                ("grpc.keepalive_time_ms", int(limits.keepalive_time * 1000)),
                ("grpc.keepalive_timeout_ms", int(limits.keepalive_timeout * 1000)),
                ("grpc.max_connection_idle_ms", int(limits.max_connection_idle * 1000)),
                # a connection that never completes its TLS/HTTP2 handshake is dropped
                ("grpc.server_handshake_timeout_ms", 20_000),
                ("grpc.max_receive_message_length", limits.max_message),
                ("grpc.max_concurrent_streams", limits.streams_per_connection),
                # a reconnect storm of thousands of proxies must queue, not be cancelled
                ("grpc.server.max_pending_requests", 100_000),
                ("grpc.server.max_pending_requests_hard_limit", 200_000),
            ]
        )
        server.add_generic_rpc_handlers((_handlers(self),))
        if self.handlers:
            server.add_generic_rpc_handlers(self.handlers)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self.credentials is not None:
            bound = server.add_secure_port(address, self.credentials)
        else:
            bound = server.add_insecure_port(address)
        await server.start()
        self._server = server
        self.port = int(bound)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving; open streams are cancelled after ``grace`` seconds."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    def close_streams(self, revoked: Callable[[ProxyIdentity, object], str | None]) -> int:
        """End every open stream for which ``revoked(identity, credential)`` gives a reason,
        with ``PERMISSION_DENIED`` and that reason; return how many.  The proxy reconnects and
        is authorized again (so one holding another, valid credential gets back in).  Call it
        on the server's event loop."""
        closed = 0
        for stream_id, (credential, queue) in list(self._controls.items()):
            reason = revoked(self._streams[stream_id].identity, credential)
            if reason is not None:
                queue.put_nowait(_Close(reason))
                closed += 1
        return closed

    def proxies(self, match: Callable[[ProxyIdentity], bool] | None = None) -> list[ProxyStatus]:
        """One status record per open stream (those whose identity ``match`` accepts), oldest
        first."""
        return [
            stream.status()
            for _, stream in sorted(self._streams.items())
            if match is None or match(stream.identity)
        ]

    # -- one stream ---------------------------------------------------------------------

    async def _serve(
        self, kind: str, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> None:
        """Run one ADS stream until the client goes away."""
        handle: Callable[[Stream, Any, Any], None] = sotw.handle if kind == "sotw" else delta.handle
        quiet_ack: Callable[[Stream, Any, Any], bool] = (
            sotw.is_quiet_ack if kind == "sotw" else delta.is_quiet_ack
        )
        build: Builder = sotw.build if kind == "sotw" else delta.build
        parse = (
            discovery_pb2.DiscoveryRequest.FromString
            if kind == "sotw"
            else discovery_pb2.DeltaDiscoveryRequest.FromString
        )
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        queue: asyncio.Queue[object] = asyncio.Queue()
        peer = _peer_address(context.peer() or "")
        if self._per_peer.get(peer, 0) >= self.limits.streams_per_peer:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{peer} has {self.limits.streams_per_peer} open ADS streams (the limit)",
            )
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        reader: asyncio.Task[None] | None = None
        stream: Stream | None = None
        connection: ProxyConnection | None = None
        unwatch: Callable[[], None] | None = None
        timer: asyncio.TimerHandle | None = None
        try:
            if self.admit is not None:  # credentials first: nothing is read before this
                try:
                    self.admit(context.invocation_metadata() or (), _peer_cert(context))
                except PermissionError as error:
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(error))
            settle: list[Callable[[Any], bool]] = []
            reader = asyncio.create_task(_read(requests, queue, parse, settle))
            try:
                first = await asyncio.wait_for(
                    queue.get(), timeout=self.limits.first_request_timeout
                )
            except TimeoutError:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no request within {self.limits.first_request_timeout:g} s",
                )
            if first is _EOF:
                return
            if isinstance(first, _Invalid):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, first.reason)
            stream, connection, credential = await self._open(kind, first, context)

            def wake() -> None:
                if threading.get_ident() == loop_thread:  # the producer runs on this loop
                    queue.put_nowait(_WAKE)
                else:
                    loop.call_soon_threadsafe(queue.put_nowait, _WAKE)

            key = self.snapshot_key(connection)
            unwatch = self.cache.watch(key, wake)
            opened = stream

            def settle_quietly(request: Any) -> bool:
                """Settle an ACK in the reader when it cannot make anything go out (most of
                them: one per response), without waking this task to plan again."""
                if not queue.empty():  # requests are handled in order
                    return False
                snapshot = self.cache.get(key)
                if not quiet_ack(opened, request, snapshot):
                    return False
                handle(opened, request, snapshot)
                self.activity += 1
                return True

            settle.append(settle_quietly)
            self._streams[stream.stream_id] = stream
            self._controls[stream.stream_id] = (credential, queue)
            self.metrics.connected.inc()
            await self._notify("proxy_connected", connection)
            items: list[object] = [first]
            while True:
                while not queue.empty():
                    items.append(queue.get_nowait())
                snapshot = self.cache.get(key)
                for item in items:
                    if item is _EOF:
                        return
                    if isinstance(item, _Invalid):
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, item.reason)
                    if isinstance(item, _Close):
                        log.warning("closed the ADS stream of %s: %s", stream.identity, item.reason)
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, item.reason)
                    if item is not _WAKE:
                        handle(stream, item, snapshot)
                        self.activity += 1
                for _, response in stream.outgoing(snapshot, build):
                    await context.write(response)
                    self.activity += 1
                if timer is not None:
                    timer.cancel()
                    timer = None
                if stream.next_wake is not None:
                    timer = loop.call_at(_loop_time(loop, stream), queue.put_nowait, _WAKE)
                items = [await queue.get()]
        finally:
            left = self._per_peer.pop(peer, 1) - 1
            if left > 0:
                self._per_peer[peer] = left
            if timer is not None:
                timer.cancel()
            if reader is not None:
                reader.cancel()
            if unwatch is not None:
                unwatch()
            if stream is not None:
                self._controls.pop(stream.stream_id, None)
            if stream is not None and self._streams.pop(stream.stream_id, None) is not None:
                self.metrics.connected.dec()
            if connection is not None:
                await self._notify("proxy_disconnected", connection)

    def snapshot_key(self, connection: ProxyConnection) -> str:
        """The cache key a connection's stream watches."""
        if isinstance(self.producer, SnapshotKeyer):
            try:
                return self.producer.snapshot_key(connection)
            except Exception:
                log.exception("snapshot producer snapshot_key(%s) failed", connection.identity)
        return connection.identity.key

    async def _open(
        self, kind: str, first: Any, context: grpc.aio.ServicerContext
    ) -> tuple[Stream, ProxyConnection, object]:
        node = first.node
        if not node.id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first request has no node id"
            )
        try:
            identity = parse_node_id(node.id)
        except InvalidNodeIdError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
        size = node.metadata.ByteSize()
        if size > self.limits.max_node_metadata:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"node.metadata is {size} bytes, more than {self.limits.max_node_metadata}"
                " (the limit)",
            )
        credential: object = None
        if self.authorize is not None:
            try:
                metadata = context.invocation_metadata() or ()
                credential = self.authorize(identity, metadata, _peer_cert(context))
                if inspect.isawaitable(credential):
                    credential = await credential
            except PermissionError as error:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{identity} may not stream aggregated resources: {error}",
                )
        stream = Stream(
            stream_id=next(self._ids),
            kind=kind,
            node_id=node.id,
            identity=identity,
            peer=context.peer() or "",
            metrics=self.metrics,
            nack_backoff=self.nack_backoff,
            nack_backoff_max=self.nack_backoff_max,
            nonce_prefix=self._nonce_prefix,
        )
        connection = ProxyConnection(
            stream_id=stream.stream_id,
            node_id=node.id,
            identity=identity,
            cluster=node.cluster,
            peer=stream.peer,
            connected_since=stream.connected_since,
            kind=kind,
            metadata=json_format.MessageToDict(node.metadata),
            user_agent=f"{node.user_agent_name}/{node.user_agent_build_version.version}",
        )
        return stream, connection, credential

    async def _notify(self, method: str, connection: ProxyConnection) -> None:
        if self.producer is None:
            return
        try:
            await getattr(self.producer, method)(connection)
        except Exception:
            log.exception("snapshot producer %s(%s) failed", method, connection.identity)


def _handlers(server: XdsServer) -> grpc.GenericRpcHandler:
    """The ADS methods, receiving each request as bytes (parsed by :func:`_read`, off the event
    loop when large) and sending serialized responses."""

    async def sotw(requests: AsyncIterator[bytes], context: Any) -> None:
        await server._serve("sotw", requests, context)

    async def delta_(requests: AsyncIterator[bytes], context: Any) -> None:
        await server._serve("delta", requests, context)

    return grpc.method_handlers_generic_handler(
        "envoy.service.discovery.v3.AggregatedDiscoveryService",
        {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                sotw, response_serializer=_serialized
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                delta_,
                response_serializer=_serialized,
            ),
        },
    )


def _serialized(response: Any) -> bytes:
    """A response as bytes: those the handler made already (state of the world serializes
    each update's shared body once), or the message serialized."""
    return response if isinstance(response, bytes) else response.SerializeToString()


@dataclass(frozen=True, slots=True)
class _Invalid:
    """Queued for a request that is not a valid message: the stream ends INVALID_ARGUMENT."""

    reason: str


_INLINE_PARSE = 64 * 1024
"""Requests up to this size are parsed on the event loop; larger ones in a worker thread."""


async def _read(
    requests: AsyncIterator[bytes],
    queue: asyncio.Queue[object],
    parse: Callable[[bytes], Any],
    settle: list[Callable[[Any], bool]],
) -> None:
    """Parse requests into ``queue``; once the stream is open, ``settle[0]`` may take a request
    (a quiet ACK) instead."""
    try:
        async for raw in requests:
            try:
                if len(raw) <= _INLINE_PARSE:
                    request = parse(raw)
                else:
                    request = await asyncio.to_thread(parse, raw)
            except Exception as error:  # DecodeError: not a DiscoveryRequest
                queue.put_nowait(_Invalid(f"the request is not a valid message: {error}"))
                return
            if settle and settle[0](request):
                continue
            queue.put_nowait(request)
    except asyncio.CancelledError:
        raise
    except Exception as error:  # the client went away mid-read
        log.debug("ADS stream read ended: %s", error)
    finally:
        queue.put_nowait(_EOF)


def _loop_time(loop: asyncio.AbstractEventLoop, stream: Stream) -> float:
    assert stream.next_wake is not None
    return loop.time() + max(0.0, stream.next_wake - stream.clock())


def _peer_address(peer: str) -> str:
    """``ipv4:127.0.0.1:41568`` -> ``ipv4:127.0.0.1`` (``ipv6:[::1]:5`` -> ``ipv6:[::1]``)."""
    address, _, port = peer.rpartition(":")
    return address if port.isdigit() else peer


def _peer_cert(context: grpc.aio.ServicerContext) -> bytes | None:
    certs = (context.auth_context() or {}).get("x509_pem_cert")
    return certs[0] if certs else None
