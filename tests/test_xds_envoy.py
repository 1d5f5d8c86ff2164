"""Tier 3: the ADS server driving a real Envoy, asserted through real traffic and the admin API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client import CollectorRegistry

from meshplane.proxy import BootstrapOptions
from meshplane.xds import Snapshot, SnapshotCache, XdsServer, types
from tests.support import xds as build
from tests.support.envoy import EnvoyHarness
from tests.support.net import EchoServer
from tests.support.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

NODE = "mesh/demo/virtualNode/web"


@dataclass
class Rig:
    cache: SnapshotCache
    server: XdsServer
    port: int
    registry: CollectorRegistry
    envoy: EnvoyHarness
    listen: tuple[str, int]
    upstreams: dict[str, EchoServer] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.listen[0]}:{self.listen[1]}/"

    def snapshot(self, cluster: str, **extra: object) -> Snapshot:
        return build.simple_snapshot(cluster, self.upstreams[cluster].address, self.listen)

    def pushes(self, type_url: str) -> float:
        value = self.registry.get_sample_value(
            "meshplane_xds_pushes_total", {"type": types.short_name(type_url)}
        )
        return value or 0.0


@contextlib.contextmanager
def upstreams() -> Iterator[dict[str, EchoServer]]:
    servers = {
        "svc-a": EchoServer("svc-a", "127.0.0.2"),
        "svc-b": EchoServer("svc-b", "127.0.0.3"),
    }
    with contextlib.ExitStack() as stack:
        for server in servers.values():
            stack.enter_context(server)
        yield servers


@contextlib.asynccontextmanager
async def rig(api_type: str = "GRPC") -> AsyncIterator[Rig]:
    cache = SnapshotCache()
    registry = CollectorRegistry()
    server = XdsServer(cache, registry=registry, nack_backoff=0.2, nack_backoff_max=1.0)
    port = await server.start("127.0.0.1", 0)
    options = BootstrapOptions(
        resource=NODE,
        xds_host="127.0.0.1",
        xds_port=port,
        api_type=api_type,  # type: ignore[arg-type]
    )
    envoy = EnvoyHarness(options)
    try:
        with upstreams() as servers:
            envoy.start()
            r = Rig(cache, server, port, registry, envoy, ("127.0.0.1", free_port()), servers)
            yield r
            server = r.server  # a test may have replaced it
    finally:
        envoy.close()
        await server.stop(0)


async def fetch(client: httpx.AsyncClient, url: str) -> str | None:
    try:
        response = await client.get(url)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


async def wait_served_by(r: Rig, client: httpx.AsyncClient, name: str) -> None:
    async def served() -> bool:
        return await fetch(client, r.url) == name

    await r.envoy.wait_for(served, what=f"traffic to reach {name}")


class Traffic:
    """Bounded loops of back-to-back requests through Envoy (``workers`` concurrent), recording
    every result in order; None is a failure."""

    def __init__(self, client: httpx.AsyncClient, url: str, workers: int = 6) -> None:
        self.client, self.url, self.workers = client, url, workers
        self.results: list[str | None] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _run(self) -> None:
        for _ in range(20_000):
            if self._stop.is_set():
                return
            self.results.append(await fetch(self.client, self.url))

    def __enter__(self) -> Traffic:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.workers)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def __exit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()

    @property
    def failures(self) -> int:
        return sum(1 for r in self.results if r is None)


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_cluster_swap_is_make_before_break(api_type: str) -> None:
    async with rig(api_type) as r, httpx.AsyncClient(timeout=5) as client:
        r.cache.set_snapshot(NODE, r.snapshot("svc-a"))
        await wait_served_by(r, client, "svc-a")

        # swap back and forth under concurrent load: every swap adds a cluster that must be
        # warm before the route moves, and removes one only after the route has moved
        for old, new in [("svc-a", "svc-b"), ("svc-b", "svc-a"), ("svc-a", "svc-b")]:
            with Traffic(client, r.url) as traffic:
                await asyncio.sleep(0.05)
                r.cache.set_snapshot(NODE, r.snapshot(new))
                await wait_served_by(r, client, new)

                async def old_cluster_gone(old: str = old) -> bool:
                    return old not in await r.envoy.cluster_names()

                await r.envoy.wait_for(old_cluster_gone, what=f"{old} to be removed")
                await asyncio.sleep(0.05)
                await traffic.stop()
            assert traffic.failures == 0, traffic.results
            assert old in traffic.results and new in traffic.results
            # once the old cluster is gone, only the new one answers
            assert set(traffic.results[-traffic.workers :]) == {new}

        [status] = r.server.proxies()
        assert status.node_id == NODE
        assert status.kind == ("sotw" if api_type == "GRPC" else "delta")
        for type_url in (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE):
            assert status.types[type_url].synced, status.types[type_url]
            assert status.types[type_url].last_nack is None


def _resources(snapshot: Snapshot) -> list[object]:
    return [r for named in snapshot.resources.values() for r in named.values()]


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_rejected_config_is_held_and_last_good_config_serves(api_type: str) -> None:
    async with rig(api_type) as r, httpx.AsyncClient(timeout=5) as client:
        good = r.snapshot("svc-a")
        r.cache.set_snapshot(NODE, good)
        await wait_served_by(r, client, "svc-a")

        bad_listener = build.http_listener("lds_bad", "not-an-ip", free_port(), "rds_ingress")
        r.cache.set_snapshot(NODE, Snapshot([*_resources(good), bad_listener]))

        def nack() -> object:
            [status] = r.server.proxies()
            return status.types[types.LISTENER].last_nack

        async def nacked() -> bool:
            return nack() is not None

        await r.envoy.wait_for(nacked, what="the LDS NACK")
        assert "not-an-ip" in str(getattr(nack(), "error", "")), nack()
        pushes = r.pushes(types.LISTENER)
        # no resend loop: over a second (several backoff periods) nothing is pushed again
        results = [await fetch(client, r.url) for _ in range(10)]
        await asyncio.sleep(1.0)
        assert r.pushes(types.LISTENER) == pushes
        stats = await r.envoy.stats()
        assert stats["listener_manager.lds.update_rejected"] == 1
        # Envoy keeps serving on the last good config
        results += [await fetch(client, r.url) for _ in range(10)]
        assert results == ["svc-a"] * 20
        nacks = r.registry.get_sample_value("meshplane_xds_nacks_total", {"type": "lds"})
        assert nacks == 1

        # a corrected snapshot that changes something is delivered
        r.cache.set_snapshot(NODE, r.snapshot("svc-b"))
        await wait_served_by(r, client, "svc-b")


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_envoy_survives_control_plane_restart(api_type: str) -> None:
    async with rig(api_type) as r, httpx.AsyncClient(timeout=5) as client:
        r.cache.set_snapshot(NODE, r.snapshot("svc-a"))
        await wait_served_by(r, client, "svc-a")

        async def connected(state: int) -> bool:
            return (await r.envoy.stats()).get("control_plane.connected_state") == state

        with Traffic(client, r.url) as traffic:
            await r.server.stop(0)
            await r.envoy.wait_for(lambda: connected(0), what="Envoy to see the server gone")
            await asyncio.sleep(0.3)
            registry = CollectorRegistry()
            r.server = XdsServer(r.cache, registry=registry, nack_backoff=0.2)
            assert await r.server.start("127.0.0.1", r.port) == r.port

            async def reconnected() -> bool:
                proxies = r.server.proxies()
                return bool(proxies) and all(t.synced for t in proxies[0].types.values())

            await r.envoy.wait_for(reconnected, timeout=15, what="Envoy to reconnect")
            await r.envoy.wait_for(lambda: connected(1), what="Envoy connected again")
            await traffic.stop()
        assert traffic.failures == 0 and set(traffic.results) == {"svc-a"}
        if api_type == "GRPC":
            # the reconnecting Envoy reported current versions: nothing had to be re-sent
            for short in ("cds", "eds", "lds", "rds"):
                sent = registry.get_sample_value("meshplane_xds_pushes_total", {"type": short})
                assert not sent, short

        # and the new server drives it
        r.cache.set_snapshot(NODE, r.snapshot("svc-b"))
        await wait_served_by(r, client, "svc-b")


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_updated_cluster_warms_with_unchanged_endpoints(api_type: str) -> None:
    """An updated EDS cluster warms again and needs its ClusterLoadAssignment again."""
    async with rig(api_type) as r, httpx.AsyncClient(timeout=5) as client:
        r.cache.set_snapshot(NODE, r.snapshot("svc-a"))
        await wait_served_by(r, client, "svc-a")
        cluster = build.eds_cluster("svc-a", connect_timeout=2.5)
        updated = [
            res for res in _resources(r.snapshot("svc-a")) if getattr(res, "name", "") != "svc-a"
        ]
        r.cache.set_snapshot(NODE, Snapshot([*updated, cluster]))

        async def warmed() -> bool:
            dump = await r.envoy.config_dump("dynamic_active_clusters")
            [active] = [c for c in dump["configs"] if c["cluster"]["name"] == "svc-a"]
            warming = await r.envoy.config_dump("dynamic_warming_clusters")
            return active["cluster"]["connect_timeout"] == "2.500s" and not warming.get("configs")

        await r.envoy.wait_for(warmed, what="the updated cluster to warm")
        assert await fetch(client, r.url) == "svc-a"


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_ready_means_the_listeners_serve(api_type: str) -> None:
    """The first LDS answer waits for the clusters, so Envoy is not LIVE without listeners."""
    async with rig(api_type) as r, httpx.AsyncClient(timeout=5) as client:
        assert not await r.envoy.ready()
        r.cache.set_snapshot(NODE, r.snapshot("svc-a"))
        await r.envoy.wait_for(r.envoy.ready, what="Envoy to be ready")
        assert await fetch(client, r.url) == "svc-a"
        # one LDS answer: the listener, not an empty one first
        assert r.pushes(types.LISTENER) == 1
        assert (await r.envoy.stats())["listener_manager.lds.update_success"] == 1
