"""Schema migrations (Alembic) on both backends: from an empty database and from the previous
release's schema and data (``tests/fixtures/store/previous-release.*.sql``: dumps of databases
the release before migrations wrote), ``meshplane db upgrade``, and a schema newer than this
meshplane: refused at start-up, and a running replica refuses to write."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store import SqlStore, migrate, open_store
from meshplane.store.schema import metadata
from tests.support.postgres import PostgresServer

FIXTURES = Path(__file__).parent / "fixtures" / "store"
OWNER = "000000000000"
WEB = ResourceKey(Kind.VIRTUAL_NODE, "legacy", "web")


def schema_differences(store: SqlStore) -> list[object]:
    with store.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def test_the_known_revisions_are_the_scripts() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrate.config())
    assert [s.revision for s in reversed(list(scripts.walk_revisions()))] == list(migrate.REVISIONS)


def test_an_empty_database_gets_the_whole_schema(database_url: str) -> None:
    store = open_store(url=database_url)
    try:
        with store.engine.connect() as conn:
            assert migrate.current(conn) == migrate.head()
        assert schema_differences(store) == []
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def previous_release(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database as the previous release left it (schema and data)."""
    script = (FIXTURES / f"previous-release.{request.param}.sql").read_text()
    if request.param == "sqlite":
        path = tmp_path / "meshplane.db"
        import sqlite3

        with sqlite3.connect(path) as conn:
            conn.executescript(script)
        return f"sqlite:///{path}"
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(script.encode())
    return url


def test_the_previous_release_is_upgraded_and_loses_nothing(previous_release: str) -> None:
    store = open_store(url=previous_release)
    try:
        with store.engine.connect() as conn:
            assert migrate.current(conn) == migrate.head()
        assert schema_differences(store) == []
        web = store.get(WEB)
        assert web is not None and web.version == 2
        assert web.spec["listeners"][0]["portMapping"]["port"] == 9090
        assert store.revision == 3
        assert [c.revision for c in store.changes_since(0)] == [1, 2, 3]
        token = store.api_token("mpt_legacy")
        assert token is not None and token.role == "admin"
        assert [m.name for m in store.manifests()] == ["web"]
        assert [e.operation for e in store.audit_log()] == ["CreateMesh"]
        assert store.transact(lambda tx: tx.client_token("token-1")) == ("fp", {"answer": 1})
        created = store.transact(
            lambda tx: tx.create(
                ResourceKey(Kind.VIRTUAL_NODE, "legacy", "new"),
                {},
                mesh_owner=OWNER,
                resource_owner=OWNER,
            )
        )
        assert created.revision == 4
        store.transact(lambda tx: tx.audit("me", "CreateVirtualNode", mesh="legacy", resource="x"))
        assert [e.seq for e in store.audit_log()] == [1, 2]  # the sequence carried over
    finally:
        store.close()


def test_db_upgrade_command(previous_release: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "meshplane", "db", "upgrade", "--database-url", previous_release],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"database schema at revision {migrate.head()}" in run.stdout
    engine = sa.create_engine(previous_release.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            assert migrate.current(conn) == migrate.head()
    finally:
        engine.dispose()


def test_a_newer_schema_is_refused_and_an_older_replica_stops_writing(
    database_url: str,
) -> None:
    running = SqlStore(database_url, follow=True)
    try:
        # a newer release upgrades the schema under the running replica
        with running.engine.connect() as conn, conn.begin():
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(migrate.SchemaError, match="refuses to write"):
            running.transact(
                lambda tx: tx.create(
                    ResourceKey(Kind.MESH, "m", "m"), {}, mesh_owner=OWNER, resource_owner=OWNER
                )
            )
        assert running.get(ResourceKey(Kind.MESH, "m", "m")) is None
        with pytest.raises(migrate.SchemaError, match="newer than this meshplane knows"):
            open_store(url=database_url)
    finally:
        running.close()
