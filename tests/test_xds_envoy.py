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
from tests.support.net import EchoServer, free_port

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
        resource=NODE, xds_host="127.0.0.1", xds_port=port, api_type=api_type  # type: ignore[arg-type]
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
    """A bounded loop of requests through Envoy, recording every failure."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.results: list[str | None] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        for _ in range(5000):
            if self._stop.is_set():
                return
            self.results.append(await fetch(self.client, self.url))
            await asyncio.sleep(0.002)

    def __enter__(self) -> Traffic:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    def __exit__(self, *exc: object) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    @property
    def failures(self) -> int:
        return sum(1 for r in self.results if r is None)


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_cluster_swap_is_make_before_break(api_type: str) -> None:
    async with rig(api_type) as r, httpx.AsyncClient(timeout=5) as client:
        r.cache.set_snapshot(NODE, r.snapshot("svc-a"))
        await wait_served_by(r, client, "svc-a")

        with Traffic(client, r.url) as traffic:
            await asyncio.sleep(0.1)
            r.cache.set_snapshot(NODE, r.snapshot("svc-b"))
            await wait_served_by(r, client, "svc-b")

            async def old_cluster_gone() -> bool:
                return "svc-a" not in await r.envoy.cluster_names()

            await r.envoy.wait_for(old_cluster_gone, what="svc-a to be removed")
            await asyncio.sleep(0.1)
            await traffic.stop()
        assert traffic.failures == 0, traffic.results
        assert "svc-a" in traffic.results and "svc-b" in traffic.results
        # after the switch, svc-b only
        switched = traffic.results.index("svc-b")
        assert set(traffic.results[switched:]) == {"svc-b"}

        [status] = r.server.proxies()
        assert status.node_id == NODE
        assert status.kind == ("sotw" if api_type == "GRPC" else "delta")
        for type_url in (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE):
            assert status.types[type_url].synced, status.types[type_url]
            assert status.types[type_url].last_nack is None
