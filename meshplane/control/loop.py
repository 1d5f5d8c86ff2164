"""The control loop: keeps every connected proxy's snapshot in step with the store.

It is the xDS server's ``SnapshotProducer``.  When a proxy connects it translates the proxy's
mesh for that proxy (``meshplane.translate``) and publishes the snapshot.  It follows the
store's change feed: each burst of changes (debounced) updates the affected meshes' views,
and only the proxies whose translation read one of the changed resources (their recorded
``inputs``) are translated again.  Unchanged resources keep their content-hash versions, so
the ADS server sends nothing for them.

Endpoints of Cloud Map discovered providers come from the registry: a translation names the
Cloud Map service behind each EDS cluster (``ProxyResources.discovery``) and this loop fills the
assignments from the store's registry (:func:`meshplane.translate.endpoints.assignment`).  A
registration, deregistration or health change reaches the proxies through that endpoints-only
path: their assignments are rebuilt (once per Cloud Map target for all proxies that share it)
and the snapshot republished with every other resource as it was, so the ADS server sends only
the changed ClusterLoadAssignments.

Secrets: a snapshot also carries the SDS secrets its listeners and clusters name, issued by
the mesh CA for the proxy's own identity (:mod:`meshplane.control.secrets`).  A rotation task
sleeps until the next certificate is due (or a CA rotation changes the trust bundle or the
signing root) and republishes, without translating again, the snapshots whose secrets changed.
The mesh's ``meshplane.io/mtls`` tag turns mesh-wide mTLS on (``MeshSecurity``); its
``meshplane.io/tracing`` tags (or the server's default collector, ``TracingDefaults``) turn
tracing on for every proxy of the mesh (``Observability.tracing``).  A change of a mesh's tags
re-translates its proxies.

Built and started by ``meshplane.server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from meshplane.authority import DEFAULT_TRUST_DOMAIN
from meshplane.control.secrets import CertificateIssuer, proxy_secrets
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.model.proxy import METADATA_KEY, InvalidNodeMetadataError, ProxyIdentity
from meshplane.model.tracing import MeshTracing, TracingDefaults
from meshplane.store import registry
from meshplane.store.protocols import ResourceStore
from meshplane.store.records import Change
from meshplane.translate import (
    AccessLogStream,
    MeshSecurity,
    MeshView,
    Observability,
    ProxyOptions,
    ProxyResources,
    dependency_key,
    translate_proxy,
)
from meshplane.translate.endpoints import CloudMapTarget, assignment
from meshplane.xds import ProxyConnection, Resource, Snapshot, SnapshotCache, types

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Proxy:
    """Proxies that share one snapshot (same identity and options)."""

    target: ProxyIdentity
    options: ProxyOptions
    streams: set[int] = field(default_factory=set)
    inputs: frozenset[ResourceKey] = frozenset()
    problems: tuple[str, ...] = ()
    revision: int = 0
    resources: tuple[Resource, ...] = ()
    """The translation's resources (secrets are added to them for each snapshot)."""
    translation_problems: tuple[str, ...] = ()
    secret_versions: frozenset[tuple[str, str]] = frozenset()
    discovery: tuple[CloudMapTarget, ...] = ()
    """The Cloud Map services whose instances are this proxy's EDS endpoints."""
    certified: bool = False
    """Its snapshot holds a certificate of its identity (see ``_publish_secrets``)."""
    missing: tuple[str, ...] = ()
    """What the published snapshot references but does not hold (``Snapshot.inconsistencies``):
    shown in proxy-status; the stream sends only what resolves."""


def _untapped(mesh: str, kind: str, name: str) -> str | None:
    del mesh, kind, name
    return None


_REGISTRY_KINDS = frozenset(
    {Kind.CLOUD_MAP_NAMESPACE, Kind.CLOUD_MAP_SERVICE, Kind.CLOUD_MAP_INSTANCE}
)

