"""The control loop without sockets: store -> change feed -> translation -> snapshot cache.

Shows that a proxy gets a snapshot when it connects, that a burst of changes is applied
together, and that only the proxies whose translation read a changed resource are
translated again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from meshplane.control import ControlLoop
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.service.access import ANONYMOUS
from meshplane.service.arns import Partition
from meshplane.service.resources import Caller, ResourceService
from meshplane.store import SqlStore, open_store
from meshplane.xds import ProxyConnection, SnapshotCache, parse_node_id, types

CALLER = Caller("000000000000", ANONYMOUS)


def connection(stream_id: int, node: str) -> ProxyConnection:
    return ProxyConnection(
        stream_id=stream_id,
        node_id=node,
        identity=parse_node_id(node),
        cluster=node,
        peer="test",
        connected_since=datetime.now(UTC),
        kind="sotw",
        metadata={},
    )


def node_spec(host: str, backends: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": host}},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
    }


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = open_store(data_dir=tmp_path)
    yield s
    s.close()


def translations(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("meshplane_translations_total") or 0.0


async def test_only_affected_proxies_are_translated_again(store: SqlStore) -> None:
    service = ResourceService(store, Partition("us-east-1", "000000000000"))

    def key(kind: Kind, name: str) -> ResourceKey:
        return ResourceKey(kind, "m", name)

    service.create(ResourceKey(Kind.MESH, "m", "m"), None, caller=CALLER)
    service.create(key(Kind.VIRTUAL_NODE, "a"), node_spec("10.0.0.1"), caller=CALLER)
    service.create(key(Kind.VIRTUAL_NODE, "b"), node_spec("10.0.0.2"), caller=CALLER)
    service.create(
        key(Kind.VIRTUAL_SERVICE, "a.svc"),
        {"provider": {"virtualNode": {"virtualNodeName": "a"}}},
        caller=CALLER,
    )
    service.create(
        key(Kind.VIRTUAL_NODE, "client"), node_spec("10.0.0.3", ("a.svc",)), caller=CALLER
    )
    service.create(key(Kind.VIRTUAL_NODE, "loner"), node_spec("10.0.0.4"), caller=CALLER)

    cache = SnapshotCache()
    registry = CollectorRegistry()
    loop = ControlLoop(store, cache, registry=registry, debounce=0.01)
    await loop.start()
    try:
        await loop.proxy_connected(connection(1, "mesh/m/virtualNode/client"))
        await loop.proxy_connected(connection(2, "mesh/m/virtualNode/loner"))
        snapshot = cache.get("mesh/m/virtualNode/client")
        assert snapshot is not None
        clusters = set(snapshot.get(types.CLUSTER))
        assert "cds_egress_m_a_http_8080" in clusters
        assert not any("_b_" in name for name in clusters)  # b is not a backend: not sent
        assert translations(registry) == 2

        # a change to node b touches neither proxy's inputs: nothing is translated
        await asyncio.to_thread(
            lambda: service.update(
                key(Kind.VIRTUAL_NODE, "b"), node_spec("10.9.9.9"), caller=CALLER
            )
        )
        await _settle(loop, store)
        assert translations(registry) == 2

        # a change to node a reaches the client (a's provider) but not the loner
        await asyncio.to_thread(
            lambda: service.update(
                key(Kind.VIRTUAL_NODE, "a"), node_spec("10.1.1.1"), caller=CALLER
            )
        )
        await _settle(loop, store)
        assert translations(registry) == 3
        after = cache.get("mesh/m/virtualNode/client")
        assert after is not None
        assert after.version(types.CLUSTER) != snapshot.version(types.CLUSTER)

        # a burst of writes is applied as one batch
        for host in ("10.2.2.2", "10.3.3.3", "10.4.4.4"):
            spec = node_spec(host)
            await asyncio.to_thread(
                lambda spec=spec: service.update(key(Kind.VIRTUAL_NODE, "a"), spec, caller=CALLER)
            )
        await _settle(loop, store)
        assert translations(registry) <= 5

        await loop.proxy_disconnected(connection(1, "mesh/m/virtualNode/client"))
        assert cache.get("mesh/m/virtualNode/client") is None
    finally:
        await loop.stop()


async def _settle(loop: ControlLoop, store: SqlStore) -> None:
    for _ in range(400):
        if loop.revision >= store.revision:
            await asyncio.sleep(0.05)
            if loop.revision >= store.revision:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the control loop did not catch up with the store")
