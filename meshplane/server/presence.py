"""The proxies of this replica in the fleet's proxy status: published every few seconds while
the server runs, and merged with the other replicas' when the status is read.

:class:`ReplicaProxies` reads the proxies connected to this replica (to this process's xDS
server, or to its xDS worker processes) and, on a shared store (PostgreSQL), publishes their
changes with this replica's heartbeat (:class:`meshplane.store.presence.FleetProxies`).  Built,
started and stopped by :class:`meshplane.server.run.Application`, whose ``proxy_status`` (the
API's ``/meshplane/v1/proxies``, the console) reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import sqlalchemy as sa

from meshplane.server.serving import XdsServing
from meshplane.server.workers import XdsWorkers
from meshplane.store.presence import FleetProxies

log = logging.getLogger("meshplane")
PRESENCE_INTERVAL = 2.0
"""Seconds between two heartbeats of a replica (fleet proxy-status): each also writes the rows
of the proxies whose status changed since the one before."""


class ReplicaProxies:
    """The proxies connected to one replica, and their part in the fleet's presence
    (``presence`` None: the store is not shared, this replica's are all there are)."""

    def __init__(
        self,
        presence: FleetProxies | None,
        replica: str,
        *,
        serving: XdsServing | None,
        workers: XdsWorkers | None,
    ) -> None:
        self.presence = presence
        self.replica = replica
        self.serving = serving
        self.workers = workers
        self._task: asyncio.Task[None] | None = None

    def _serving(self) -> XdsServing:
        assert self.serving is not None
        return self.serving

    def statuses(self, *, mesh: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """Status JSON of the connected proxies (of ``mesh``, named ``name``, if given): on a
        shared store, those of every replica of the fleet, each with its ``replica``."""
        local = self._local(mesh=mesh, name=name)
        if self.presence is None:
            return local
        try:
            others = self.presence.others(mesh, name)
        except sa.exc.SQLAlchemyError as error:
            log.warning("the fleet's proxies cannot be read (%s): this replica's only", error)
            others = []
        mine: list[dict[str, Any]] = [{**status, "replica": self.replica} for status in local]
        return mine + others

    async def _publish(self) -> None:
        """Every few seconds: this replica's heartbeat, and the rows of its proxies whose status
        changed since the last beat (connected, disconnected, sent, ACKed, NACKed): this
        process's, or its xDS workers' (each keeps track of what it reported)."""
        presence = self.presence
        assert presence is not None
        synced = False
        while True:
            try:
                if not synced:  # rows an earlier life under this replica id left, or an outage
                    await asyncio.to_thread(presence.withdraw)
                    self._resync()
                    synced = True
                changed, gone = await self._changes()
                await asyncio.to_thread(self._beat, presence, changed, gone)
            except Exception as error:  # the database away: start over at the next beat
                log.debug("publishing this replica's proxies failed: %s", error)
                synced = False
            await asyncio.sleep(PRESENCE_INTERVAL)

    def _resync(self) -> None:
        """The next changes are every proxy (the rows were withdrawn)."""
        if self.serving is not None:
            self.serving.presence_resync()
        if self.workers is not None:
            self.workers.presence_resync()

    async def _changes(self) -> tuple[list[dict[str, Any]], set[int]]:
        if self.workers is not None:
            return await asyncio.to_thread(self.workers.presence_changes)
        return self._serving().presence_changes()

    @staticmethod
    def _beat(presence: FleetProxies, changed: list[dict[str, Any]], gone: set[int]) -> None:
        presence.beat()
        presence.publish(changed, gone)

    async def start(self) -> None:
        if self.presence is not None:
            self._task = asyncio.create_task(self._publish())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.presence is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.presence.withdraw)

    def _local(self, *, mesh: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """The proxies connected to this replica: to this process, or to its xDS workers."""
        if self.workers is not None:
            return self.workers.statuses(mesh=mesh, name=name)
        return self._serving().statuses(mesh=mesh, name=name)
