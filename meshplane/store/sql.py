"""The SQL store: SQLAlchemy Core over SQLite (embedded default) or PostgreSQL (several
replicas sharing one database), with group commit and a followed change feed.

Durability: SQLite runs in WAL mode with ``synchronous=FULL``; a write is answered only after
the transaction holding it has committed.  Throughput: one writer thread takes the units of
work that are waiting, runs each in its own SAVEPOINT (a failing one rolls back alone) and
commits them together, so concurrent writers share one commit.

Several writers: every batch first takes the database's write lock (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), then catches up with what other
writers committed (the ``changes`` feed by revision, the ``state_changes`` feed for API tokens,
manifests and namespaces), so revisions are assigned from the database's last one, strictly in
commit order, and a unit of work reads the latest state (an update that read an older version
gets ``ConflictException``).  Between writes, a follower thread catches up too: woken by
PostgreSQL's ``LISTEN/NOTIFY`` and, in case a notification was missed or the connection was
lost, every ``follow_interval`` seconds (SQLite followers, e.g. xDS worker processes, poll).

Reads are served from the in-memory read model (``meshplane.store.read_model``).  A database
that cannot be reached makes writes fail with ``ServiceUnavailableException`` and nothing of the
batch is kept; the store recovers by itself when the database is back.  Built by
``meshplane.server``; used through ``meshplane.store.protocols``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from meshplane.errors import ServiceUnavailableError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store import migrate
from meshplane.store.read_model import Overlay, ReadModel
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
    namespaces,
    resources,
    secrets,
    state_changes,
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
WRITE_LOCK = 0x6D657368  # PostgreSQL advisory lock id of the store's writers ("mesh")
SCHEMA_LOCK = 0x6D657369
CHANNEL = "meshplane_changes"
"""The ``NOTIFY`` channel a committing writer wakes the other replicas on."""


class StoreUnavailableError(ServiceUnavailableError):
    """The database cannot be reached (or failed mid-write): nothing of the write is kept."""


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'meshplane.db'}"


def engine_url(url: str) -> sa.URL:
    """``url`` as SQLAlchemy takes it: ``postgresql://`` means psycopg 3."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def describe_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable database URL>"


def _unavailable(error: BaseException) -> StoreUnavailableError:
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    return StoreUnavailableError(
        f"the database is unavailable ({reason[0] if reason else type(error).__name__}); "
        "the request was not applied: retry (with the same clientToken it applies at most once)"
    )


def _is_outage(error: BaseException) -> bool:
    return isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError) or (
        isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated
    )


_CATCH_UP = object()
_Job = tuple[Callable[[Any], Any], "Future[Any]"]


