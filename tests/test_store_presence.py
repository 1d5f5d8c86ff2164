"""The fleet's proxy presence (``meshplane.store.presence``) on each backend: one heartbeat row
per replica, a proxy's row written only when its status changes, the proxies of a replica that
stopped beating shown as lost and then removed, and a restarted replica's old rows withdrawn."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from meshplane.store import Store
from meshplane.store.presence import FORGET_AFTER, STALE_AFTER, FleetProxies
from meshplane.store.schema import proxies, replicas


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def status(stream: int, name: str, version: str = "1") -> dict[str, Any]:
    return {"stream": stream, "mesh": "m", "name": name, "types": {"cds": {"acked": version}}}


def rows(store: Any, table: sa.Table) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all())


def test_a_beat_writes_one_row_and_only_changed_proxies_are_written(store: Store) -> None:
    clock = Clock()
    a, b = FleetProxies(store, "a:1", clock), FleetProxies(store, "b:1", clock)  # type: ignore[arg-type]
    a.beat()
    a.publish([status(1, "x"), status(2, "y")], ())
    b.beat()
    written = {r.stream: r.heartbeat_at for r in rows(store, proxies)}
    clock.now += 5
    a.beat()  # nothing changed: the heartbeat row only
    a.publish([], ())
    assert {r.stream: r.heartbeat_at for r in rows(store, proxies)} == written
    assert [(r.replica, r.heartbeat_at) for r in rows(store, replicas)] == [
        ("a:1", clock.now),
        ("b:1", clock.now - 5),
    ]
    a.publish([status(2, "y", "2")], {1})  # y ACKed a new version, x disconnected
    seen = b.others()
    assert [(s["name"], s["types"], s["replica"], s["replicaAlive"]) for s in seen] == [
        ("y", {"cds": {"acked": "2"}}, "a:1", True)
    ]
    assert b.others(mesh="m", name="y") == seen and b.others(name="x") == []
    assert a.others() == []  # its own proxies come from its process, not the table


def test_a_dead_replicas_proxies_are_shown_lost_then_removed(store: Store) -> None:
    clock = Clock()
    a, b = FleetProxies(store, "a:1", clock), FleetProxies(store, "b:1", clock)  # type: ignore[arg-type]
    a.beat()
    a.publish([status(1, "x")], ())
    clock.now += STALE_AFTER + 1  # a died (SIGKILL: no withdraw)
    b.beat()
    [lost] = b.others()
    assert (lost["name"], lost["replica"], lost["replicaAlive"]) == ("x", "a:1", False)
    clock.now += FORGET_AFTER
    b.beat()  # the next beat after FORGET_AFTER removes a's rows
    assert b.others() == []
    assert [r.replica for r in rows(store, replicas)] == ["b:1"]
    assert rows(store, proxies) == []


def test_a_replica_that_starts_again_withdraws_its_earlier_rows(store: Store) -> None:
    clock = Clock()
    first = FleetProxies(store, "a:1", clock)  # type: ignore[arg-type]
    first.beat()
    first.publish([status(1, "x"), status(2, "y")], ())
    again = FleetProxies(store, "a:1", clock)  # type: ignore[arg-type]
    again.withdraw()
    again.beat()
    assert rows(store, proxies) == []
    assert FleetProxies(store, "b:1", clock).others() == []  # type: ignore[arg-type]
