"""The metrics service over a real gRPC stream (in process): who may report, what is read,
and what hostile streams get — refused or bounded, never a crash, never one proxy's data
shown as another's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from meshplane.authority import TokenKey
from meshplane.server.proxy_auth import ProxyAuthorizer
from meshplane.telemetry import (
    MetricsService,
    StreamLimits,
    TelemetryCollector,
    TelemetrySettings,
    TelemetryStore,
    signals,
)
from meshplane.telemetry.wire import STREAM_METRICS, messages
from meshplane.xds import SnapshotCache, XdsServer

KEY = TokenKey(b"t" * 32)
NOW = 1_900_000_000
WEB = "mesh/tele/virtualNode/web"


def flush(node: str | None, counters: dict[str, float]) -> bytes:
    m = messages()
    message = m.StreamMetricsMessage()
    if node is not None:
        message.identifier.node.id = node
    for name, value in counters.items():
        family = message.envoy_metrics.add(name=name, type=m.COUNTER)
        family.metric.add().counter.value = value
    return bytes(message.SerializeToString())


class Harness:
    def __init__(self, *, required: bool = False, limits: StreamLimits | None = None) -> None:
        self.clock = [1000.0]
        self.store = TelemetryStore(TelemetrySettings(capacity=10), clock=lambda: self.clock[0])
        self.registry = CollectorRegistry()
        authorizer = ProxyAuthorizer(KEY, required=required, clock=lambda: NOW)
        self.service = MetricsService(
            self.store,
            authorize=authorizer,
            admit=authorizer.admit,
            limits=limits,
            registry=self.registry,
        )
        self.server = XdsServer(SnapshotCache(), handlers=[self.service.handler()])
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Harness:
        port = await self.server.start("127.0.0.1", 0)
        self.channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 100 * 1024 * 1024)]
        )
        return self

    async def __aexit__(self, *_: Any) -> None:
        assert self.channel is not None
        await self.channel.close()
        await self.server.stop(0)

    async def send(
        self, messages_: list[bytes], token_for: str | None = None, pause: float = 0.0
    ) -> grpc.StatusCode:
        assert self.channel is not None
        call = self.channel.stream_unary(STREAM_METRICS, request_serializer=None)
        metadata = (
            (("authorization", f"Bearer {KEY.issue(token_for, NOW, 60)[0]}"),) if token_for else ()
        )

        async def requests() -> AsyncIterator[bytes]:
            for raw in messages_:
                yield raw
                if pause:
                    await asyncio.sleep(pause)
                    self.clock[0] += 1.0

        try:
            await call(requests(), metadata=metadata)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    async def hold(self, token_for: str | None = None) -> grpc.StatusCode:
        """How a stream ends that stays open and sends nothing.  A stream refused from its
        metadata is refused before anything is read, so there is nothing to send; a write
        racing that refusal would fail in gRPC's core, and the client would then end the call
        as INTERNAL instead of with the server's status."""
        assert self.channel is not None
        metadata = (
            (("authorization", f"Bearer {KEY.issue(token_for, NOW, 60)[0]}"),) if token_for else ()
        )
        call = self.channel.stream_unary(STREAM_METRICS, request_serializer=None)(metadata=metadata)
        try:
            return await asyncio.wait_for(call.code(), 30)
        finally:
            call.cancel()

    def refused(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "meshplane_telemetry_refused_total", {"reason": reason}
        )
        return value or 0.0


async def test_a_proxy_reports_only_its_own_traffic() -> None:
    async with Harness() as h:
        counters = {
            "cluster.cds_egress_tele_api_http_8080.upstream_rq_total": 10,
            "cluster.cds_egress_tele_api_http_8080.upstream_rq_5xx": 1,
            # another mesh's cluster, another node's ingress: not web's to report
            "cluster.cds_egress_other_api_http_8080.upstream_rq_total": 99,
            "cluster.cds_ingress_tele_api_http_8080.upstream_rq_total": 99,
            "cluster.cds_ingress_tele_web_http_9000.upstream_rq_total": 7,
        }
        later = {k: v * 2 for k, v in counters.items()}
        code = await h.send([flush(WEB, counters), flush(None, later)], pause=0.01)
        assert code == grpc.StatusCode.OK
        [window] = list(h.store.windows())
        assert (window.key.mesh, window.key.name) == ("tele", "web")
        assert not window.connected
        h.store.settings = TelemetrySettings(capacity=10, stale_after=1e9)
        window.connected = True
        edges = signals.edges(h.store, "tele", 60)
        assert [(e.source, e.series.node, e.requests) for e in edges] == [("web", "api", 10.0)]
        nodes = signals.nodes(h.store, "tele", 60)
        assert [(n.source, n.requests) for n in nodes] == [("web", 7.0)]
        text = generate_latest(_registry(h.store)).decode()
        assert 'destination_node="api"' in text
        assert "other" not in text


