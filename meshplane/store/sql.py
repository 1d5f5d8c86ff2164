"""The SQL store: SQLAlchemy Core over SQLite (embedded default) with group commit.

Durability: SQLite runs in WAL mode with ``synchronous=FULL``; a write is answered only after
the transaction holding it has committed (fsync).  Throughput: one writer thread takes the
units of work that are waiting, runs each in its own SAVEPOINT (a failing one rolls back
alone) and commits them together, so concurrent writers share one fsync.  Reads are served
from the in-memory read model (``meshplane.store.memory``), which the writer updates after
each commit; the store must be the database's only writer (``meshplane serve`` locks its
data directory).  Built by ``meshplane.server``; used through ``meshplane.store.base``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from meshplane.errors import ConflictError, NotFoundError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store.memory import ManifestKey, Overlay, ReadModel
from meshplane.store.records import (
    ApiToken,
    AuditEntry,
    Change,
    ChangeOp,
    Namespace,
    Record,
    StoredManifest,
    Tag,
)
from meshplane.store.schema import (
    DELETE_API_TOKEN,
    DELETE_MANIFEST,
    DELETE_NAMESPACE,
    DELETE_RESOURCE,
    DELETE_TOKEN,
    INSERT_API_TOKEN,
    INSERT_AUDIT,
    INSERT_CHANGE,
    INSERT_MANIFEST,
    INSERT_NAMESPACE,
    INSERT_RESOURCE,
    INSERT_TOKEN,
    UPDATE_RESOURCE,
    api_tokens,
    audit_log,
    changes,
    client_tokens,
    manifests,
    metadata,
    namespaces,
    resources,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

TOKEN_TTL_SECONDS = 24 * 3600
_BATCH = 256


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'meshplane.db'}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _tags_json(tags: Iterable[Tag]) -> str:
    return _dumps([[t.key, t.value] for t in tags])


def _key_params(key: ResourceKey) -> dict[str, str]:
    return {
        "k_kind": key.kind.value,
        "k_mesh": key.mesh,
        "k_parent": key.parent,
        "k_name": key.name,
    }


def _select(records: Iterable[Record], after: str | None, limit: int | None) -> list[Record]:
    ordered = sorted(records, key=lambda r: (r.key.mesh, r.key.parent, r.key.name))
    if after is not None:
        ordered = [r for r in ordered if r.key.name > after]
    return ordered[:limit] if limit is not None else ordered


class _Transaction:
    """One unit of work: reads see committed state plus earlier work of the same batch plus
    its own writes; writes go to SQL (inside its savepoint) and to its overlay."""

    def __init__(self, conn: Connection, model: ReadModel, batch: Overlay, revision: int) -> None:
        self._conn = conn
        self._model = model
        self._batch = batch
        self.overlay = Overlay()
        self.revision = revision
        self.changes: list[Change] = []
        self._now = time.time()

    # reads ------------------------------------------------------------------------------

    def get(self, key: ResourceKey) -> Record | None:
        for overlay in (self.overlay, self._batch):
            if key in overlay.records:
                return overlay.records[key]
        return self._model.get(key)

    def _merged(self, base: Iterable[Record], keep: Callable[[ResourceKey], bool]) -> list[Record]:
        merged = {r.key: r for r in base}
        for overlay in (self._batch, self.overlay):
            for key, record in overlay.records.items():
                if not keep(key):
                    continue
                if record is None:
                    merged.pop(key, None)
                else:
                    merged[key] = record
        return list(merged.values())

    def list_kind(
        self,
        kind: Kind,
        mesh: str | None = None,
        parent: str | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        def keep(key: ResourceKey) -> bool:
            return (
                key.kind is kind
                and (mesh is None or key.mesh == mesh)
                and (parent is None or key.parent == parent)
            )

        return _select(self._merged(self._model.group(kind, mesh, parent), keep), after, limit)

    def mesh_records(self, mesh: str) -> list[Record]:
        return self._merged(self._model.mesh(mesh), lambda key: key.mesh == mesh)

    def namespaces(self) -> list[Namespace]:
        merged = self._model.namespaces()
        merged.update(self._batch.namespaces)
        merged.update(self.overlay.namespaces)
        return [merged[name] for name in sorted(merged)]

    def manifests(self) -> list[StoredManifest]:
        merged: dict[ManifestKey, StoredManifest | None] = dict(self._model.manifests())
        merged.update(self._batch.manifests)
        merged.update(self.overlay.manifests)
        return [m for _, m in sorted(merged.items()) if m is not None]

    def api_token(self, token_id: str) -> ApiToken | None:
        for overlay in (self.overlay, self._batch):
            if token_id in overlay.api_tokens:
                return overlay.api_tokens[token_id]
        return self._model.api_token(token_id)

    def api_tokens(self) -> list[ApiToken]:
        merged: dict[str, ApiToken | None] = dict(self._model.api_tokens())
        merged.update(self._batch.api_tokens)
        merged.update(self.overlay.api_tokens)
        return [t for _, t in sorted(merged.items()) if t is not None]

    # writes -----------------------------------------------------------------------------

    def _advance(self, op: ChangeOp, key: ResourceKey) -> int:
        self.revision += 1
        self._conn.execute(
            INSERT_CHANGE,
            {
                "revision": self.revision,
                "op": op.value,
                "kind": key.kind.value,
                "mesh": key.mesh,
                "parent": key.parent,
                "name": key.name,
                "at": self._now,
            },
        )
        self.changes.append(Change(self.revision, op, key))
        return self.revision

    def _existing(self, key: ResourceKey) -> Record:
        current = self.get(key)
        if current is None:
            raise NotFoundError(f"{key.kind.title} {key.name!r} not found ({key})")
        return current

    def create(
        self,
        key: ResourceKey,
        spec: Mapping[str, Any],
        *,
        mesh_owner: str,
        resource_owner: str,
        tags: Sequence[Tag] = (),
    ) -> Record:
        if self.get(key) is not None:
            raise ConflictError(f"{key.kind.title} {key.name!r} already exists ({key})")
        record = Record(
            key=key,
            spec=dict(spec),
            uid=str(uuid.uuid4()),
            version=1,
            created_at=self._now,
            updated_at=self._now,
            mesh_owner=mesh_owner,
            resource_owner=resource_owner,
            revision=self._advance(ChangeOp.CREATE, key),
            tags=tuple(tags),
        )
        self._conn.execute(
            INSERT_RESOURCE,
            {
                "kind": key.kind.value,
                "mesh": key.mesh,
                "parent": key.parent,
                "name": key.name,
                "uid": record.uid,
                "version": 1,
                "created_at": self._now,
                "updated_at": self._now,
                "mesh_owner": mesh_owner,
                "resource_owner": resource_owner,
                "revision": record.revision,
                "spec": _dumps(record.spec),
                "tags": _tags_json(tags),
            },
        )
        self.overlay.records[key] = record
        return record

    def _rewrite(self, record: Record) -> Record:
        self._conn.execute(
            UPDATE_RESOURCE,
            {
                **_key_params(record.key),
                "p_spec": _dumps(record.spec),
                "p_version": record.version,
                "p_updated_at": record.updated_at,
                "p_revision": record.revision,
                "p_tags": _tags_json(record.tags),
            },
        )
        self.overlay.records[record.key] = record
        return record

    def update(self, key: ResourceKey, spec: Mapping[str, Any]) -> Record:
        current = self._existing(key)
        return self._rewrite(
            Record(
                key=key,
                spec=dict(spec),
                uid=current.uid,
                version=current.version + 1,
                created_at=current.created_at,
                updated_at=self._now,
                mesh_owner=current.mesh_owner,
                resource_owner=current.resource_owner,
                revision=self._advance(ChangeOp.UPDATE, key),
                tags=current.tags,
            )
        )

    def set_tags(self, key: ResourceKey, tags: Sequence[Tag]) -> Record:
        # A change-feed entry: tags can steer the data plane (a mesh's meshplane.io/mtls).
        current = self._existing(key)
        revision = self._advance(ChangeOp.UPDATE, key)
        return self._rewrite(
            Record(**{**_fields(current), "tags": tuple(tags), "revision": revision})
        )

    def delete(self, key: ResourceKey) -> Record:
        current = self._existing(key)
        self._advance(ChangeOp.DELETE, key)
        self._conn.execute(DELETE_RESOURCE, _key_params(key))
        self.overlay.records[key] = None
        return Record(**{**_fields(current), "status": "DELETED"})

    def client_token(self, token: str) -> tuple[str, Any] | None:
        for source in (self.overlay.tokens, self._batch.tokens):
            if token in source:
                fingerprint, answer, _ = source[token]
                return fingerprint, answer
        seen = self._model.token(token)
        if seen is None or seen[2] < self._now - TOKEN_TTL_SECONDS:
            return None
        return seen[0], seen[1]

    def remember_client_token(self, token: str, fingerprint: str, answer: Any) -> None:
        known = (
            token in self.overlay.tokens
            or token in self._batch.tokens
            or self._model.token(token) is not None
        )
        if known:
            self._conn.execute(DELETE_TOKEN, {"token": token})
        self._conn.execute(
            INSERT_TOKEN,
            {
                "token": token,
                "fingerprint": fingerprint,
                "answer": _dumps(answer),
                "created_at": self._now,
            },
        )
        self.overlay.tokens[token] = (fingerprint, answer, self._now)

    def put_namespace(self, namespace: Namespace) -> None:
        self._conn.execute(DELETE_NAMESPACE, {"name": namespace.name})
        self._conn.execute(
            INSERT_NAMESPACE, {"name": namespace.name, "labels": _dumps(dict(namespace.labels))}
        )
        self.overlay.namespaces[namespace.name] = namespace

    def put_manifest(self, kind: str, namespace: str, name: str, body: Any, source: str) -> None:
        self.delete_manifest(kind, namespace, name)
        self._conn.execute(
            INSERT_MANIFEST,
            {
                "kind": kind,
                "namespace": namespace,
                "name": name,
                "body": _dumps(body),
                "source": source,
                "revision": self.revision,
            },
        )
        self.overlay.manifests[(kind, namespace, name)] = StoredManifest(
            kind, namespace, name, body, source, self.revision
        )

    def delete_manifest(self, kind: str, namespace: str, name: str) -> None:
        self._conn.execute(DELETE_MANIFEST, {"kind": kind, "namespace": namespace, "name": name})
        self.overlay.manifests[(kind, namespace, name)] = None

    def put_api_token(self, token: ApiToken) -> None:
        self._conn.execute(DELETE_API_TOKEN, {"id": token.id})
        self._conn.execute(
            INSERT_API_TOKEN, {name: getattr(token, name) for name in ApiToken.__slots__}
        )
        self.overlay.api_tokens[token.id] = token

    def delete_api_token(self, token_id: str) -> None:
        self._conn.execute(DELETE_API_TOKEN, {"id": token_id})
        self.overlay.api_tokens[token_id] = None

    def audit(
        self,
        principal: str,
        operation: str,
        *,
        mesh: str,
        resource: str,
        version: int | None = None,
        via: str = "api",
    ) -> None:
        self._conn.execute(
            INSERT_AUDIT,
            {
                "at": self._now,
                "principal": principal,
                "operation": operation,
                "mesh": mesh,
                "resource": resource,
                "version": version,
                "revision": self.revision,
                "via": via,
            },
        )


def _fields(record: Record) -> dict[str, Any]:
    return {name: getattr(record, name) for name in Record.__slots__}


def _record(m: Any) -> Record:
    return Record(
        key=ResourceKey(Kind(m["kind"]), m["mesh"], m["name"], m["parent"]),
        spec=json.loads(m["spec"]),
        uid=m["uid"],
        version=m["version"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        mesh_owner=m["mesh_owner"],
        resource_owner=m["resource_owner"],
        revision=m["revision"],
        tags=tuple(Tag(k, v) for k, v in json.loads(m["tags"])),
    )


_Job = tuple[Callable[[Any], Any], "Future[Any]"]


class SqlStore:
    """The SQL implementation of ``meshplane.store.base.Store``."""

    def __init__(self, url: str) -> None:
        self._engine = _make_engine(url)
        metadata.create_all(self._engine)
        self._model = ReadModel()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._waiters_lock = threading.Lock()
        self._load()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(
            target=self._write_loop, name="meshplane-store-writer", daemon=True
        )
        self._closed = False
        self._writer.start()

    @classmethod
    def open(cls, data_dir: Path) -> SqlStore:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(sqlite_url(data_dir))

    def _load(self) -> None:
        cutoff = time.time() - TOKEN_TTL_SECONDS
        with self._engine.connect() as conn, conn.begin():
            self._revision = int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(changes.c.revision), 0))
                ).scalar_one()
            )
            self._model.load(
                records=[_record(row._mapping) for row in conn.execute(sa.select(resources))],
                namespaces=[
                    Namespace(r.name, json.loads(r.labels))
                    for r in conn.execute(sa.select(namespaces))
                ],
                manifests=[
                    StoredManifest(
                        r.kind, r.namespace, r.name, json.loads(r.body), r.source, r.revision
                    )
                    for r in conn.execute(sa.select(manifests))
                ],
                tokens=[
                    (r.token, r.fingerprint, json.loads(r.answer), r.created_at)
                    for r in conn.execute(
                        sa.select(client_tokens).where(client_tokens.c.created_at > cutoff)
                    )
                ],
                api_tokens=[
                    ApiToken(**{name: r._mapping[name] for name in ApiToken.__slots__})
                    for r in conn.execute(sa.select(api_tokens))
                ],
            )

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def revision(self) -> int:
        return self._revision

    # reads ------------------------------------------------------------------------------

    def get(self, key: ResourceKey) -> Record | None:
        return self._model.get(key)

    def list_kind(
        self,
        kind: Kind,
        mesh: str | None = None,
        parent: str | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        if mesh is not None and parent is not None:
            return self._model.page(kind, mesh, parent, after, limit)
        return _select(self._model.group(kind, mesh, parent), after, limit)

    def mesh_records(self, mesh: str) -> list[Record]:
        return self._model.mesh(mesh)

    def namespaces(self) -> list[Namespace]:
        found = self._model.namespaces()
        return [found[name] for name in sorted(found)]

    def manifests(self) -> list[StoredManifest]:
        return [m for _, m in sorted(self._model.manifests().items())]

    def api_token(self, token_id: str) -> ApiToken | None:
        return self._model.api_token(token_id)

    def api_tokens(self) -> list[ApiToken]:
        return [t for _, t in sorted(self._model.api_tokens().items())]

    def audit_log(
        self,
        *,
        meshes: Collection[str] | None = None,
        since: float | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[AuditEntry]:
        query = sa.select(audit_log).where(audit_log.c.seq > after)
        if meshes is not None:
            query = query.where(audit_log.c.mesh.in_(sorted(meshes)))
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        query = query.order_by(audit_log.c.seq).limit(limit)
        with self._engine.connect() as conn, conn.begin():
            return [
                AuditEntry(**{name: r._mapping[name] for name in AuditEntry.__slots__})
                for r in conn.execute(query)
            ]

    def changes_since(self, revision: int, limit: int = 10_000) -> list[Change]:
        """Changes after ``revision`` up to :attr:`revision`: a batch is committed before the
        read model applies it, and a change must not show before reads show its record."""
        query = (
            sa.select(changes)
            .where(changes.c.revision > revision)
            .where(changes.c.revision <= self._revision)
            .order_by(changes.c.revision)
            .limit(limit)
        )
        with self._engine.connect() as conn, conn.begin():
            return [
                Change(
                    r.revision, ChangeOp(r.op), ResourceKey(Kind(r.kind), r.mesh, r.name, r.parent)
                )
                for r in conn.execute(query)
            ]

    # writes -----------------------------------------------------------------------------

    def transact(self, work: Callable[[Any], T]) -> T:
        """Run ``work(tx)`` as one atomic unit of work; return once it is durable."""
        if self._closed:
            raise RuntimeError("the store is closed")
        future: Future[T] = Future()
        self._jobs.put((work, future))
        return future.result()

    def _write_loop(self) -> None:
        with self._engine.connect() as conn:
            conn.execution_options(meshplane_write=True)
            batches = 0
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                jobs = [job]
                while len(jobs) < _BATCH:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._jobs.put(None)
                        break
                    jobs.append(more)
                self._run_batch(conn, jobs)
                batches += 1
                if batches % 1000 == 0:
                    self._expire_tokens(conn)

    def _run_batch(self, conn: Connection, jobs: list[_Job]) -> None:
        batch = Overlay()
        revision = self._revision
        outcomes: list[tuple[Future[Any], BaseException | None, Any]] = []
        try:
            with conn.begin():
                for work, future in jobs:
                    tx = _Transaction(conn, self._model, batch, revision)
                    savepoint = conn.begin_nested()
                    try:
                        result = work(tx)
                    except BaseException as error:  # handed to the caller, not raised here
                        savepoint.rollback()
                        outcomes.append((future, error, None))
                        continue
                    savepoint.commit()
                    batch.absorb(tx.overlay)
                    revision = tx.revision
                    outcomes.append((future, None, result))
        except Exception as error:  # the commit itself failed: nothing of the batch is kept
            log.exception("store commit failed")
            for _, future in jobs:
                if not future.done():
                    future.set_exception(error)
            return
        self._model.apply(batch)
        changed = revision != self._revision
        self._revision = revision
        for future, failure, result in outcomes:
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(result)
        if changed:
            self._notify()

    def _expire_tokens(self, conn: Connection) -> None:
        cutoff = time.time() - TOKEN_TTL_SECONDS
        with conn.begin():
            conn.execute(client_tokens.delete().where(client_tokens.c.created_at < cutoff))
        self._model.expire_tokens(cutoff)

    # change notification ----------------------------------------------------------------

    def _notify(self) -> None:
        with self._waiters_lock:
            waiters = list(self._waiters)
        for loop, ready in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(ready.set)

    async def wait_for_revision(self, revision: int, timeout: float | None = None) -> int:
        if self._revision > revision:
            return self._revision
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._waiters_lock:
            self._waiters.add(entry)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._revision <= revision:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                entry[1].clear()
                if self._revision > revision:
                    break
                try:
                    await asyncio.wait_for(entry[1].wait(), remaining)
                except TimeoutError:
                    break
        finally:
            with self._waiters_lock:
                self._waiters.discard(entry)
        return self._revision

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
            self._writer.join()
        self._engine.dispose()


def _make_engine(url: str) -> Engine:
    engine = sa.create_engine(url)
    if engine.dialect.name != "sqlite":
        return engine

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("meshplane_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
