"""Which proxies are connected to which replica of a fleet: each replica publishes its
proxies' status to the ``proxies`` table every few seconds (a heartbeat), so that
``proxy-status`` through any replica shows every proxy and the replica it is connected to.

Rows whose heartbeat is older than :data:`STALE_AFTER` seconds (a replica that died) are not
shown, and are removed by the next replica that publishes.  Not part of the change feed: status
is observation, not configuration.  Used by ``meshplane.server`` on a shared (PostgreSQL) store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from meshplane.store.schema import proxies
from meshplane.store.sql import SqlStore

STALE_AFTER = 10.0


class FleetProxies:
    """The fleet's connected proxies, as the replicas publish them."""

    def __init__(
        self, store: SqlStore, replica: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.replica = replica
        self.clock = clock

    def publish(self, statuses: Sequence[dict[str, Any]]) -> None:
        """Replace this replica's rows with ``statuses`` (each with ``stream``, ``mesh``,
        ``name``); drop rows of replicas that stopped publishing."""
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
            for status in statuses
        ]
        with self.store.engine.connect() as conn, conn.begin():
            conn.execute(
                proxies.delete().where(
                    sa.or_(
                        proxies.c.replica == self.replica,
                        proxies.c.heartbeat_at < now - STALE_AFTER,
                    )
                )
            )
            if rows:
                conn.execute(proxies.insert(), rows)

    def withdraw(self) -> None:
        """This replica stops: its proxies are not connected to it any more."""
        with self.store.engine.connect() as conn, conn.begin():
            conn.execute(proxies.delete().where(proxies.c.replica == self.replica))

    def others(self, mesh: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """The status of the proxies connected to the other replicas (fresh rows only)."""
        query = sa.select(proxies.c.replica, proxies.c.status).where(
            proxies.c.replica != self.replica,
            proxies.c.heartbeat_at >= self.clock() - STALE_AFTER,
        )
        if mesh is not None:
            query = query.where(proxies.c.mesh == mesh)
        if name is not None:
            query = query.where(proxies.c.name == name)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(proxies.c.replica, proxies.c.stream)).all()
        return [{**json.loads(row.status), "replica": row.replica} for row in rows]