def _registry(store: TelemetryStore) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(TelemetryCollector(store))
    return registry


async def test_authentication_like_ads() -> None:
    async with Harness(required=True) as h:
        raw = flush(WEB, {})
        # no token: refused from the metadata alone, before any message is read
        assert await h.hold() == grpc.StatusCode.PERMISSION_DENIED
        assert h.refused("unauthenticated") == 1
        other = "mesh/tele/virtualNode/api"
        assert await h.send([raw], token_for=other) == grpc.StatusCode.PERMISSION_DENIED
        assert h.refused("denied") == 1
        assert len(h.store) == 0
        assert await h.send([raw], token_for=WEB) == grpc.StatusCode.OK
        assert [w.key.name for w in h.store.windows()] == ["web"]


async def test_malformed_oversized_nested_and_nodeless_streams_are_refused() -> None:
    async with Harness(limits=StreamLimits(max_message_bytes=1024 * 1024)) as h:
        assert await h.send([b"\xff\xff\xff\xff garbage"]) == grpc.StatusCode.INVALID_ARGUMENT
        assert await h.send([b"x" * (2 * 1024 * 1024)]) == grpc.StatusCode.RESOURCE_EXHAUSTED
        # past the xDS server's message limit, gRPC refuses it before it is read
        assert await h.send([b"x" * (60 * 1024 * 1024)]) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await h.send([flush(None, {})]) == grpc.StatusCode.INVALID_ARGUMENT
        assert await h.send([flush("not-a-node-id", {})]) == grpc.StatusCode.INVALID_ARGUMENT
        # node.metadata is a Struct: nest it deeper than protobuf parses
        m = messages()
        message = m.StreamMetricsMessage()
        message.identifier.node.id = WEB
        raw = bytes(message.SerializeToString())
        nested = _nested_struct(200)
        # identifier (1) { node (1) { metadata (6) = nested } }
        node = _field(1, _tag_bytes(1, WEB.encode()) + _field(6, nested))
        raw = _field(1, node)
        assert await h.send([raw]) == grpc.StatusCode.INVALID_ARGUMENT
        assert h.refused("malformed") == 2
        assert h.refused("too_large") == 1
        assert h.refused("no_node") == 2
        assert len(h.store) == 0


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _tag_bytes(number: int, payload: bytes) -> bytes:
    return _field(number, payload)


def _nested_struct(depth: int) -> bytes:
    # Struct{fields: {"a": Value{struct_value: Struct{...}}}}
    inner = b""
    for _ in range(depth):
        value = _field(5, inner)  # Value.struct_value = 5
        entry = _field(1, b"a") + _field(2, value)
        inner = _field(1, entry)  # Struct.fields = 1
    return inner


async def test_a_flood_of_flushes_is_dropped_unread_and_the_window_stays_bounded() -> None:
    async with Harness() as h:
        raw = flush(WEB, {"cluster.cds_egress_tele_api_http_8080.upstream_rq_total": 1})
        # 500 flushes at once: the clock does not move, so all but the first are dropped
        assert await h.send([raw] * 500) == grpc.StatusCode.OK
        assert h.refused("too_frequent") == 499
        # 30 well-spaced flushes: the window keeps its capacity (10)
        assert await h.send([raw] * 30, pause=0.001) == grpc.StatusCode.OK
        [window] = list(h.store.windows())
        assert len(window.flushes) == 10


async def test_too_many_series_and_too_many_proxies_are_bounded() -> None:
    async with Harness() as h:
        h.store.settings = TelemetrySettings(capacity=10, max_series=5, max_proxies=2)
        counters = {f"cluster.cds_egress_tele_n{i}_http_80.upstream_rq_total": 1 for i in range(50)}
        assert await h.send([flush(WEB, counters)]) == grpc.StatusCode.OK
        [window] = list(h.store.windows())
        assert len({s for s, _ in window.flushes[-1].values}) == 5
        assert window.dropped == 45
        # two proxies fit; a third, while both still report, is refused
        h.store.window(window.key).connected = True  # type: ignore[union-attr]
        assert await h.send([flush("mesh/tele/virtualNode/b", {})]) == grpc.StatusCode.OK
        for w in h.store.windows():
            w.connected = True
        code = await h.send([flush("mesh/tele/virtualNode/c", {})])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert h.refused("too_many_proxies") == 1


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ([0, 0, 10, 0], 0.5, 7.5),  # all in (5, 10]: the middle
        ([0, 0, 0, 0], 0.99, None),
        ([0, 0, 0, 5], 0.99, 10.0),  # past the last bound: the last bound
    ],
)
def test_quantiles_interpolate_within_the_bucket(
    buckets: list[int], q: float, expected: float | None
) -> None:
    assert signals.quantile((1.0, 5.0, 10.0), buckets, q) == expected