_MAX_LEFT_OUT = 8
"""At most this many resources are left out of one proxy's translation (each costs a
bisection of the mesh); past that, the proxy keeps its previous snapshot."""

_WRAPPED = "control.resources"
"""The view memo's key for the :class:`Resource` of each shared message, by ``id``."""


PUBLISH_STEP = 500
"""Translations between two turns of the event loop while a change is published: a change that
touches 10,000 proxies holds the loop (the API, the streams) for tens of milliseconds at a
time, not for the whole second of translating them.  Smaller steps cost more CPU per proxy:
the streams' pushes batch less (``docs/benchmarks.md``, section 3b)."""


def wrap_resources(view: MeshView, resources: ProxyResources) -> tuple[Resource, ...]:
    """The :class:`Resource` of each message of a translation on ``view``.  A message that is
    shared with other translations on the view (``resources.shared``) is serialized once, the
    first time, and the same Resource is handed to every snapshot that carries it."""
    wrapped: dict[int, Resource] = view.memo.setdefault(_WRAPPED, {})
    out = []
    for message in resources.all():
        if id(message) not in resources.shared:
            out.append(Resource.of(message))
            continue
        found = wrapped.get(id(message))
        if found is None:
            found = wrapped[id(message)] = Resource.of(message)
        out.append(found)
    return tuple(out)


def snapshot_key(connection: ProxyConnection) -> str:
    """The cache key of a connection (the key its ADS stream watches): its identity's node key,
    and when its bootstrap sent translation options (``node.metadata["meshplane"]``) a digest
    of those options.  Proxies of one identity with equal options share a snapshot (gateway
    replicas bound to the same address); one bound elsewhere gets its own.  Other metadata
    (the admin address, the resource) does not count."""
    key = connection.identity.key
    if METADATA_KEY not in connection.metadata:
        return key
    try:
        options = ProxyOptions.from_node_metadata(connection.metadata)
    except InvalidNodeMetadataError:
        options = ProxyOptions()  # what proxy_connected falls back to as well
    return f"{key}/{options.digest()}"


