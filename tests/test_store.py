"""The store's conformance suite, run against every backend (embedded SQLite and a real
PostgreSQL server, see ``BACKENDS`` in ``tests/support/stores.py``): atomic units of work, concurrent writers that lose no update, the awaitable
change feed, namespaces, manifests, API and idempotency tokens and the audit log committed
with their unit of work, and several stores sharing one database (replicas) that follow each other's writes.
Also SQLite's durability across a server restart and its data-directory lock."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from meshplane.errors import ConflictError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store import ApiToken, ChangeOp, Namespace, SqlStore, open_store
from tests.support.server import MeshplaneServer

OWNER = "000000000000"
MESH = ResourceKey(Kind.MESH, "m", "m")


def node(name: str) -> ResourceKey:
    return ResourceKey(Kind.VIRTUAL_NODE, "m", name)


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    store = open_store(data_dir=tmp_path)
    try:
        _check_wal(store)
    finally:
        store.close()


def _check_wal(store: SqlStore) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_versions_revisions_and_change_feed(store: SqlStore) -> None:
    def create(tx: Any) -> Any:
        tx.create(MESH, {}, mesh_owner=OWNER, resource_owner=OWNER)
        return tx.create(node("a"), {"x": 1}, mesh_owner=OWNER, resource_owner=OWNER)

    created = store.transact(create)
    assert created.version == 1
    updated = store.transact(lambda tx: tx.update(node("a"), {"x": 2}))
    assert updated.version == 2
    assert updated.uid == created.uid
    assert updated.created_at == created.created_at
    assert store.get(node("a")) == updated
    store.transact(lambda tx: tx.delete(node("a")))
    assert store.get(node("a")) is None
    assert store.revision == 4
    feed = store.changes_since(0)
    assert [(c.revision, c.op, c.key) for c in feed] == [
        (1, ChangeOp.CREATE, MESH),
        (2, ChangeOp.CREATE, node("a")),
        (3, ChangeOp.UPDATE, node("a")),
        (4, ChangeOp.DELETE, node("a")),
    ]
    assert store.changes_since(3) == feed[3:]


def test_failed_unit_of_work_changes_nothing(store: SqlStore) -> None:
    store.transact(lambda tx: tx.create(MESH, {}, mesh_owner=OWNER, resource_owner=OWNER))

    def half(tx: Any) -> None:
        tx.create(node("a"), {}, mesh_owner=OWNER, resource_owner=OWNER)
        tx.create(MESH, {}, mesh_owner=OWNER, resource_owner=OWNER)  # conflict: all rolls back

    with pytest.raises(ConflictError):
        store.transact(half)
    assert store.get(node("a")) is None
    assert store.revision == 1
    assert len(store.changes_since(0)) == 1


def test_concurrent_writers_lose_no_update_and_share_commits(store: SqlStore) -> None:
    def setup(tx: Any) -> None:
        tx.create(MESH, {}, mesh_owner=OWNER, resource_owner=OWNER)
        tx.create(node("counter"), {"n": 0}, mesh_owner=OWNER, resource_owner=OWNER)

    store.transact(setup)

    def increment(tx: Any) -> None:
        current = tx.get(node("counter"))
        tx.update(node("counter"), {"n": current.spec["n"] + 1})

    def failing(tx: Any) -> None:
        tx.create(node(f"doomed-{uuid.uuid4()}"), {}, mesh_owner=OWNER, resource_owner=OWNER)
        raise ValueError("this unit of work fails; its neighbours in the batch must not")

    errors: list[BaseException] = []

    def bump() -> None:
        for i in range(50):
            store.transact(increment)
            if i % 10 == 0:
                try:
                    store.transact(failing)
                except ValueError as error:
                    errors.append(error)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.get(node("counter"))
    assert final is not None
    assert final.spec["n"] == 400
    assert final.version == 401
    assert len(errors) == 40
    assert [r.key.name for r in store.list_kind(Kind.VIRTUAL_NODE, "m")] == ["counter"]
    revisions = [c.revision for c in store.changes_since(0)]
    assert revisions == list(range(1, 403))  # no gaps, no duplicates
    store.close()
    reopened = open_store(url=store.url)
    assert reopened.get(node("counter")) == final  # what was answered was on disk
    reopened.close()


def test_the_change_feed_never_runs_ahead_of_reads(store: SqlStore) -> None:
    # A batch is committed to the database before the read model applies it.  A feed reader
    # in between (the control loop reads each changed record right after the feed) must not
    # see a change whose record reads do not show yet: it would take a creation for a
    # deletion, and never hear of that change again.
    store.transact(lambda tx: tx.create(MESH, {}, mesh_owner=OWNER, resource_owner=OWNER))
    model = store._model
    apply = model.apply
    seen: list[tuple[list[int], bool]] = []

    def apply_late(batch: Any) -> None:
        feed = store.changes_since(1)
        seen.append(([c.revision for c in feed], all(store.get(c.key) for c in feed)))
        apply(batch)

    model.apply = apply_late
    try:
        store.transact(lambda tx: tx.create(node("a"), {}, mesh_owner=OWNER, resource_owner=OWNER))
    finally:
        model.apply = apply
    assert seen == [([], True)]
    assert [c.revision for c in store.changes_since(1)] == [2]
    assert store.get(node("a")) is not None


async def test_wait_for_revision_wakes_on_commit(store: SqlStore) -> None:
    waiter = asyncio.create_task(store.wait_for_revision(0, timeout=30))
    await asyncio.sleep(0)
    assert not waiter.done()

    def write() -> None:
        store.transact(lambda tx: tx.create(MESH, {}, mesh_owner=OWNER, resource_owner=OWNER))

    await asyncio.to_thread(write)
    assert await asyncio.wait_for(waiter, 10) == 1
    assert await store.wait_for_revision(0, timeout=0.01) == 1  # already past: returns at once
    assert await store.wait_for_revision(1, timeout=0.05) == 1  # nothing new: times out


def test_restart_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = MeshplaneServer(data).start()
    client = first.boto3()
    client.create_mesh(meshName="durable", tags=[{"key": "k", "value": "v"}])
    client.create_virtual_node(meshName="durable", virtualNodeName="n", spec={})
    client.update_virtual_node(
        meshName="durable",
        virtualNodeName="n",
        spec={"backends": [{"virtualService": {"virtualServiceName": "s"}}]},
    )
    before = client.describe_virtual_node(meshName="durable", virtualNodeName="n")["virtualNode"]
    assert first.stop() == 0  # SIGTERM: clean exit

    second = MeshplaneServer(data)
    second.api_port, second.url = first.api_port, first.url
    second.start()
    try:
        client = second.boto3()
        after = client.describe_virtual_node(meshName="durable", virtualNodeName="n")["virtualNode"]
        assert after == before
        arn = client.describe_mesh(meshName="durable")["mesh"]["metadata"]["arn"]
        assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [
            {"key": "k", "value": "v"}
        ]
    finally:
        second.stop()


def test_second_server_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = MeshplaneServer(data).start()
    try:
        second = MeshplaneServer(data)
        with pytest.raises(RuntimeError, match=r"in use by another meshplane process \(pid \d+\)"):
            second.start(timeout=20)
    finally:
        first.stop()


def test_reads_list_by_kind_mesh_and_page(store: SqlStore) -> None:
    def create(tx: Any) -> None:
        tx.create(MESH, {}, mesh_owner=OWNER, resource_owner=OWNER)
        for name in ("c", "a", "b"):
            tx.create(node(name), {}, mesh_owner=OWNER, resource_owner=OWNER)

    store.transact(create)
    assert [r.key.name for r in store.list_kind(Kind.VIRTUAL_NODE, "m")] == ["a", "b", "c"]
    page = store.list_kind(Kind.VIRTUAL_NODE, "m", after="a", limit=1)
    assert [r.key.name for r in page] == ["b"]
    assert store.list_kind(Kind.VIRTUAL_NODE, "other") == []
    assert {r.key for r in store.mesh_records("m")} == {MESH, node("a"), node("b"), node("c")}


def test_namespaces_manifests_tokens_and_audit_commit_with_their_unit_of_work(
    database_url: str,
) -> None:
    token = ApiToken("T1", "m", "admin", "hash", "sealed", "ops", 1.0, "root")
    store = open_store(url=database_url)

    def work(tx: Any) -> None:
        tx.put_namespace(Namespace("ns", {"mesh": "m"}))
        tx.put_manifest("Mesh", "", "m", {"kind": "Mesh"}, "m.yaml")
        tx.put_api_token(token)
        tx.remember_client_token("ct", "fingerprint", {"answer": 1})
        tx.audit("root", "CreateMesh", mesh="m", resource="mesh/m", version=1)
        assert tx.api_token("T1") == token  # a transaction reads its own writes
        assert tx.client_token("ct") == ("fingerprint", {"answer": 1})

    def failing(tx: Any) -> None:
        tx.put_namespace(Namespace("doomed"))
        tx.put_api_token(ApiToken("T2", "m", "viewer", "h", "s", "", 1.0, "root"))
        tx.audit("root", "Doomed", mesh="m", resource="mesh/m")
        raise ValueError("rolled back")

    try:
        store.transact(work)
        with pytest.raises(ValueError, match="rolled back"):
            store.transact(failing)
    finally:
        store.close()
    reopened = open_store(url=database_url)
    try:
        assert [(n.name, dict(n.labels)) for n in reopened.namespaces()] == [("ns", {"mesh": "m"})]
        manifests = reopened.manifests()
        assert [(m.kind, m.name, dict(m.body), m.source) for m in manifests] == [
            ("Mesh", "m", {"kind": "Mesh"}, "m.yaml")
        ]
        assert reopened.api_token("T1") == token
        assert reopened.api_token("T2") is None
        assert reopened.api_tokens() == [token]
        entries = reopened.audit_log()
        assert [(e.principal, e.operation, e.mesh, e.resource, e.version) for e in entries] == [
            ("root", "CreateMesh", "m", "mesh/m", 1)
        ]
        assert reopened.audit_log(meshes=["other"]) == []
        assert reopened.audit_log(after=entries[0].seq) == []
        assert reopened.transact(lambda tx: tx.client_token("ct")) == (
            "fingerprint",
            {"answer": 1},
        )
        reopened.transact(
            lambda tx: (tx.delete_api_token("T1"), tx.delete_manifest("Mesh", "", "m"))
        )
        assert reopened.api_tokens() == []
        assert reopened.manifests() == []
    finally:
        reopened.close()
