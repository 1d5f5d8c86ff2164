"""The attacks of the hardening review, as functions the abuse tier and ``bench.abuse`` share.

Each one is sent to a real server over real sockets (gRPC for xDS, HTTP for the API, raw TCP
for slow clients) and returns what the attacker saw, for the caller to check.  Sizes follow
the review's reproductions (a 60 MB ``node.metadata``, 10 streams of 6.5 MB, ...).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence

import grpc
from google.protobuf.internal.encoder import _VarintBytes

SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
CLUSTERS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload


def discovery_request(node_id: str, metadata_bytes: int = 0) -> bytes:
    """A serialized DiscoveryRequest for clusters whose ``node.metadata`` Struct holds about
    ``metadata_bytes`` bytes of distinct keys (built as bytes: building a 60 MB Struct with the
    protobuf API would take the attacker longer than the server)."""
    value = _field(3, b"x" * 16)  # Value.string_value
    chunk = b"".join(
        _field(1, _field(1, b"k%08d" % i) + _field(2, value))  # Struct.fields entries
        for i in range(min(20_000, metadata_bytes // 30 + 1))
    )
    repeats = -(-metadata_bytes // len(chunk)) if metadata_bytes else 0
    entries = [chunk] * repeats  # keys repeat past the first chunk: a map keeps the last
    node = _field(1, node_id.encode()) + _field(3, b"".join(entries))
    return _field(2, node) + _field(4, CLUSTERS.encode())


async def ads_call(
    target: str,
    messages: Sequence[bytes],
    *,
    token: str | None = None,
    hold: float = 0.0,
    wait: float = 30.0,
) -> tuple[grpc.StatusCode, str]:
    """Open one ADS stream on its own connection, send ``messages`` (raw bytes), keep it open
    ``hold`` seconds, and return how it ended (OK: it was still open; the attacker closed)."""
    channel = grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_send_message_length", -1),
        ],
    )
    try:
        call = channel.stream_stream(
            SOTW, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )(metadata=(("authorization", f"Bearer {token}"),) if token else None)
        try:
            for message in messages:
                await call.write(message)
            deadline = time.monotonic() + max(hold, 0.0)
            while True:
                remaining = deadline - time.monotonic() if hold else wait
                if remaining <= 0:
                    return grpc.StatusCode.OK, "still open"
                response = await asyncio.wait_for(call.read(), remaining)
                if response is grpc.aio.EOF:
                    break
            return grpc.StatusCode.OK, "ended"
        except TimeoutError:
            return grpc.StatusCode.OK, "still open"
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details() or ""
        except asyncio.InvalidStateError:
            code = await call.code()
            return code, await call.details()
        finally:
            call.cancel()
    finally:
        await channel.close()


def hold_sockets(host: str, port: int, count: int, payload: bytes = b"") -> list[socket.socket]:
    """``count`` TCP connections that send ``payload`` (maybe nothing) and then stay silent."""
    held = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=10)
        if payload:
            sock.sendall(payload)
        held.append(sock)
    return held


def closed_by_server(sock: socket.socket, timeout: float) -> bytes | None:
    """What the server sent before closing ``sock`` within ``timeout`` (None: still open)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:  # closed with our unread bytes pending: a reset
        return data
    except OSError:  # the timeout
        return None
