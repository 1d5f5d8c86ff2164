"""Snapshot keys: the ADS server watches the key its producer gives a connection, so proxies of
one identity (gateway replicas) share a snapshot when their options are equal and get their
own when they bind elsewhere; the control loop keys by identity and a digest of the
translation options.  Tier 2: a real in-process gRPC stream (the test plays Envoy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf import struct_pb2
from prometheus_client import CollectorRegistry

from meshplane.control import ControlLoop
from meshplane.control.loop import snapshot_key
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store import SqlStore
from meshplane.xds import (
    ProxyConnection,
    SnapshotCache,
    SnapshotKeyer,
    XdsServer,
    parse_node_id,
    types,
)
from meshplane.xds.cache import cache_key
from tests.support import xds as build
from tests.support.xds import AdsClient, connection, names_of, request

pytestmark = pytest.mark.timeout(30)

GATEWAY = "mesh/demo/virtualGateway/gw"


class ByAddress:
    """A producer that keys connections by the address in their metadata."""

    def __init__(self) -> None:
        self.connected: list[ProxyConnection] = []

    def snapshot_key(self, connection: ProxyConnection) -> str:
        address = connection.metadata.get("meshplane", {}).get("address", "none")
        return f"{connection.identity.key}/{address}"

    async def proxy_connected(self, proxy: ProxyConnection) -> None:
        self.connected.append(proxy)

    async def proxy_disconnected(self, proxy: ProxyConnection) -> None:
        return None


def first_request(address: str) -> Any:
    req = request(types.CLUSTER, node=GATEWAY)
    meshplane = struct_pb2.Struct()
    meshplane.update({"address": address, "admin": f"127.0.0.1:{hash(address) % 1000 + 9000}"})
    req.node.metadata.fields["meshplane"].struct_value.CopyFrom(meshplane)
    return req


@pytest.fixture
async def keyed() -> AsyncIterator[tuple[SnapshotCache, str]]:
    cache = SnapshotCache()
    producer = ByAddress()
    assert isinstance(producer, SnapshotKeyer)
    server = XdsServer(cache, producer, CollectorRegistry())
    port = await server.start("127.0.0.1", 0)
    yield cache, f"127.0.0.1:{port}"
    await server.stop(0)


async def test_streams_watch_the_producers_key(keyed: tuple[SnapshotCache, str]) -> None:
    cache, target = keyed
    clients = [AdsClient(target) for _ in range(3)]
    try:
        for client, address in zip(
            clients, ("127.0.0.20", "127.0.0.20", "127.0.0.21"), strict=True
        ):
            await client.send(first_request(address))
        cache.set_snapshot(
            f"{GATEWAY}/127.0.0.20",
            build.simple_snapshot("c20", ("127.0.0.2", 80), ("127.0.0.20", 8080)),
        )
        assert names_of(await clients[0].recv()) == ["c20"]
        assert names_of(await clients[1].recv()) == ["c20"]
        await clients[2].quiet(0.3)  # its own key has no snapshot yet
        cache.set_snapshot(
            f"{GATEWAY}/127.0.0.21",
            build.simple_snapshot("c21", ("127.0.0.2", 80), ("127.0.0.21", 8080)),
        )
        assert names_of(await clients[2].recv()) == ["c21"]
        await clients[0].quiet(0.2)
    finally:
        for client in clients:
            await client.close()


def test_cache_keys_normalize_node_ids_and_keep_producer_keys() -> None:
    arn = "arn:aws:appmesh:us-east-1:111122223333:" + GATEWAY
    assert cache_key(arn) == GATEWAY
    assert cache_key(parse_node_id(arn)) == GATEWAY
    assert cache_key(GATEWAY + "/0123abcd") == GATEWAY + "/0123abcd"


def test_loop_keys_by_identity_and_translation_options_only() -> None:
    assert snapshot_key(connection(1, GATEWAY, {})) == GATEWAY
    a = snapshot_key(
        connection(1, GATEWAY, {"meshplane": {"address": "127.0.0.20", "admin": "x:1"}})
    )
    b = snapshot_key(
        connection(
            1,
            GATEWAY,
            {"meshplane": {"address": "127.0.0.20", "admin": "x:2", "resource": "arn:..."}},
        )
    )
    c = snapshot_key(connection(1, GATEWAY, {"meshplane": {"address": "127.0.0.21"}}))
    assert a == b != c
    assert a.startswith(GATEWAY + "/") and c.startswith(GATEWAY + "/")
    # workload_address is the bootstrap's spelling of address; defaults are spelled out or not
    assert (
        snapshot_key(
            connection(
                1,
                GATEWAY,
                {"meshplane": {"workload_address": "127.0.0.20", "egress_port": 15001.0}},
            )
        )
        == a
    )
    # invalid options fall back to the defaults, as the loop's translation does
    assert snapshot_key(
        connection(1, GATEWAY, {"meshplane": {"egress_port": "x"}})
    ) == snapshot_key(connection(1, GATEWAY, {"meshplane": {}}))


async def test_control_loop_translates_each_replica_for_its_address(
    embedded_store: SqlStore,
) -> None:
    owner = "111122223333"

    def seed(tx: Any) -> None:
        tx.create(
            ResourceKey(Kind.MESH, "demo", "demo"), {}, mesh_owner=owner, resource_owner=owner
        )
        tx.create(
            ResourceKey(Kind.VIRTUAL_GATEWAY, "demo", "gw"),
            {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]},
            mesh_owner=owner,
            resource_owner=owner,
        )

    embedded_store.transact(seed)
    cache = SnapshotCache()
    loop = ControlLoop(embedded_store, cache, registry=CollectorRegistry())
    for i, address in enumerate(("127.0.0.20", "127.0.0.20", "127.0.0.21")):
        meta = {"meshplane": {"address": address, "admin": f"127.0.0.1:{9900 + i}"}}
        await loop.proxy_connected(connection(i + 1, GATEWAY, meta))
    keys = sorted(cache.keys())
    assert len(keys) == 2
    listeners = {
        key: sorted(cache.get(key).get(types.LISTENER))  # type: ignore[union-attr]
        for key in keys
    }
    assert sorted(listeners.values()) == [
        ["lds_ingress_127.0.0.20_8080"],
        ["lds_ingress_127.0.0.21_8080"],
    ]
