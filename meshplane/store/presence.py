"""Which proxies are connected to which replica of a fleet, so that ``proxy-status`` through
any replica shows every proxy and the replica it is connected to.

A replica writes one heartbeat row for itself (the ``replicas`` table, :meth:`FleetProxies.beat`
every few seconds) and a proxy's row (``proxies``) only when that proxy's status changes: it
connects or disconnects, or an xDS type is sent, ACKed or NACKed (:meth:`FleetProxies.publish`
with what changed since the last publish).  So 10,000 quiet proxies cost one row write per beat,
not 10,000.  A proxy's liveness follows from its replica's heartbeat: the proxies of a replica
whose heartbeat is older than :data:`STALE_AFTER` seconds (a replica that died) are shown with
``"replicaAlive": false``, and removed, with the replica's row, by the next replica that beats
after :data:`FORGET_AFTER` seconds.  A replica that starts again under the same id first
withdraws the rows its earlier life left behind.

Not part of the change feed: status is observation, not configuration.  Used by
``meshplane.server`` on a shared (PostgreSQL) store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import sqlalchemy as sa

from meshplane.store.schema import proxies, replicas
from meshplane.store.sql import SqlStore

STALE_AFTER = 10.0
"""Seconds without a heartbeat after which a replica counts as dead (its proxies with it)."""
FORGET_AFTER = 60.0
"""Seconds without a heartbeat after which a dead replica's rows are removed."""


class FleetProxies:
    """The fleet's connected proxies, as the replicas publish them."""

    def __init__(
        self, store: SqlStore, replica: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.replica = replica
        self.clock = clock

    def beat(self) -> None:
        """This replica is alive: its heartbeat row; remove the rows of replicas dead for
        longer than :data:`FORGET_AFTER`."""
        now = self.clock()
        forgotten = sa.select(replicas.c.replica).where(
            replicas.c.heartbeat_at < now - FORGET_AFTER
        )
        with self.store.engine.connect() as conn, conn.begin():
            updated = conn.execute(
                replicas.update().where(replicas.c.replica == self.replica).values(heartbeat_at=now)
            )
            if updated.rowcount == 0:
                conn.execute(replicas.insert().values(replica=self.replica, heartbeat_at=now))
            conn.execute(
                proxies.delete().where(
                    sa.or_(
                        proxies.c.replica.in_(forgotten),
                        proxies.c.replica.not_in(sa.select(replicas.c.replica)),  # orphans
                    )
                )
            )
            conn.execute(replicas.delete().where(replicas.c.heartbeat_at < now - FORGET_AFTER))

    def publish(self, changed: Sequence[dict[str, Any]], gone: Collection[int]) -> None:
        """Write the rows of the proxies whose status changed (each with ``stream``, ``mesh``,
        ``name``) and remove those of the streams in ``gone``, in one transaction."""
        if not changed and not gone:
            return
        now = self.clock()
        rows = [
            {
                "replica": self.replica,
                "stream": int(status["stream"]),
                "mesh": str(status.get("mesh", "")),
                "name": str(status.get("name", "")),
                "status": json.dumps(status),
                "heartbeat_at": now,
            }
            for status in changed
        ]
        streams = {row["stream"] for row in rows} | set(gone)
        with self.store.engine.connect() as conn, conn.begin():
            conn.execute(
                proxies.delete().where(
                    proxies.c.replica == self.replica, proxies.c.stream.in_(sorted(streams))
                )
            )
            if rows:
                conn.execute(proxies.insert(), rows)

    def withdraw(self) -> None:
        """This replica stops (or starts again): none of its proxies is connected to it."""
        with self.store.engine.connect() as conn, conn.begin():
            conn.execute(proxies.delete().where(proxies.c.replica == self.replica))
            conn.execute(replicas.delete().where(replicas.c.replica == self.replica))

    def others(self, mesh: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """The status of the proxies connected to the other replicas, each with its
        ``replica`` and ``replicaAlive`` (false: that replica stopped beating)."""
        query = (
            sa.select(proxies.c.replica, proxies.c.status, replicas.c.heartbeat_at)
            .select_from(proxies.outerjoin(replicas, replicas.c.replica == proxies.c.replica))
            .where(proxies.c.replica != self.replica)
        )
        if mesh is not None:
            query = query.where(proxies.c.mesh == mesh)
        if name is not None:
            query = query.where(proxies.c.name == name)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(proxies.c.replica, proxies.c.stream)).all()
        fresh = self.clock() - STALE_AFTER
        return [
            {
                **json.loads(row.status),
                "replica": row.replica,
                "replicaAlive": row.heartbeat_at is not None and row.heartbeat_at >= fresh,
            }
            for row in rows
        ]
