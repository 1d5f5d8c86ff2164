"""Several stores on one database (the replicas of a fleet), against every backend: each
follows the others' writes, revisions stay one sequence in commit order, an update that read an
older version loses with ConflictException, idempotency tokens and API tokens hold across
replicas.  PostgreSQL only: the database stopped under writes and started again."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from meshplane.errors import ConflictError, ServiceUnavailableError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store import ApiToken, SqlStore
from tests.support.postgres import PostgresServer

OWNER = "000000000000"
MESH = ResourceKey(Kind.MESH, "m", "m")


def node(name: str) -> ResourceKey:
    return ResourceKey(Kind.VIRTUAL_NODE, "m", name)


@pytest.fixture
def pair(database_url: str) -> Iterator[tuple[SqlStore, SqlStore]]:
    a = SqlStore(database_url, follow=True, follow_interval=0.2)
    b = SqlStore(database_url, follow=True, follow_interval=0.2)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def wait_until(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


async def test_a_write_on_one_replica_wakes_and_reaches_the_other(
    pair: tuple[SqlStore, SqlStore],
) -> None:
    a, b = pair
    waiter = asyncio.create_task(b.wait_for_revision(0, timeout=30))
    await asyncio.sleep(0)
    await asyncio.to_thread(
        a.transact, lambda tx: tx.create(MESH, {}, mesh_owner=OWNER, resource_owner=OWNER)
    )
    assert await asyncio.wait_for(waiter, 20) == 1
    assert b.get(MESH) == a.get(MESH)
    assert [c.key for c in b.changes_since(0)] == [MESH]


def test_revisions_are_one_sequence_in_commit_order_across_replicas(
    pair: tuple[SqlStore, SqlStore],
) -> None:
    a, b = pair
    a.transact(lambda tx: tx.create(MESH, {}, mesh_owner=OWNER, resource_owner=OWNER))

    def writer(store: SqlStore, prefix: str) -> None:
        for i in range(20):
            store.transact(
                lambda tx, i=i: tx.create(
                    node(f"{prefix}{i}"), {}, mesh_owner=OWNER, resource_owner=OWNER
                )
            )

    threads = [threading.Thread(target=writer, args=(s, p)) for s, p in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until(lambda: a.revision == b.revision == 41)
    for store in (a, b):
        feed = store.changes_since(0)
        assert [c.revision for c in feed] == list(range(1, 42))  # no gaps, no duplicates
        assert len(store.list_kind(Kind.VIRTUAL_NODE, "m")) == 40
    assert [r.revision for r in a.list_kind(Kind.VIRTUAL_NODE, "m")] == [
        r.revision for r in b.list_kind(Kind.VIRTUAL_NODE, "m")
    ]


def test_an_update_that_read_an_older_version_loses_with_conflict(
    pair: tuple[SqlStore, SqlStore],
) -> None:
    a, b = pair
    a.transact(lambda tx: tx.create(MESH, {}, mesh_owner=OWNER, resource_owner=OWNER))
    a.transact(lambda tx: tx.create(node("r"), {"w": 0}, mesh_owner=OWNER, resource_owner=OWNER))
    wait_until(lambda: b.get(node("r")) is not None)
    read_a, read_b = a.get(node("r")), b.get(node("r"))
    assert read_a is not None and read_b is not None
    assert read_a.version == read_b.version == 1
    a.transact(lambda tx: tx.update(node("r"), {"w": 1}, expected_version=read_a.version))
    with pytest.raises(ConflictError, match="changed by another request"):
        b.transact(lambda tx: tx.update(node("r"), {"w": 2}, expected_version=read_b.version))
    wait_until(lambda: (b.get(node("r")) or read_b).version == 2)
    for store in (a, b):
        final = store.get(node("r"))
        assert final is not None and final.spec == {"w": 1} and final.version == 2


def test_idempotency_and_api_tokens_hold_across_replicas(pair: tuple[SqlStore, SqlStore]) -> None:
    a, b = pair
    a.transact(lambda tx: tx.remember_client_token("tok-1", "fp", {"answer": 1}))
    assert b.transact(lambda tx: tx.client_token("tok-1")) == ("fp", {"answer": 1})
    token = ApiToken(
        id="mpt_abc",
        mesh="*",
        role="admin",
        secret_hash="h" * 64,
        sealed_secret="sealed",
        description="",
        created_at=1.0,
        created_by="test",
    )
    a.transact(lambda tx: tx.put_api_token(token))
    wait_until(lambda: b.api_token("mpt_abc") == token)
    b.transact(lambda tx: tx.delete_api_token("mpt_abc"))
    wait_until(lambda: a.api_token("mpt_abc") is None)
    a.transact(lambda tx: tx.put_manifest("VirtualNode", "ns", "n", {"k": 1}, "file.yaml"))
    wait_until(lambda: [m.body for m in b.manifests()] == [{"k": 1}])


def test_database_outage_fails_writes_cleanly_and_recovers(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    a = SqlStore(url, follow_interval=0.2)
    b = SqlStore(url, follow_interval=0.2)
    try:
        a.transact(lambda tx: tx.create(MESH, {}, mesh_owner=OWNER, resource_owner=OWNER))
        postgres.stop()
        with pytest.raises(ServiceUnavailableError, match="database is unavailable"):
            a.transact(
                lambda tx: tx.create(node("lost"), {}, mesh_owner=OWNER, resource_owner=OWNER)
            )
        assert a.get(node("lost")) is None  # nothing half-written, not even in memory
        assert a.revision == 1
        postgres.start()
        deadline = time.monotonic() + 30
        while True:  # the first write after the restart may meet a connection that died
            try:
                a.transact(
                    lambda tx: tx.create(node("n"), {}, mesh_owner=OWNER, resource_owner=OWNER)
                )
                break
            except ServiceUnavailableError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        wait_until(lambda: b.get(node("n")) is not None, timeout=30)
        assert [c.revision for c in b.changes_since(0)] == [1, 2]
        assert b.get(node("lost")) is None
    finally:
        if postgres.process is None:
            postgres.start()
        a.close()
        b.close()