class ControlLoop:
    """Publishes snapshots for connected proxies and republishes them as the mesh changes."""

    def __init__(
        self,
        store: ResourceStore,
        cache: SnapshotCache,
        *,
        registry: CollectorRegistry | None = None,
        debounce: float = 0.02,
        authorities: CertificateIssuer | None = None,
        tracing: TracingDefaults | None = None,
    ) -> None:
        self.store = store
        self.tracing = tracing or TracingDefaults()
        self.cache = cache
        self.debounce = debounce
        self.authorities = authorities
        self._proxies: dict[str, _Proxy] = {}
        self.connections: dict[int, ProxyConnection] = {}
        self._stream_keys: dict[int, str] = {}  # computed once per stream, read per status call
        self._views: dict[str, MeshView] = {}
        self._security: dict[str, tuple[MeshSecurity, MeshTracing | None, tuple[str, ...]]] = {}
        self._revision = store.revision
        """The revision of the views (and of the translations made from them)."""
        self._published = self._revision
        """The revision every affected snapshot has been published for (:attr:`revision`)."""
        self._task: asyncio.Task[None] | None = None
        self._rotation: asyncio.Task[None] | None = None
        self._secrets_due = asyncio.Event()
        self._tap: Callable[[str, str, str], str | None] = _untapped
        """(mesh, kind, name) -> the secret a tapped proxy's access log stream shows"""
        registry = registry if registry is not None else CollectorRegistry()
        Gauge(
            "meshplane_mesh_views",
            "Meshes whose translation view the control loop keeps",
            registry=registry,
        ).set_function(lambda: len(self._views))
        self._translations = Counter(
            "meshplane_translations", "Proxy snapshots computed", registry=registry
        )
        self._translate_seconds = Histogram(
            "meshplane_translate_seconds",
            "Time to translate one proxy's snapshot",
            registry=registry,
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
        )
        self._endpoint_updates = Counter(
            "meshplane_registry_endpoint_updates",
            "Proxy snapshots republished with new Cloud Map endpoints only (no translation)",
            registry=registry,
        )
        self._change_to_publish = Histogram(
            "meshplane_change_to_publish_seconds",
            "Time from a committed change to the publication of every affected snapshot",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    # --- SnapshotProducer ---------------------------------------------------------------

    def snapshot_key(self, connection: ProxyConnection) -> str:
        key = self._stream_keys.get(connection.stream_id)
        if key is None:
            key = snapshot_key(connection)
            self._stream_keys[connection.stream_id] = key
        return key

    async def proxy_connected(self, proxy: ProxyConnection) -> None:
        self.connections[proxy.stream_id] = proxy
        key = self.snapshot_key(proxy)
        entry = self._proxies.get(key)
        if entry is None:
            try:
                options = ProxyOptions.from_node_metadata(proxy.metadata)
            except InvalidNodeMetadataError as error:
                log.warning(
                    "proxy %s sent invalid options (%s); using defaults",
                    proxy.node_id,
                    error.message,
                )
                options = ProxyOptions()
            identity = proxy.identity
            entry = _Proxy(replace(identity, mesh_owner=""), options)
            self._proxies[key] = entry
            self._publish(key, entry)
        entry.streams.add(proxy.stream_id)

    async def proxy_disconnected(self, proxy: ProxyConnection) -> None:
        self.connections.pop(proxy.stream_id, None)
        key = self._stream_keys.pop(proxy.stream_id, None) or snapshot_key(proxy)
        entry = self._proxies.get(key)
        if entry is None:
            return
        entry.streams.discard(proxy.stream_id)
        if not entry.streams:
            del self._proxies[key]
            self.cache.remove(key)
            target = entry.target
            if self.authorities is not None and not any(
                e.target == target for e in self._proxies.values()
            ):
                self.authorities.forget(target.mesh, target.kind.value, target.name)

    def set_taps(self, secret_of: Callable[[str, str, str], str | None]) -> int:
        """Tap the proxies for which ``secret_of(mesh, kind, name)`` gives a secret (the one
        their access log stream must show); the proxies whose tap changed are translated
        again and republished (their HTTP listeners gain or lose the access log stream over
        LDS).  Return how many snapshots were republished."""
        before, self._tap = self._tap, secret_of
        count = 0
        for key, entry in list(self._proxies.items()):
            t = entry.target
            if before(t.mesh, t.kind.value, t.name) != secret_of(t.mesh, t.kind.value, t.name):
                self._publish(key, entry)
                count += 1
        return count

    def problems(self, stream_id: int) -> tuple[str, ...]:
        """What the translation of a stream's proxy left out, and why."""
        key = self._stream_keys.get(stream_id)
        entry = self._proxies.get(key) if key is not None else None
        return entry.problems if entry is not None else ()

    # --- translation --------------------------------------------------------------------

    def _view(self, mesh: str) -> MeshView:
        """The current view of ``mesh``, kept while the mesh exists.  A mesh that does not
        exist gets an empty view that is not kept: a stream naming one more made-up mesh
        must not grow the server (the proxy is translated again when the mesh is created)."""
        view = self._views.get(mesh)
        if view is None:
            view = MeshView.from_records(self.store.mesh_records(mesh), mesh)
            if view.key(Kind.MESH, mesh) in view:
                self._views[mesh] = view
        return view

    def _mesh_security(self, mesh: str) -> tuple[MeshSecurity, MeshTracing | None, tuple[str, ...]]:
        """The trust domain and the mTLS switch (mesh tag) of ``mesh``, its tracing (mesh tags
        or the server's default) and the problems of its tags, cached per mesh."""
        cached = self._security.get(mesh)
        if cached is None:
            td = self.authorities.trust_domain if self.authorities else DEFAULT_TRUST_DOMAIN
            record = self.store.get(ResourceKey(Kind.MESH, mesh, mesh))
            tags = {t.key: t.value for t in record.tags} if record is not None else {}
            security, mtls_problem = MeshSecurity.from_mesh_tags(tags, td)
            tracing, tracing_problem = self.tracing.for_mesh(tags)
            problems = tuple(p for p in (mtls_problem, tracing_problem) if p is not None)
            cached = (security, tracing, problems)
            if record is not None:  # kept for meshes that exist only (see _view)
                self._security[mesh] = cached
        return cached

    def _publish(self, key: str, entry: _Proxy) -> None:
        started = time.perf_counter()
        security, tracing, tag_problems = self._mesh_security(entry.target.mesh)
        view = self._view(entry.target.mesh)
        try:
            translated, resources, left_out = self._translate(view, entry, security, tracing)
        except Exception as error:  # not even without the others: keep what it had
            log.exception("translation of %s failed", key)
            entry.problems = (f"internal error building the snapshot: {error}",)
            return
        entry.discovery = resources.discovery
        entry.resources = self._with_endpoints(translated, entry.discovery, {})
        entry.inputs = resources.inputs | {dependency_key(k) for k in left_out}
        entry.translation_problems = resources.problems + tuple(left_out.values()) + tag_problems
        entry.revision = self._revision
        self._publish_secrets(key, entry, force=True)
        self._translations.inc()
        self._translate_seconds.observe(time.perf_counter() - started)

    def _translate(
        self,
        view: MeshView,
        entry: _Proxy,
        security: MeshSecurity,
        tracing: MeshTracing | None = None,
    ) -> tuple[tuple[Resource, ...], ProxyResources, dict[ResourceKey, str]]:
        """The proxy's resources on ``view``.  When translating fails, the resources of the
        mesh whose absence lets it succeed are found (by bisection) and left out: the proxy
        gets everything else, and each one left out is a problem (by key) in proxy-status."""

        def attempt(on: MeshView) -> tuple[tuple[Resource, ...], ProxyResources]:
            target = entry.target
            secret = self._tap(target.mesh, target.kind.value, target.name)
            observability = Observability(
                access_log=AccessLogStream(secret) if secret is not None else None,
                tracing=tracing,
            )
            resources = translate_proxy(on, target, entry.options, security, observability)
            translated = wrap_resources(on, resources)
            Snapshot(translated)
            return translated, resources

        try:
            return (*attempt(view), {})
        except Exception as error:
            first = error
        target = entry.target
        own = {view.key(Kind.MESH, view.mesh), view.key(target.kind, target.name)}
        candidates = [k for k in view.resource_keys() if k not in own]
        left_out: dict[ResourceKey, str] = {}
        failure: Exception = first
        for _ in range(_MAX_LEFT_OUT):
            remaining = [k for k in candidates if k not in left_out]

            def works(count: int, remaining: list[ResourceKey] = remaining) -> bool:
                try:
                    attempt(view.without([*left_out, *remaining[:count]]))
                except Exception:
                    return False
                return True

            if not remaining or not works(len(remaining)):
                raise failure  # the proxy's own resource or the mesh: nothing to isolate
            low, high = 0, len(remaining)  # leaving out remaining[:high] works, [:low] fails
            while high - low > 1:
                middle = (low + high) // 2
                if works(middle):
                    high = middle
                else:
                    low = middle
            culprit = remaining[high - 1]
            where = f"{culprit.parent}/{culprit.name}" if culprit.parent else culprit.name
            left_out[culprit] = (
                f"{culprit.kind.title} {where!r} is left out: it cannot be translated "
                f"({type(failure).__name__}: {failure})"
            )
            log.warning("%s (for %s)", left_out[culprit], target)
            try:
                return (*attempt(view.without(left_out)), left_out)
            except Exception as error:
                failure = error
        raise failure

    def _assignment(self, target: CloudMapTarget) -> Resource:
        found = registry.discover(self.store, target.namespace, target.service)
        return Resource.of(assignment(target, found[2] if found is not None else []))

    def _with_endpoints(
        self,
        resources: tuple[Resource, ...],
        targets: tuple[CloudMapTarget, ...],
        memo: dict[CloudMapTarget, Resource],
    ) -> tuple[Resource, ...]:
        """``resources`` with the assignment of each target filled from the registry (one
        build per target per ``memo``, shared by every proxy that names it)."""
        if not targets:
            return resources
        filled = {}
        for target in targets:
            built = memo.get(target)
            if built is None:
                built = memo[target] = self._assignment(target)
            filled[target.cluster] = built
        return tuple(
            filled.get(r.name, r) if r.type_url == types.ENDPOINT else r for r in resources
        )

    def refresh_endpoints(self) -> int:
        """Rebuild every proxy's registry endpoints; republish the snapshots whose
        assignments changed (nothing else is translated or changed); return how many."""
        memo: dict[CloudMapTarget, Resource] = {}
        count = 0
        for key, entry in list(self._proxies.items()):
            if not entry.discovery:
                continue
            updated = self._with_endpoints(entry.resources, entry.discovery, memo)
            if [r.version for r in updated] == [r.version for r in entry.resources]:
                continue
            entry.resources = updated
            self._publish_secrets(key, entry, force=True)
            self._endpoint_updates.inc()
            count += 1
        return count

    def _publish_secrets(self, key: str, entry: _Proxy, *, force: bool = False) -> None:
        """Publish the entry's resources with their current secrets (if they changed)."""
        wanted = {name for r in entry.resources for name in r.refs_of(types.SECRET)}
        found = proxy_secrets(self.authorities, entry.target, wanted)
        target = entry.target
        certified = any(s.tls_certificate.HasField("certificate_chain") for s in found.secrets)
        if self.authorities is not None and entry.certified and not certified:
            # no longer uses its certificate: do not keep rotating it
            self.authorities.forget(target.mesh, target.kind.value, target.name)
        entry.certified = certified
        secrets = tuple(Resource.of(secret) for secret in found.secrets)
        versions = frozenset((r.name, r.version) for r in secrets)
        if not force and versions == entry.secret_versions:
            entry.problems = entry.translation_problems + found.problems + entry.missing
            return
        entry.secret_versions = versions
        snapshot = Snapshot((*entry.resources, *secrets))
        # published all the same: the stream sends what is resolvable (meshplane.xds.plan)
        entry.missing = tuple(snapshot.inconsistencies())
        entry.problems = entry.translation_problems + found.problems + entry.missing
        self.cache.set_snapshot(key, snapshot)
        if secrets:
            self._secrets_due.set()  # a fresh certificate may be due before the others

    def refresh_secrets(self) -> int:
        """Republish every snapshot whose secrets changed (rotated certificates, a new trust
        bundle); return how many were republished."""
        count = 0
        for key, entry in list(self._proxies.items()):
            before = entry.secret_versions
            self._publish_secrets(key, entry)
            count += entry.secret_versions != before
        return count

    def secrets_changed(self) -> None:
        """Ask the rotation task to look again now (thread-safe once started)."""
        self._secrets_due.set()

    async def _rotate(self) -> None:
        """Republish snapshots when certificates are due or a CA's roots change."""
        while True:
            due = self.authorities.next_change() if self.authorities is not None else None
            delay = 3600.0
            if due is not None:
                delay = min(delay, max(0.2, (due - datetime.now(UTC)).total_seconds() + 0.05))
            self._secrets_due.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._secrets_due.wait(), timeout=delay)
            try:
                republished = self.refresh_secrets()
                if republished:
                    log.info("rotated the secrets of %d proxy snapshot(s)", republished)
            except Exception:
                log.exception("secret rotation failed; retrying")
                await asyncio.sleep(1)

    # --- the change feed ----------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="meshplane-control-loop")
        self._rotation = asyncio.create_task(self._rotate(), name="meshplane-secret-rotation")
        if self.authorities is not None:
            loop = asyncio.get_running_loop()

            def changed() -> None:
                loop.call_soon_threadsafe(self.secrets_changed)

            self.authorities.add_listener(changed)

    async def stop(self) -> None:
        for task in (self._task, self._rotation):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._rotation = None

    async def _follow(self) -> None:
        while True:
            await self.store.wait_for_revision(self._revision)
            if self.debounce:
                await asyncio.sleep(self.debounce)  # let a burst of writes land together
            try:
                changes = await asyncio.to_thread(self.store.changes_since, self._revision)
                await self.apply_stepwise(changes)
            except Exception:
                log.exception("control loop failed to apply changes; retrying")
                await asyncio.sleep(1)

    def apply(self, changes: Iterable[Change]) -> None:
        """Bring views and affected snapshots up to date with ``changes``."""
        for _ in self._steps(changes):
            pass

    async def apply_stepwise(self, changes: Iterable[Change]) -> None:
        """:meth:`apply`, letting the event loop run every :data:`PUBLISH_STEP` translations
        (the streams of the proxies published so far push meanwhile)."""
        for _ in self._steps(changes):
            await asyncio.sleep(0)

    def _steps(self, changes: Iterable[Change]) -> Iterator[None]:
        """Apply ``changes``, yielding after every :data:`PUBLISH_STEP` proxies published."""
        started = time.perf_counter()
        by_mesh, registry_changed = self._apply_views(changes)
        for done, (snapshot, entry) in enumerate(self._affected(by_mesh), 1):
            if self._proxies.get(snapshot) is not entry:
                continue  # disconnected while the others were published
            self._publish(snapshot, entry)
            if done % PUBLISH_STEP == 0:
                yield
        self._applied(started, by_mesh, registry_changed)

    def _apply_views(self, changes: Iterable[Change]) -> tuple[dict[str, set[ResourceKey]], bool]:
        """Move the revision and the mesh views to ``changes``; return the changed keys by
        mesh and whether the registry changed."""
        by_mesh: dict[str, set[ResourceKey]] = {}
        registry_changed = False
        for change in changes:
            self._revision = max(self._revision, change.revision)
            if not change.key.kind.is_app_mesh and change.key.kind is not Kind.VIRTUAL_IP:
                registry_changed |= change.key.kind in _REGISTRY_KINDS
                continue
            by_mesh.setdefault(change.key.mesh, set()).add(change.key)
        for mesh, keys in by_mesh.items():
            if any(k.kind is Kind.MESH for k in keys):
                self._security.pop(mesh, None)  # its tags may have changed
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
        return by_mesh, registry_changed

    def _affected(self, by_mesh: dict[str, set[ResourceKey]]) -> list[tuple[str, _Proxy]]:
        """The proxies (snapshot key, entry) whose translation read one of the changed keys."""
        touched = {mesh: {dependency_key(k) for k in keys} for mesh, keys in by_mesh.items()}
        return [
            (snapshot, entry)
            for snapshot, entry in self._proxies.items()
            if entry.target.mesh in touched
            and (not entry.inputs or not touched[entry.target.mesh].isdisjoint(entry.inputs))
        ]

    def _applied(
        self, started: float, by_mesh: dict[str, set[ResourceKey]], registry_changed: bool
    ) -> None:
        if registry_changed:
            self.refresh_endpoints()
        if by_mesh or registry_changed:
            self._change_to_publish.observe(time.perf_counter() - started)
        self._published = self._revision

    @property
    def revision(self) -> int:
        """The last revision of the store whose changes are all published."""
        return self._published