class SqlStore:
    """The SQL implementation of ``meshplane.store.protocols.Store``."""

    def __init__(
        self, url: str, *, follow: bool | None = None, follow_interval: float = 1.0
    ) -> None:
        self.url = url
        self._engine = _make_engine(url)
        self.postgres = self._engine.dialect.name == "postgresql"
        self._model = ReadModel()
        self._revision = 0
        self._state_seq = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._waiters_lock = threading.Lock()
        self._follow_interval = follow_interval
        self._catch_up_pending = threading.Event()
        self._outage_logged = False
        self._shared = self.postgres or bool(follow)
        """Other writers may share the database: each batch catches up before it writes."""
        self._writer_conn: Connection | None = None
        self._secret_listeners: list[Callable[[set[str]], None]] = []
        try:
            self._create_schema()
            with self._engine.connect() as conn, conn.begin():
                self._catch_up(conn, everything=True)
        except sa.exc.DBAPIError as error:
            self._engine.dispose()
            if _is_outage(error):
                raise _unavailable(error) from None
            raise
        except BaseException:
            self._engine.dispose()
            raise
        self._jobs: queue.SimpleQueue[_Job | object | None] = queue.SimpleQueue()
        self._writer = threading.Thread(
            target=self._write_loop, name="meshplane-store-writer", daemon=True
        )
        self._closed = False
        self._writer.start()
        self._follower: threading.Thread | None = None
        if follow if follow is not None else self.postgres:
            self._follower = threading.Thread(
                target=self._follow_loop, name="meshplane-store-follower", daemon=True
            )
            self._follower.start()

    @classmethod
    def open(cls, data_dir: Path, *, follow: bool | None = None) -> SqlStore:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(sqlite_url(data_dir), follow=follow)

    def _create_schema(self) -> None:
        with self._engine.connect() as conn, conn.begin():
            if self.postgres:  # replicas starting together migrate once
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK)))
            before, after = migrate.upgrade(conn)
        if before != after:
            log.info("database schema: %s -> %s", before or "empty", after)

    def add_secret_listener(self, listener: Callable[[set[str]], None]) -> None:
        """Call ``listener(names)`` (on the store's thread) when another writer sharing the
        database changed the sealed values ``names`` (a CA rotated, a token revoked)."""
        self._secret_listeners.append(listener)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def revision(self) -> int:
        return self._revision

    # following other writers ------------------------------------------------------------

    def _catch_up(self, conn: Connection, *, everything: bool = False) -> bool:
        """Apply what was committed since this store's revision (and state sequence) to the
        read model; True if the revision moved.  Runs on the writer thread (or at start)."""
        since = self._revision
        feed = conn.execute(
            sa.select(
                changes.c.revision, changes.c.kind, changes.c.mesh, changes.c.parent, changes.c.name
            )
            .where(changes.c.revision > since)
            .order_by(changes.c.revision)
        ).all()
        overlay = Overlay()
        if feed:
            for row in feed:
                overlay.records[ResourceKey(Kind(row.kind), row.mesh, row.name, row.parent)] = None
            for row in conn.execute(sa.select(resources).where(resources.c.revision > since)):
                record = record_from_row(row._mapping)
                overlay.records[record.key] = record
        state = conn.execute(
            sa.select(state_changes.c.seq, state_changes.c.what).where(
                state_changes.c.seq > self._state_seq
            )
        ).all()
        tables = {row.what for row in state}
        if everything:
            tables = {"namespaces", "manifests", "api_tokens", "secrets"}
        if "namespaces" in tables:
            overlay.namespaces = {
                r.name: Namespace(r.name, json.loads(r.labels))
                for r in conn.execute(sa.select(namespaces))
            }
        if "manifests" in tables:
            overlay.manifests = dict.fromkeys(self._model.manifests())
            for r in conn.execute(sa.select(manifests)):
                overlay.manifests[(r.kind, r.namespace, r.name)] = StoredManifest(
                    r.kind, r.namespace, r.name, json.loads(r.body), r.source, r.revision
                )
        if "api_tokens" in tables:
            overlay.api_tokens = dict.fromkeys(self._model.api_tokens())
            for r in conn.execute(sa.select(api_tokens)):
                overlay.api_tokens[r.id] = ApiToken(
                    **{name: r._mapping[name] for name in ApiToken.__slots__}
                )
        changed_secrets: set[str] = set()
        if "secrets" in tables:
            known = self._model.secrets()
            for r in conn.execute(sa.select(secrets.c.name, secrets.c.sealed)):
                overlay.secrets[r.name] = r.sealed
                if known.get(r.name) != r.sealed:
                    changed_secrets.add(r.name)
        if feed or tables:
            self._model.apply(overlay)
        if changed_secrets and not everything:
            for listener in self._secret_listeners:
                try:
                    listener(changed_secrets)
                except Exception:
                    log.exception("a listener of sealed identity state failed")
        if state:
            self._state_seq = max(row.seq for row in state)
        elif everything:
            self._state_seq = int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(state_changes.c.seq), 0))
                ).scalar_one()
            )
        if feed:
            self._revision = int(feed[-1].revision)
            return True
        return False

    def _follow_loop(self) -> None:
        """Ask the writer thread to catch up when another writer commits (PostgreSQL:
        ``NOTIFY``) and every ``follow_interval`` seconds in any case."""
        backoff = 0.2
        while not self._closed:
            if not self.postgres:
                time.sleep(self._follow_interval)
                self._request_catch_up()
                continue
            import psycopg

            conninfo = self._engine.url.set(drivername="postgresql").render_as_string(
                hide_password=False
            )
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as listener:
                    listener.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.2
                    self._request_catch_up()  # whatever was committed while we did not listen
                    while not self._closed:
                        for _ in listener.notifies(timeout=self._follow_interval, stop_after=1):
                            pass
                        self._request_catch_up()
            except psycopg.Error as error:
                if not self._closed:
                    log.warning("change feed listener: %s; reconnecting", str(error).strip())
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)

    def follow_now(self) -> None:
        """Catch up with what other writers committed, now rather than at the next poll (an
        xDS worker, told by its main process that the SQLite database moved)."""
        self._request_catch_up()

    def _request_catch_up(self) -> None:
        if not self._catch_up_pending.is_set() and not self._closed:
            self._catch_up_pending.set()
            self._jobs.put(_CATCH_UP)

    def _follow(self) -> None:
        self._catch_up_pending.clear()
        try:
            with self._connection() as conn, conn.begin():
                moved = self._catch_up(conn)
        except sa.exc.DBAPIError as error:
            self._log_outage(error)
            return
        self._outage_logged = False
        if moved:
            self._notify()

    def _log_outage(self, error: BaseException) -> None:
        if not self._outage_logged:
            self._outage_logged = True
            log.error("%s", _unavailable(error).message)

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

    def secret(self, name: str) -> str | None:
        return self._model.secret(name)

    def secret_names(self) -> list[str]:
        return sorted(self._model.secrets())

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
        with self._reading() as conn:
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
        with self._reading() as conn:
            return [
                Change(
                    r.revision, ChangeOp(r.op), ResourceKey(Kind(r.kind), r.mesh, r.name, r.parent)
                )
                for r in conn.execute(query)
            ]

    def database_revision(self) -> int:
        """The last revision committed to the database by any writer (this store's
        :attr:`revision` lags it until the store has followed)."""
        with self._reading() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(changes.c.revision), 0))
                ).scalar_one()
            )

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.DBAPIError as error:
            if _is_outage(error):
                raise _unavailable(error) from None
            raise

    @contextmanager
    def _connection(self, *, write: bool = False) -> Iterator[Connection]:
        """A pooled connection: a consistent snapshot for reads, the write lock for writes."""
        with self._engine.connect() as conn:
            if self.postgres and not write:
                conn.execution_options(isolation_level="REPEATABLE READ")
            elif not self.postgres and write:
                conn.execution_options(meshplane_write=True)
            yield conn

    # writes -----------------------------------------------------------------------------

    def transact(self, work: Callable[[Any], T]) -> T:
        """Run ``work(tx)`` as one atomic unit of work; return once it is durable."""
        if self._closed:
            raise RuntimeError("the store is closed")
        future: Future[T] = Future()
        self._jobs.put((work, future))
        return future.result()

    def _write_loop(self) -> None:
        batches = 0
        while True:
            job = self._jobs.get()
            if job is None:
                return
            jobs: list[_Job] = []
            follow = False
            while True:
                if job is _CATCH_UP:
                    follow = True
                elif isinstance(job, tuple):
                    jobs.append(job)
                if len(jobs) >= _BATCH:
                    break
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._jobs.put(None)
                    break
            if jobs:
                if follow:
                    self._catch_up_pending.clear()  # the batch catches up under the lock
                self._run_batch(jobs)
                batches += 1
                if batches % 1000 == 0:
                    self._expire_tokens()
            elif follow:
                self._follow()

    def _run_batch(self, jobs: list[_Job]) -> None:
        batch = Overlay()
        outcomes: list[tuple[Future[Any], BaseException | None, Any]] = []
        followed = False
        try:
            if self._writer_conn is None:
                self._writer_conn = self._engine.connect()
                if not self.postgres:
                    self._writer_conn.execution_options(meshplane_write=True)
            conn = self._writer_conn
            with conn.begin():
                if self.postgres:
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK)))
                if self._shared:
                    migrate.check(conn)  # a newer release upgraded the schema: do not write
                    followed = self._catch_up(conn)
                revision = self._revision
                for work, future in jobs:
                    tx = SqlTransaction(conn, self._model, batch, revision)
                    savepoint = conn.begin_nested()
                    try:
                        result = work(tx)
                    except BaseException as error:  # handed to the caller, not raised here
                        if _is_outage(error):
                            raise
                        savepoint.rollback()
                        outcomes.append((future, error, None))
                        continue
                    savepoint.commit()
                    batch.absorb(tx.overlay)
                    revision = tx.revision
                    outcomes.append((future, None, result))
                if self.postgres and (revision != self._revision or _touches_state(batch)):
                    conn.execute(sa.select(sa.func.pg_notify(CHANNEL, str(revision))))
        except Exception as error:  # the commit itself failed: nothing of the batch is kept
            if _is_outage(error):
                self._log_outage(error)
                self._drop_writer_conn()
                lost: BaseException = _unavailable(error)
            elif isinstance(error, migrate.SchemaError):
                log.error("%s", error.message)
                lost = error
            else:
                log.exception("store commit failed")
                lost = error
            for _, future in jobs:
                if not future.done():
                    future.set_exception(lost)
            if followed:
                self._notify()
            return
        self._outage_logged = False
        self._model.apply(batch)
        changed = revision != self._revision
        self._revision = revision
        if _touches_state(batch):
            self._state_seq = self._last_state_seq()
        for future, failure, result in outcomes:
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(result)
        if changed or followed:
            self._notify()

    def _drop_writer_conn(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except sa.exc.SQLAlchemyError:
                pass

    def _last_state_seq(self) -> int:
        """After a batch that wrote state: its own rows are applied already, and under the
        write lock nobody else wrote, so the state feed's last row is ours."""
        try:
            with self._connection() as conn, conn.begin():
                return int(
                    conn.execute(
                        sa.select(sa.func.coalesce(sa.func.max(state_changes.c.seq), 0))
                    ).scalar_one()
                )
        except sa.exc.DBAPIError:
            return self._state_seq  # the next catch-up reloads those tables once more

    def _expire_tokens(self) -> None:
        cutoff = time.time() - TOKEN_TTL_SECONDS
        try:
            with self._connection(write=True) as conn, conn.begin():
                conn.execute(client_tokens.delete().where(client_tokens.c.created_at < cutoff))
        except sa.exc.DBAPIError as error:
            self._log_outage(error)

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
            self._drop_writer_conn()
            if self._follower is not None:  # it looks at _closed at least every interval
                self._follower.join(timeout=self._follow_interval + 6)
        self._engine.dispose()


def _touches_state(batch: Overlay) -> bool:
    return bool(batch.namespaces or batch.manifests or batch.api_tokens or batch.secrets)


def _make_engine(url: str) -> Engine:
    parsed = engine_url(url)
    if parsed.drivername.startswith("postgresql"):
        return sa.create_engine(
            parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5}, pool_size=10
        )
    engine = sa.create_engine(parsed)

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
