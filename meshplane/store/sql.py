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
from collections.abc import Callable, Collection
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store.memory import Overlay, ReadModel
from meshplane.store.records import (
    ApiToken,
    AuditEntry,
    Change,
    ChangeOp,
    Namespace,
    Record,
    StoredManifest,
)
from meshplane.store.schema import (
    api_tokens,
    audit_log,
    changes,
    client_tokens,
    manifests,
    metadata,
    namespaces,
    resources,
)
from meshplane.store.transaction import (
    TOKEN_TTL_SECONDS,
    SqlTransaction,
    record_from_row,
    select_records,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_BATCH = 256


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'meshplane.db'}"


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
                records=[
                    record_from_row(row._mapping) for row in conn.execute(sa.select(resources))
                ],
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
        return select_records(self._model.group(kind, mesh, parent), after, limit)

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
                    tx = SqlTransaction(conn, self._model, batch, revision)
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
