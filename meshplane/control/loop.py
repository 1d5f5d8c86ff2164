"""The control loop: keeps every connected proxy's snapshot in step with the store.

It is the xDS server's ``SnapshotProducer``.  When a proxy connects it translates the proxy's
mesh for that proxy (``meshplane.translate``) and publishes the snapshot.  It follows the
store's change feed: each burst of changes (debounced) updates the affected meshes' views,
and only the proxies whose translation read one of the changed resources (their recorded
``inputs``) are translated again.  Unchanged resources keep their content-hash versions, so
the ADS server sends nothing for them.  Built and started by ``meshplane.server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store.base import Store
from meshplane.store.records import Change
from meshplane.translate import MeshView, ProxyOptions, ProxyTarget, dependency_key, translate_proxy
from meshplane.translate.options import InvalidProxyOptionsError
from meshplane.xds import ProxyConnection, Snapshot, SnapshotCache

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Proxy:
    """Proxies that share one snapshot (same identity and options)."""

    target: ProxyTarget
    options: ProxyOptions
    streams: set[int] = field(default_factory=set)
    inputs: frozenset[ResourceKey] = frozenset()
    problems: tuple[str, ...] = ()
    revision: int = 0


def snapshot_key(connection: ProxyConnection) -> str:
    """The cache key of a connection: its identity (the node key the ADS stream watches)."""
    return connection.identity.key


class ControlLoop:
    """Publishes snapshots for connected proxies and republishes them as the mesh changes."""

    def __init__(
        self,
        store: Store,
        cache: SnapshotCache,
        *,
        registry: CollectorRegistry | None = None,
        debounce: float = 0.02,
    ) -> None:
        self.store = store
        self.cache = cache
        self.debounce = debounce
        self._proxies: dict[str, _Proxy] = {}
        self.connections: dict[int, ProxyConnection] = {}
        self._views: dict[str, MeshView] = {}
        self._revision = store.revision
        self._task: asyncio.Task[None] | None = None
        registry = registry if registry is not None else CollectorRegistry()
        self._translations = Counter(
            "meshplane_translations", "Proxy snapshots computed", registry=registry
        )
        self._translate_seconds = Histogram(
            "meshplane_translate_seconds",
            "Time to translate one proxy's snapshot",
            registry=registry,
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
        )
        self._change_to_publish = Histogram(
            "meshplane_change_to_publish_seconds",
            "Time from a committed change to the publication of every affected snapshot",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    # --- SnapshotProducer ---------------------------------------------------------------

    def snapshot_key(self, connection: ProxyConnection) -> str:
        return snapshot_key(connection)

    async def proxy_connected(self, proxy: ProxyConnection) -> None:
        self.connections[proxy.stream_id] = proxy
        key = snapshot_key(proxy)
        entry = self._proxies.get(key)
        if entry is None:
            try:
                options = ProxyOptions.from_node_metadata(proxy.metadata)
            except InvalidProxyOptionsError as error:
                log.warning(
                    "proxy %s sent invalid options (%s); using defaults",
                    proxy.node_id,
                    error.message,
                )
                options = ProxyOptions()
            identity = proxy.identity
            entry = _Proxy(ProxyTarget(identity.mesh, identity.kind, identity.name), options)
            self._proxies[key] = entry
            self._publish(key, entry)
        entry.streams.add(proxy.stream_id)

    async def proxy_disconnected(self, proxy: ProxyConnection) -> None:
        self.connections.pop(proxy.stream_id, None)
        key = snapshot_key(proxy)
        entry = self._proxies.get(key)
        if entry is None:
            return
        entry.streams.discard(proxy.stream_id)
        if not entry.streams:
            del self._proxies[key]
            self.cache.remove(key)

    def problems(self, stream_id: int) -> tuple[str, ...]:
        """What the translation of a stream's proxy left out, and why."""
        connection = self.connections.get(stream_id)
        entry = self._proxies.get(snapshot_key(connection)) if connection else None
        return entry.problems if entry is not None else ()

    # --- translation --------------------------------------------------------------------

    def _view(self, mesh: str) -> MeshView:
        view = self._views.get(mesh)
        if view is None:
            view = MeshView.from_records(self.store.mesh_records(mesh), mesh)
            self._views[mesh] = view
        return view

    def _publish(self, key: str, entry: _Proxy) -> None:
        started = time.perf_counter()
        resources = translate_proxy(self._view(entry.target.mesh), entry.target, entry.options)
        try:
            snapshot = Snapshot(resources.all())
        except Exception as error:  # a translation bug must not take the loop down
            log.exception("snapshot of %s is invalid", key)
            entry.problems = (f"internal error building the snapshot: {error}",)
            return
        entry.inputs = resources.inputs
        entry.problems = resources.problems
        entry.revision = self._revision
        self.cache.set_snapshot(key, snapshot)
        self._translations.inc()
        self._translate_seconds.observe(time.perf_counter() - started)

    # --- the change feed ----------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="meshplane-control-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self) -> None:
        while True:
            await self.store.wait_for_revision(self._revision)
            if self.debounce:
                await asyncio.sleep(self.debounce)  # let a burst of writes land together
            try:
                self.apply(await asyncio.to_thread(self.store.changes_since, self._revision))
            except Exception:
                log.exception("control loop failed to apply changes; retrying")
                await asyncio.sleep(1)

    def apply(self, changes: Iterable[Change]) -> None:
        """Bring views and affected snapshots up to date with ``changes``."""
        started = time.perf_counter()
        by_mesh: dict[str, set[ResourceKey]] = {}
        for change in changes:
            by_mesh.setdefault(change.key.mesh, set()).add(change.key)
            self._revision = max(self._revision, change.revision)
        for mesh, keys in by_mesh.items():
            view = self._views.get(mesh)
            if view is None:
                continue
            upserts = []
            removals = []
            for key in keys:
                record = self.store.get(key)
                if record is None:
                    removals.append(key)
                else:
                    upserts.append(record)
            if any(k.kind is Kind.MESH and k not in [r.key for r in upserts] for k in removals):
                del self._views[mesh]
            else:
                self._views[mesh] = view.with_changes(upserts, removals)
        for snapshot, entry in list(self._proxies.items()):
            changed = by_mesh.get(entry.target.mesh)
            if not changed:
                continue
            touched = {dependency_key(k) for k in changed}
            if touched & entry.inputs or not entry.inputs:
                self._publish(snapshot, entry)
        if by_mesh:
            self._change_to_publish.observe(time.perf_counter() - started)

    @property
    def revision(self) -> int:
        return self._revision
