"""The SQL store: SQLAlchemy Core over SQLite (embedded default) or any SQLAlchemy URL.

SQLite runs in WAL mode with ``synchronous=FULL`` so that every committed write survives a
crash; write transactions start with ``BEGIN IMMEDIATE`` so that concurrent writers serialize
instead of losing updates.  Built by ``meshplane.server`` at start-up; used through the
Protocols in ``meshplane.store.base``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from meshplane.errors import ConflictError, NotFoundError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store.records import Change, ChangeOp, Namespace, Record, StoredManifest, Tag

_metadata = sa.MetaData()

resources = sa.Table(
    "resources",
    _metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("mesh", sa.String(255), primary_key=True),
    sa.Column("parent", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(512), primary_key=True),
    sa.Column("uid", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("mesh_owner", sa.String(12), nullable=False),
    sa.Column("resource_owner", sa.String(12), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Index("ix_resources_mesh", "mesh", "kind", "parent", "name"),
)

changes = sa.Table(
    "changes",
    _metadata,
    sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("op", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("mesh", sa.String(255), nullable=False),
    sa.Column("parent", sa.String(255), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

client_tokens = sa.Table(
    "client_tokens",
    _metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

namespaces = sa.Table(
    "namespaces",
    _metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("labels", sa.Text, nullable=False),
)

manifests = sa.Table(
    "manifests",
    _metadata,
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("namespace", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
)

_TOKEN_TTL_SECONDS = 24 * 3600


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'meshplane.db'}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _record(row: sa.Row[Any]) -> Record:
    m = row._mapping
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


def _key_clause(key: ResourceKey) -> sa.ColumnElement[bool]:
    return sa.and_(
        resources.c.kind == key.kind.value,
        resources.c.mesh == key.mesh,
        resources.c.parent == key.parent,
        resources.c.name == key.name,
    )


class _Reads:
    """Read queries over one connection; shared by the store and its transactions."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, key: ResourceKey) -> Record | None:
        row = self._conn.execute(sa.select(resources).where(_key_clause(key))).first()
        return _record(row) if row is not None else None

    def list_kind(
        self,
        kind: Kind,
        mesh: str | None = None,
        parent: str | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        query = sa.select(resources).where(resources.c.kind == kind.value)
        if mesh is not None:
            query = query.where(resources.c.mesh == mesh)
        if parent is not None:
            query = query.where(resources.c.parent == parent)
        if after is not None:
            query = query.where(resources.c.name > after)
        query = query.order_by(resources.c.mesh, resources.c.parent, resources.c.name)
        if limit is not None:
            query = query.limit(limit)
        return [_record(row) for row in self._conn.execute(query)]

    def mesh_records(self, mesh: str) -> list[Record]:
        query = sa.select(resources).where(resources.c.mesh == mesh)
        return [_record(row) for row in self._conn.execute(query)]

    def namespaces(self) -> list[Namespace]:
        rows = self._conn.execute(sa.select(namespaces).order_by(namespaces.c.name))
        return [Namespace(r.name, json.loads(r.labels)) for r in rows]

    def manifests(self) -> list[StoredManifest]:
        query = sa.select(manifests).order_by(
            manifests.c.kind, manifests.c.namespace, manifests.c.name
        )
        return [
            StoredManifest(r.kind, r.namespace, r.name, json.loads(r.body), r.source, r.revision)
            for r in self._conn.execute(query)
        ]


class _Transaction(_Reads):
    def __init__(self, conn: Connection, revision: int) -> None:
        super().__init__(conn)
        self.revision = revision
        self.changes: list[Change] = []
        self._now = time.time()

    def _advance(self, op: ChangeOp, key: ResourceKey) -> int:
        self.revision += 1
        self._conn.execute(
            changes.insert().values(
                revision=self.revision,
                op=op.value,
                kind=key.kind.value,
                mesh=key.mesh,
                parent=key.parent,
                name=key.name,
                at=self._now,
            )
        )
        self.changes.append(Change(self.revision, op, key))
        return self.revision

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
            raise ConflictError(f"{key.kind.title} {key.name!r} already exists in {key}")
        revision = self._advance(ChangeOp.CREATE, key)
        record = Record(
            key=key,
            spec=dict(spec),
            uid=str(uuid.uuid4()),
            version=1,
            created_at=self._now,
            updated_at=self._now,
            mesh_owner=mesh_owner,
            resource_owner=resource_owner,
            revision=revision,
            tags=tuple(tags),
        )
        self._conn.execute(
            resources.insert().values(
                kind=key.kind.value,
                mesh=key.mesh,
                parent=key.parent,
                name=key.name,
                uid=record.uid,
                version=1,
                created_at=self._now,
                updated_at=self._now,
                mesh_owner=mesh_owner,
                resource_owner=resource_owner,
                revision=revision,
                spec=_dumps(record.spec),
                tags=_dumps([[t.key, t.value] for t in tags]),
            )
        )
        return record

    def _existing(self, key: ResourceKey) -> Record:
        current = self.get(key)
        if current is None:
            raise NotFoundError(f"{key.kind.title} {key.name!r} not found ({key})")
        return current

    def update(self, key: ResourceKey, spec: Mapping[str, Any]) -> Record:
        current = self._existing(key)
        revision = self._advance(ChangeOp.UPDATE, key)
        self._conn.execute(
            resources.update()
            .where(_key_clause(key))
            .values(
                spec=_dumps(spec),
                version=current.version + 1,
                updated_at=self._now,
                revision=revision,
            )
        )
        return Record(
            key=key,
            spec=dict(spec),
            uid=current.uid,
            version=current.version + 1,
            created_at=current.created_at,
            updated_at=self._now,
            mesh_owner=current.mesh_owner,
            resource_owner=current.resource_owner,
            revision=revision,
            tags=current.tags,
        )

    def set_tags(self, key: ResourceKey, tags: Sequence[Tag]) -> Record:
        current = self._existing(key)
        self._conn.execute(
            resources.update()
            .where(_key_clause(key))
            .values(tags=_dumps([[t.key, t.value] for t in tags]))
        )
        return Record(**{**_fields(current), "tags": tuple(tags)})

    def delete(self, key: ResourceKey) -> Record:
        current = self._existing(key)
        self._advance(ChangeOp.DELETE, key)
        self._conn.execute(resources.delete().where(_key_clause(key)))
        return Record(**{**_fields(current), "status": "DELETED"})

    def client_token(self, token: str) -> tuple[str, Any] | None:
        row = self._conn.execute(
            sa.select(client_tokens).where(
                client_tokens.c.token == token,
                client_tokens.c.created_at > self._now - _TOKEN_TTL_SECONDS,
            )
        ).first()
        return (row.fingerprint, json.loads(row.answer)) if row is not None else None

    def remember_client_token(self, token: str, fingerprint: str, answer: Any) -> None:
        self._conn.execute(client_tokens.delete().where(client_tokens.c.token == token))
        self._conn.execute(
            client_tokens.insert().values(
                token=token, fingerprint=fingerprint, answer=_dumps(answer), created_at=self._now
            )
        )

    def put_namespace(self, namespace: Namespace) -> None:
        self._conn.execute(namespaces.delete().where(namespaces.c.name == namespace.name))
        self._conn.execute(
            namespaces.insert().values(name=namespace.name, labels=_dumps(dict(namespace.labels)))
        )

    def put_manifest(self, kind: str, namespace: str, name: str, body: Any, source: str) -> None:
        self.delete_manifest(kind, namespace, name)
        self._conn.execute(
            manifests.insert().values(
                kind=kind,
                namespace=namespace,
                name=name,
                body=_dumps(body),
                source=source,
                revision=self.revision,
            )
        )

    def delete_manifest(self, kind: str, namespace: str, name: str) -> None:
        self._conn.execute(
            manifests.delete().where(
                manifests.c.kind == kind,
                manifests.c.namespace == namespace,
                manifests.c.name == name,
            )
        )


def _fields(record: Record) -> dict[str, Any]:
    return {name: getattr(record, name) for name in Record.__slots__}


class SqlStore:
    """The SQL implementation of ``meshplane.store.base.Store``."""

    def __init__(self, url: str) -> None:
        self._engine = _make_engine(url)
        _metadata.create_all(self._engine)
        self._write_lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._waiters_lock = threading.Lock()
        with self._engine.connect() as conn:
            self._revision = int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(changes.c.revision), 0))
                ).scalar_one()
            )

    @classmethod
    def open(cls, data_dir: Path) -> SqlStore:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(sqlite_url(data_dir))

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def revision(self) -> int:
        return self._revision

    @contextmanager
    def _read(self) -> Iterator[_Reads]:
        with self._engine.connect() as conn, conn.begin():
            yield _Reads(conn)

    def get(self, key: ResourceKey) -> Record | None:
        with self._read() as reads:
            return reads.get(key)

    def list_kind(
        self,
        kind: Kind,
        mesh: str | None = None,
        parent: str | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        with self._read() as reads:
            return reads.list_kind(kind, mesh, parent, after=after, limit=limit)

    def mesh_records(self, mesh: str) -> list[Record]:
        with self._read() as reads:
            return reads.mesh_records(mesh)

    def namespaces(self) -> list[Namespace]:
        with self._read() as reads:
            return reads.namespaces()

    def manifests(self) -> list[StoredManifest]:
        with self._read() as reads:
            return reads.manifests()

    @contextmanager
    def write(self) -> Iterator[_Transaction]:
        with self._write_lock, self._engine.connect() as conn:
            conn.execution_options(meshplane_write=True)
            with conn.begin():
                revision = int(
                    conn.execute(
                        sa.select(sa.func.coalesce(sa.func.max(changes.c.revision), 0))
                    ).scalar_one()
                )
                tx = _Transaction(conn, revision)
                yield tx
            if tx.changes:
                self._revision = tx.revision
                self._notify()

    def changes_since(self, revision: int, limit: int = 10_000) -> list[Change]:
        query = (
            sa.select(changes)
            .where(changes.c.revision > revision)
            .order_by(changes.c.revision)
            .limit(limit)
        )
        with self._read() as reads:
            rows = reads._conn.execute(query)
            return [
                Change(
                    r.revision,
                    ChangeOp(r.op),
                    ResourceKey(Kind(r.kind), r.mesh, r.name, r.parent),
                )
                for r in rows
            ]

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
