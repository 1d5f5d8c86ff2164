"""The ADS gRPC server: wires the snapshot cache, the producer and the protocol handlers.

:class:`XdsServer` serves ``envoy.service.discovery.v3.AggregatedDiscoveryService`` (both
``StreamAggregatedResources`` and ``DeltaAggregatedResources``) with ``grpc.aio`` in the
caller's event loop.  Per stream:

1. The first request must carry ``node``; its id is parsed into a :class:`ProxyIdentity`
   (``INVALID_ARGUMENT`` if it names no virtual node/gateway) and, if an authorizer is set,
   authorized (``PERMISSION_DENIED`` when it raises :class:`PermissionError`).  Later requests
   need not repeat ``node``.
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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from prometheus_client import CollectorRegistry

from meshplane.xds import delta, sotw
from meshplane.xds._proto import json_format
from meshplane.xds.cache import SnapshotCache
from meshplane.xds.identity import InvalidNodeIdError, ProxyIdentity, parse_node_id
from meshplane.xds.metrics import XdsMetrics
from meshplane.xds.producer import (
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
    ) -> None:
        self.cache = cache
        self.producer = producer
        self.metrics = XdsMetrics(registry if registry is not None else CollectorRegistry())
        self.authorize = authorize
        self.nack_backoff = nack_backoff
        self.nack_backoff_max = nack_backoff_max
        self.credentials = credentials
        self._server: grpc.aio.Server | None = None
        self._streams: dict[int, Stream] = {}
        self._controls: dict[int, tuple[object, asyncio.Queue[object]]] = {}
        """stream id -> (its credential from the authorizer, its request queue)"""
        self._ids = itertools.count(1)
        # nonces differ between server instances, so a reconnecting client's are never current
        self._nonce_prefix = secrets.token_hex(3) + "-"
        self.port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start serving on ``host:port`` (0 picks a free port); return the bound port."""
        server = grpc.aio.server(
            options=[
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                # a reconnect storm of thousands of proxies must queue, not be cancelled
                ("grpc.server.max_pending_requests", 100_000),
                ("grpc.server.max_pending_requests_hard_limit", 200_000),
            ]
        )
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), server)
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
        build: Builder = sotw.build if kind == "sotw" else delta.build
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        reader = asyncio.create_task(_read(requests, queue))
        stream: Stream | None = None
        connection: ProxyConnection | None = None
        unwatch: Callable[[], None] | None = None
        timer: asyncio.TimerHandle | None = None
        try:
            first = await queue.get()
            if first is _EOF:
                return
            stream, connection, credential = await self._open(kind, first, context)

            def wake() -> None:
                loop.call_soon_threadsafe(queue.put_nowait, _WAKE)

            key = self.snapshot_key(connection)
            unwatch = self.cache.watch(key, wake)
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
                    if isinstance(item, _Close):
                        log.warning("closed the ADS stream of %s: %s", stream.identity, item.reason)
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, item.reason)
                    if item is not _WAKE:
                        handle(stream, item, snapshot)
                for _, response in stream.outgoing(snapshot, build):
                    await context.write(response)
                if timer is not None:
                    timer.cancel()
                    timer = None
                if stream.next_wake is not None:
                    timer = loop.call_at(_loop_time(loop, stream), queue.put_nowait, _WAKE)
                items = [await queue.get()]
        finally:
            if timer is not None:
                timer.cancel()
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


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: XdsServer) -> None:
        self._server = server

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context: Any
    ) -> None:
        await self._server._serve("sotw", request_iterator, context)

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: Any
    ) -> None:
        await self._server._serve("delta", request_iterator, context)


async def _read(requests: AsyncIterator[Any], queue: asyncio.Queue[object]) -> None:
    try:
        async for request in requests:
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


def _peer_cert(context: grpc.aio.ServicerContext) -> bytes | None:
    certs = (context.auth_context() or {}).get("x509_pem_cert")
    return certs[0] if certs else None
