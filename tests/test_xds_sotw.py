"""Tier 2: state-of-the-world ADS over a real in-process gRPC stream (the test plays Envoy)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from meshplane.xds import ProxyConnection, Snapshot, SnapshotCache, XdsServer, types
from tests.support import xds as build
from tests.support.xds import AdsClient, ack, names_of, request

pytestmark = pytest.mark.timeout(30)

NODE = "mesh/demo/virtualNode/web"


def chain(cluster: str = "c1", port: int = 8080) -> Snapshot:
    return build.simple_snapshot(cluster, ("127.0.0.2", port), ("127.0.0.1", 15000))


class Recorder:
    def __init__(self, cache: SnapshotCache | None = None, snapshot: Snapshot | None = None):
        self.connected: list[ProxyConnection] = []
        self.disconnected: list[ProxyConnection] = []
        self.cache, self.snapshot = cache, snapshot

    async def proxy_connected(self, proxy: ProxyConnection) -> None:
        self.connected.append(proxy)
        if self.cache is not None and self.snapshot is not None:
            self.cache.set_snapshot(proxy.identity, self.snapshot)

    async def proxy_disconnected(self, proxy: ProxyConnection) -> None:
        self.disconnected.append(proxy)


@pytest.fixture
def cache() -> SnapshotCache:
    return SnapshotCache()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def served(
    cache: SnapshotCache, registry: CollectorRegistry
) -> AsyncIterator[tuple[XdsServer, str]]:
    server = XdsServer(cache, registry=registry, nack_backoff=0.3, nack_backoff_max=1.0)
    port = await server.start("127.0.0.1", 0)
    yield server, f"127.0.0.1:{port}"
    await server.stop(0)


@pytest.fixture
def server(served: tuple[XdsServer, str]) -> XdsServer:
    return served[0]


@pytest.fixture
async def client(served: tuple[XdsServer, str]) -> AsyncIterator[AdsClient]:
    client = AdsClient(served[1])
    yield client
    await client.close()


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(250):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def converge(client: AdsClient) -> dict[str, Any]:
    """Play a well-behaved Envoy: CDS, EDS, LDS, RDS, ACK everything; return the last responses."""
    await client.send(request(types.CLUSTER, node=NODE))
    last: dict[str, Any] = {}
    cds = await client.recv()
    last[types.CLUSTER] = cds
    await client.send(request(types.ENDPOINT, ["c1"]))
    await client.send(ack(cds))
    eds = await client.recv()
    last[types.ENDPOINT] = eds
    await client.send(ack(eds, ["c1"]))
    await client.send(request(types.LISTENER))
    lds = await client.recv()
    assert names_of(lds) == ["lds_ingress"]
    await client.send(ack(lds))
    await client.send(request(types.ROUTE, ["rds_ingress"]))
    rds = await client.recv()
    await client.send(ack(rds, ["rds_ingress"]))
    last[types.LISTENER], last[types.ROUTE] = lds, rds
    return last


async def test_initial_fetch_ack_and_nothing_resent(
    cache: SnapshotCache, server: XdsServer, client: AdsClient, registry: CollectorRegistry
) -> None:
    cache.set_snapshot(NODE, chain())
    last = await converge(client)
    assert names_of(last[types.CLUSTER]) == ["c1"]
    assert names_of(last[types.ENDPOINT]) == ["c1"]
    await client.quiet(0.3)
    # the same content again (new objects): nothing is sent
    cache.set_snapshot(NODE, chain())
    await client.quiet(0.5)
    [status] = server.proxies()
    assert status.identity.name == "web" and status.kind == "sotw"
    assert all(t.synced for t in status.types.values())
    assert registry.get_sample_value("meshplane_xds_pushes_total", {"type": "cds"}) == 1
    assert registry.get_sample_value("meshplane_xds_connected_proxies") == 1


async def test_waits_for_a_snapshot_then_sends(cache: SnapshotCache, client: AdsClient) -> None:
    await client.send(request(types.CLUSTER, node=NODE))
    await client.quiet(0.3)
    cache.set_snapshot("arn:aws:appmesh:us-east-1:111122223333:" + NODE, chain())
    assert names_of(await client.recv()) == ["c1"]


async def test_nack_is_recorded_and_not_resent(
    cache: SnapshotCache, server: XdsServer, client: AdsClient, registry: CollectorRegistry
) -> None:
    cache.set_snapshot(NODE, chain())
    await converge(client)
    cache.set_snapshot(NODE, chain(port=9090))
    eds = await client.recv()
    assert eds.type_url == types.ENDPOINT
    rejection = request(types.ENDPOINT, ["c1"], version="old", nonce=eds.nonce, error="malformed")
    await client.send(rejection)
    # hold: nothing comes back, not even after the backoff
    await client.quiet(1.0)
    [status] = server.proxies()
    nack = status.types[types.ENDPOINT].last_nack
    assert nack is not None and nack.error == "malformed"
    assert nack.version == eds.version_info
    assert registry.get_sample_value("meshplane_xds_nacks_total", {"type": "eds"}) == 1
    # a new snapshot for that type is sent again (after the backoff)
    cache.set_snapshot(NODE, chain(port=9191))
    fixed = await client.recv()
    assert fixed.type_url == types.ENDPOINT and fixed.version_info != eds.version_info
    await client.send(ack(fixed, ["c1"]))
    await client.quiet(0.3)


async def test_stale_nonce_is_ignored(
    cache: SnapshotCache, client: AdsClient, server: XdsServer
) -> None:
    cache.set_snapshot(NODE, chain())
    old = (await converge(client))[types.ENDPOINT]
    cache.set_snapshot(NODE, chain(port=9090))
    eds = await client.recv()
    # a request answering an older response (stale nonce) is neither an ACK nor a NACK
    stale = request(types.ENDPOINT, ["c1"], version=old.version_info, nonce=old.nonce, error="x")
    await client.send(stale)
    await client.quiet(0.3)
    [status] = server.proxies()
    assert status.types[types.ENDPOINT].in_flight
    assert status.types[types.ENDPOINT].last_nack is None
    await client.send(ack(eds, ["c1"]))
    await client.quiet(0.3)
    [status] = server.proxies()
    assert status.types[types.ENDPOINT].synced


async def test_named_resource_sent_when_it_appears(cache: SnapshotCache, client: AdsClient) -> None:
    cache.set_snapshot(NODE, chain())
    await converge(client)
    await client.send(request(types.SECRET, ["cert"]))
    await client.quiet(0.3)
    snapshot = chain()
    cache.set_snapshot(NODE, Snapshot([*_all(snapshot), build.secret("cert")]))
    sds = await client.recv()
    assert sds.type_url == types.SECRET and names_of(sds) == ["cert"]


def _all(snapshot: Snapshot) -> list[object]:
    return [r for named in snapshot.resources.values() for r in named.values()]


async def test_new_cluster_is_acked_before_routes_use_it(
    cache: SnapshotCache, client: AdsClient
) -> None:
    cache.set_snapshot(NODE, chain())
    eds_nonce = (await converge(client))[types.ENDPOINT].nonce
    cache.set_snapshot(NODE, chain("c2"))
    cds = await client.recv()
    assert cds.type_url == types.CLUSTER
    assert names_of(cds) == ["c1", "c2"]  # c1 kept: the acked route still uses it
    await client.quiet(0.3)  # no RDS before the new cluster is acked and warm
    await client.send(request(types.ENDPOINT, ["c1", "c2"], version="v", nonce=eds_nonce))
    await client.send(ack(cds))
    eds = await client.recv()
    assert eds.type_url == types.ENDPOINT and names_of(eds) == ["c1", "c2"]
    await client.quiet(0.3)  # still no RDS: c2's endpoints are not acked yet
    await client.send(ack(eds, ["c1", "c2"]))
    rds = await client.recv()
    assert rds.type_url == types.ROUTE
    await client.quiet(0.3)  # c1 is not removed before the route change is acked
    await client.send(ack(rds, ["rds_ingress"]))
    final = await client.recv()
    assert final.type_url == types.CLUSTER and names_of(final) == ["c2"]


async def test_reconnect_with_current_versions_sends_nothing(
    cache: SnapshotCache, served: tuple[XdsServer, str], client: AdsClient
) -> None:
    cache.set_snapshot(NODE, chain())
    last = await converge(client)
    await client.close()
    again = AdsClient(served[1])
    try:
        versions = {url: response.version_info for url, response in last.items()}
        await again.send(request(types.CLUSTER, version=versions[types.CLUSTER], node=NODE))
        await again.send(request(types.ENDPOINT, ["c1"], version=versions[types.ENDPOINT]))
        await again.send(request(types.LISTENER, version=versions[types.LISTENER]))
        await again.send(request(types.ROUTE, ["rds_ingress"], version=versions[types.ROUTE]))
        await again.quiet(0.5)
        # a changed snapshot is still pushed on the new stream
        cache.set_snapshot(NODE, chain(port=9090))
        eds = await again.recv()
        assert eds.type_url == types.ENDPOINT
    finally:
        await again.close()


async def test_producer_hook_sees_node_and_publishes(
    cache: SnapshotCache, registry: CollectorRegistry
) -> None:
    producer = Recorder(cache, chain())
    server = XdsServer(cache, producer, CollectorRegistry())
    port = await server.start()
    client = AdsClient(f"127.0.0.1:{port}")
    try:
        req = request(types.CLUSTER, node="arn:aws:appmesh:eu-west-1:123456789012:" + NODE)
        req.node.cluster = "web-cluster"
        req.node.metadata.update({"meshplane": {"app_port": 8080}})
        await client.send(req)
        assert names_of(await client.recv()) == ["c1"]
        [proxy] = producer.connected
        assert proxy.identity.key == NODE and proxy.identity.mesh_owner == "123456789012"
        assert proxy.cluster == "web-cluster"
        assert proxy.metadata["meshplane"]["app_port"] == 8080
        await client.close()
        await eventually(lambda: bool(producer.disconnected), "the disconnect callback")
        assert not server.proxies()
    finally:
        await client.close()
        await server.stop(0)


async def test_invalid_node_id_is_refused(server: XdsServer, client: AdsClient) -> None:
    await client.send(request(types.CLUSTER, node="mesh/demo/virtualService/web"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.recv()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "virtualNode" in (caught.value.details() or "")


async def test_authorizer_can_refuse(cache: SnapshotCache) -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    async def authorize(identity, metadata, cert):  # type: ignore[no-untyped-def]
        seen.append((identity.key, dict(metadata)))
        if dict(metadata).get("authorization") != "Bearer good":
            raise PermissionError("bad token")

    server = XdsServer(cache, authorize=authorize)
    port = await server.start()
    cache.set_snapshot(NODE, chain())
    bad = AdsClient(f"127.0.0.1:{port}", metadata=(("authorization", "Bearer bad"),))
    good = AdsClient(f"127.0.0.1:{port}", metadata=(("authorization", "Bearer good"),))
    try:
        await bad.send(request(types.CLUSTER, node=NODE))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await bad.recv()
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await good.send(request(types.CLUSTER, node=NODE))
        assert names_of(await good.recv()) == ["c1"]
        assert [key for key, _ in seen] == [NODE, NODE]
    finally:
        await bad.close()
        await good.close()
        await server.stop(0)


async def test_reconnect_with_unknown_versions_sends_full_state_ungated(
    cache: SnapshotCache, client: AdsClient
) -> None:
    """An Envoy that kept config from an earlier control plane (versions we cannot map) gets the
    full state at once: gating it could omit, and so delete, listeners it is serving with."""
    cache.set_snapshot(NODE, chain())
    await client.send(request(types.CLUSTER, version="from-before", node=NODE))
    await client.send(request(types.LISTENER, version="from-before"))
    first, second = await client.recv(), await client.recv()
    assert (first.type_url, names_of(first)) == (types.CLUSTER, ["c1"])
    assert (second.type_url, names_of(second)) == (types.LISTENER, ["lds_ingress"])


def weighted(weights: dict[str, int], *, extra: bool = False) -> Snapshot:
    """c1 and c2 behind one route configuration (and, with ``extra``, a second one)."""
    return Snapshot(
        [
            build.eds_cluster("c1"),
            build.endpoints("c1", ("127.0.0.2", 80)),
            build.eds_cluster("c2"),
            build.endpoints("c2", ("127.0.0.3", 80)),
            build.http_listener("lds_ingress", "127.0.0.1", 15000, "rds_ingress"),
            build.route_config("rds_ingress", weights),
            *([build.route_config("extra", "c1")] if extra else []),
        ]
    )


async def converge_weighted(client: AdsClient) -> Any:
    """CDS, EDS, LDS and RDS of :func:`weighted`, everything ACKed; return the RDS response."""
    await client.send(request(types.CLUSTER, node=NODE))
    cds = await client.recv()
    await client.send(request(types.ENDPOINT, ["c1", "c2"]))
    await client.send(ack(cds))
    eds = await client.recv()
    await client.send(ack(eds, ["c1", "c2"]))
    await client.send(request(types.LISTENER))
    lds = await client.recv()
    await client.send(ack(lds))
    await client.send(request(types.ROUTE, ["rds_ingress"]))
    rds = await client.recv()
    await client.send(ack(rds, ["rds_ingress"]))
    return rds


async def test_route_only_updates_follow_each_other(
    cache: SnapshotCache, server: XdsServer, client: AdsClient
) -> None:
    """A route change's ACK holds nothing back, and the server settles it without planning
    again: the next change still goes out, and the status shows the last one acked."""
    cache.set_snapshot(NODE, weighted({"c1": 90, "c2": 10}))
    await converge_weighted(client)
    for weights in ({"c1": 50, "c2": 50}, {"c1": 10, "c2": 90}, {"c1": 60, "c2": 40}):
        snapshot = weighted(weights)
        cache.set_snapshot(NODE, snapshot)
        rds = await client.recv()
        assert rds.type_url == types.ROUTE
        assert rds.version_info == snapshot.version(types.ROUTE)
        await client.send(ack(rds, ["rds_ingress"]))
    await client.quiet(0.3)  # the ACKs ask for nothing more
    [status] = server.proxies()
    route = status.types[types.ROUTE]
    assert route.acked_version == snapshot.version(types.ROUTE) and not route.in_flight


async def test_an_ack_that_subscribes_to_more_is_answered(
    cache: SnapshotCache, client: AdsClient
) -> None:
    """An ACK that also changes the subscription is not settled quietly: the new name goes
    out."""
    cache.set_snapshot(NODE, weighted({"c1": 90, "c2": 10}, extra=True))
    await converge_weighted(client)
    cache.set_snapshot(NODE, weighted({"c1": 50, "c2": 50}, extra=True))
    rds = await client.recv()
    assert names_of(rds) == ["rds_ingress"]
    await client.send(ack(rds, ["rds_ingress", "extra"]))
    more = await client.recv()
    assert more.type_url == types.ROUTE and names_of(more) == ["extra", "rds_ingress"]
