"""Tier 2: incremental (delta) ADS over a real in-process gRPC stream (the test plays Envoy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from meshplane.xds import Snapshot, SnapshotCache, XdsServer, types
from tests.support import xds as build
from tests.support.xds import AdsClient, delta_request

pytestmark = pytest.mark.timeout(30)

NODE = "mesh/demo/virtualGateway/gw"


def chain(cluster: str = "c1", port: int = 8080) -> Snapshot:
    return build.simple_snapshot(cluster, ("127.0.0.2", port), ("127.0.0.1", 15000))


@pytest.fixture
def cache() -> SnapshotCache:
    return SnapshotCache()


@pytest.fixture
async def served(cache: SnapshotCache) -> AsyncIterator[tuple[XdsServer, str]]:
    server = XdsServer(cache, registry=CollectorRegistry(), nack_backoff=0.3)
    port = await server.start("127.0.0.1", 0)
    yield server, f"127.0.0.1:{port}"
    await server.stop(0)


@pytest.fixture
async def client(served: tuple[XdsServer, str]) -> AsyncIterator[AdsClient]:
    client = AdsClient(served[1], delta=True)
    yield client
    await client.close()


def names(response: Any) -> list[str]:
    return sorted(r.name for r in response.resources)


async def converge(client: AdsClient) -> dict[str, Any]:
    """Wildcard CDS, EDS c1, wildcard LDS, RDS rds_ingress; ACK all; return responses."""
    out: dict[str, Any] = {}
    await client.send(delta_request(types.CLUSTER, node=NODE))
    out[types.CLUSTER] = cds = await client.recv()
    assert names(cds) == ["c1"]
    await client.send(delta_request(types.CLUSTER, nonce=cds.nonce))
    await client.send(delta_request(types.ENDPOINT, ["c1"]))
    out[types.ENDPOINT] = eds = await client.recv()
    assert names(eds) == ["c1"]
    await client.send(delta_request(types.ENDPOINT, nonce=eds.nonce))
    await client.send(delta_request(types.LISTENER))
    out[types.LISTENER] = lds = await client.recv()
    assert names(lds) == ["lds_ingress"]
    await client.send(delta_request(types.LISTENER, nonce=lds.nonce))
    await client.send(delta_request(types.ROUTE, ["rds_ingress"]))
    out[types.ROUTE] = rds = await client.recv()
    await client.send(delta_request(types.ROUTE, nonce=rds.nonce))
    return out


async def test_initial_fetch_and_only_changes_are_sent(
    cache: SnapshotCache, client: AdsClient, served: tuple[XdsServer, str]
) -> None:
    cache.set_snapshot(NODE, chain())
    await converge(client)
    await client.quiet(0.3)
    cache.set_snapshot(NODE, chain())
    await client.quiet(0.3)
    cache.set_snapshot(NODE, chain(port=9090))
    eds = await client.recv()
    assert eds.type_url == types.ENDPOINT and names(eds) == ["c1"]
    assert not eds.removed_resources
    await client.send(delta_request(types.ENDPOINT, nonce=eds.nonce))
    await client.quiet(0.3)
    [status] = served[0].proxies()
    assert status.kind == "delta" and all(t.synced for t in status.types.values())


async def test_subscribe_unsubscribe_and_absent_names(
    cache: SnapshotCache, client: AdsClient
) -> None:
    cache.set_snapshot(NODE, chain())
    await converge(client)
    # a name that does not exist is reported in removed_resources, once
    await client.send(delta_request(types.SECRET, ["cert"]))
    absent = await client.recv()
    assert absent.type_url == types.SECRET and list(absent.removed_resources) == ["cert"]
    await client.send(delta_request(types.SECRET, nonce=absent.nonce))
    await client.quiet(0.3)
    # ... and sent when it appears
    resources = [r for named in chain().resources.values() for r in named.values()]
    cache.set_snapshot(NODE, Snapshot([*resources, build.secret("cert")]))
    sds = await client.recv()
    assert names(sds) == ["cert"]
    await client.send(delta_request(types.SECRET, nonce=sds.nonce))
    # unsubscribe: nothing more about it, even when it changes
    await client.send(delta_request(types.SECRET, unsubscribe=["cert"]))
    await client.quiet(0.3)
    # re-subscribing to a name the client had makes the server send it again
    await client.send(delta_request(types.SECRET, ["cert"]))
    again = await client.recv()
    assert names(again) == ["cert"]


async def test_removed_cluster_after_route_moves(cache: SnapshotCache, client: AdsClient) -> None:
    cache.set_snapshot(NODE, chain())
    await converge(client)
    cache.set_snapshot(NODE, chain("c2"))
    cds = await client.recv()
    assert names(cds) == ["c2"] and not cds.removed_resources  # c1 still routed to
    await client.send(delta_request(types.CLUSTER, nonce=cds.nonce))
    await client.send(delta_request(types.ENDPOINT, ["c2"]))
    eds = await client.recv()
    assert names(eds) == ["c2"]
    await client.quiet(0.2)
    await client.send(delta_request(types.ENDPOINT, nonce=eds.nonce))
    rds = await client.recv()
    assert rds.type_url == types.ROUTE
    await client.send(delta_request(types.ROUTE, nonce=rds.nonce))
    removal = await client.recv()
    assert removal.type_url == types.CLUSTER and list(removal.removed_resources) == ["c1"]


async def test_subscription_honoured_on_stale_nonce(
    cache: SnapshotCache, client: AdsClient, served: tuple[XdsServer, str]
) -> None:
    cache.set_snapshot(NODE, chain())
    old = (await converge(client))[types.ENDPOINT]
    cache.set_snapshot(NODE, chain(port=9090))
    eds = await client.recv()
    # stale nonce: not an ACK, but the new subscription counts
    await client.send(delta_request(types.ENDPOINT, ["cert-endpoints"], nonce=old.nonce))
    await client.quiet(0.3)
    [status] = served[0].proxies()
    assert status.types[types.ENDPOINT].in_flight
    await client.send(delta_request(types.ENDPOINT, nonce=eds.nonce))
    absent = await client.recv()
    assert absent.type_url == types.ENDPOINT
    assert list(absent.removed_resources) == ["cert-endpoints"]
    await client.send(delta_request(types.ENDPOINT, nonce=absent.nonce))
    await client.quiet(0.3)


async def test_nack_is_held(cache: SnapshotCache, client: AdsClient, served: Any) -> None:
    cache.set_snapshot(NODE, chain())
    await converge(client)
    cache.set_snapshot(NODE, chain(port=9090))
    eds = await client.recv()
    await client.send(delta_request(types.ENDPOINT, nonce=eds.nonce, error="bad endpoint"))
    await client.quiet(1.0)
    [status] = served[0].proxies()
    nack = status.types[types.ENDPOINT].last_nack
    assert nack is not None and nack.error == "bad endpoint"


async def test_reconnect_with_initial_resource_versions(
    cache: SnapshotCache, served: tuple[XdsServer, str], client: AdsClient
) -> None:
    cache.set_snapshot(NODE, chain())
    first = await converge(client)
    await client.close()
    known = {
        url: {r.name: r.version for r in response.resources} for url, response in first.items()
    }
    cache.set_snapshot(NODE, chain(port=9090))  # only the endpoints changed meanwhile
    again = AdsClient(served[1], delta=True)
    try:
        await again.send(delta_request(types.CLUSTER, node=NODE, initial=known[types.CLUSTER]))
        await again.send(delta_request(types.ENDPOINT, ["c1"], initial=known[types.ENDPOINT]))
        await again.send(delta_request(types.LISTENER, initial=known[types.LISTENER]))
        await again.send(delta_request(types.ROUTE, ["rds_ingress"], initial=known[types.ROUTE]))
        # the first answer to each wildcard subscription comes (empty), plus the changed CLA
        got = [await again.recv() for _ in range(3)]
        by_type = {r.type_url: r for r in got}
        assert names(by_type[types.ENDPOINT]) == ["c1"]
        assert not by_type[types.CLUSTER].resources and not by_type[types.CLUSTER].removed_resources
        assert not by_type[types.LISTENER].resources
        await again.quiet(0.3)
    finally:
        await again.close()
