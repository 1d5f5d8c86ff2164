"""The control loop without sockets: embedded_store -> change feed -> translation -> snapshot cache.

Shows that a proxy gets a snapshot when it connects, that a burst of changes is applied
together, and that only the proxies whose translation read a changed resource are
translated again."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from meshplane.control import ControlLoop
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.service.arns import Partition
from meshplane.service.resources import ResourceService
from meshplane.store import SqlStore
from meshplane.xds import SnapshotCache, types
from tests.support.control import CALLER, node_spec, settle
from tests.support.xds import connection


def translations(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("meshplane_translations_total") or 0.0


async def test_only_affected_proxies_are_translated_again(embedded_store: SqlStore) -> None:
    service = ResourceService(embedded_store, Partition("us-east-1", "000000000000"))

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
    loop = ControlLoop(embedded_store, cache, registry=registry, debounce=0.01)
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
        await settle(loop, embedded_store)
        assert translations(registry) == 2

        # a change to node a reaches the client (a's provider) but not the loner
        await asyncio.to_thread(
            lambda: service.update(
                key(Kind.VIRTUAL_NODE, "a"), node_spec("10.1.1.1"), caller=CALLER
            )
        )
        await settle(loop, embedded_store)
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
        await settle(loop, embedded_store)
        assert translations(registry) <= 5

        await loop.proxy_disconnected(connection(1, "mesh/m/virtualNode/client"))
        assert cache.get("mesh/m/virtualNode/client") is None
    finally:
        await loop.stop()


async def test_consumers_with_the_same_backends_share_serialized_resources(
    embedded_store: SqlStore,
) -> None:
    """Two consumers of one service get the same Resource objects (one serialization) for
    their egress route table, listener and clusters; after a change both get the new ones."""
    service = ResourceService(embedded_store, Partition("us-east-1", "000000000000"))

    def key(kind: Kind, name: str) -> ResourceKey:
        return ResourceKey(kind, "m", name)

    service.create(ResourceKey(Kind.MESH, "m", "m"), None, caller=CALLER)
    service.create(key(Kind.VIRTUAL_NODE, "a"), node_spec("10.0.0.1"), caller=CALLER)
    service.create(
        key(Kind.VIRTUAL_SERVICE, "a.svc"),
        {"provider": {"virtualNode": {"virtualNodeName": "a"}}},
        caller=CALLER,
    )
    for name, host in (("c1", "10.0.0.3"), ("c2", "10.0.0.4")):
        service.create(key(Kind.VIRTUAL_NODE, name), node_spec(host, ("a.svc",)), caller=CALLER)

    cache = SnapshotCache()
    loop = ControlLoop(embedded_store, cache, debounce=0.01)
    await loop.start()
    try:
        await loop.proxy_connected(connection(1, "mesh/m/virtualNode/c1"))
        await loop.proxy_connected(connection(2, "mesh/m/virtualNode/c2"))

        def egress(node: str) -> list[Any]:
            snapshot = cache.get(f"mesh/m/virtualNode/{node}")
            assert snapshot is not None
            return [
                snapshot.get(types.ROUTE)["rds_egress_http_15001"],
                snapshot.get(types.LISTENER)["lds_egress_127.0.0.1_15001"],
                snapshot.get(types.CLUSTER)["cds_egress_m_a_http_8080"],
            ]

        before = egress("c1")
        assert all(x is y for x, y in zip(before, egress("c2"), strict=True))
        own = [cache.get(f"mesh/m/virtualNode/{n}") for n in ("c1", "c2")]
        assert [
            s.get(types.CLUSTER)[f"cds_ingress_m_{n}_http_8080"].name
            for s, n in zip(own, ("c1", "c2"), strict=True)
            if s is not None
        ] == [
            "cds_ingress_m_c1_http_8080",
            "cds_ingress_m_c2_http_8080",
        ]

        await asyncio.to_thread(
            lambda: service.update(
                key(Kind.VIRTUAL_NODE, "a"), node_spec("10.1.1.1"), caller=CALLER
            )
        )
        await settle(loop, embedded_store)
        after = egress("c1")
        assert after[2].version != before[2].version  # the provider's new address
        assert after[0].version == before[0].version  # the route table did not change
        assert all(x is y for x, y in zip(after, egress("c2"), strict=True))
    finally:
        await loop.stop()


async def test_a_change_to_many_proxies_lets_the_event_loop_run(
    embedded_store: SqlStore, monkeypatch: Any
) -> None:
    """A change that touches many proxies is published in steps: other tasks run between them,
    ``revision`` moves only once every snapshot is published, and a proxy that disconnects
    meanwhile is not published again."""
    monkeypatch.setattr("meshplane.control.loop.PUBLISH_STEP", 2)
    service = ResourceService(embedded_store, Partition("us-east-1", "000000000000"))

    def key(kind: Kind, name: str) -> ResourceKey:
        return ResourceKey(kind, "m", name)

    service.create(ResourceKey(Kind.MESH, "m", "m"), None, caller=CALLER)
    service.create(key(Kind.VIRTUAL_NODE, "a"), node_spec("10.0.0.1"), caller=CALLER)
    service.create(
        key(Kind.VIRTUAL_SERVICE, "a.svc"),
        {"provider": {"virtualNode": {"virtualNodeName": "a"}}},
        caller=CALLER,
    )
    consumers = [f"c{i}" for i in range(7)]
    for i, name in enumerate(consumers):
        service.create(
            key(Kind.VIRTUAL_NODE, name), node_spec(f"10.0.1.{i + 1}", ("a.svc",)), caller=CALLER
        )
    cache = SnapshotCache()
    registry = CollectorRegistry()
    loop = ControlLoop(embedded_store, cache, registry=registry, debounce=0.01)
    await loop.start()
    try:
        for i, name in enumerate(consumers):
            await loop.proxy_connected(connection(i + 1, f"mesh/m/virtualNode/{name}"))
        before = translations(registry)
        seen: list[tuple[int, float]] = []  # (revision, translations) each time this task runs
        leaving = connection(7, "mesh/m/virtualNode/c6")

        async def watch() -> None:
            while True:
                done = translations(registry) - before
                seen.append((loop.revision, done))
                if 0 < done < len(consumers) and leaving.stream_id in loop.connections:
                    await loop.proxy_disconnected(leaving)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        revision = embedded_store.revision
        await asyncio.to_thread(
            lambda: service.update(
                key(Kind.VIRTUAL_NODE, "a"), node_spec("10.1.1.1"), caller=CALLER
            )
        )
        await settle(loop, embedded_store)
        watcher.cancel()
        middle = [(r, done) for r, done in seen if 0 < done < len(consumers) - 1]
        assert middle, "the event loop did not run while the change was published"
        assert all(r == revision for r, _ in middle)  # not yet caught up
        # c6 left half way: published no more (and its snapshot is gone)
        assert translations(registry) - before < len(consumers)
        assert cache.get("mesh/m/virtualNode/c6") is None
        for name in consumers[:6]:
            snapshot = cache.get(f"mesh/m/virtualNode/{name}")
            assert snapshot is not None
            [cluster] = [r for n, r in snapshot.get(types.CLUSTER).items() if "_a_" in n]
            assert b"10.1.1.1" in cluster.body
    finally:
        await loop.stop()
