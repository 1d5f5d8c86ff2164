"""A background duty that runs every few seconds: ``tick`` in a worker thread (it reads and
writes the store), from ``start`` to ``stop``; a failing tick is logged and the next one tries
again (the database may be away for a while).

Used by the registry's lease sweeper (:mod:`meshplane.service.leases`) and automatic CA
rotation (:mod:`meshplane.service.ca_rotation`), both started by ``meshplane.server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``tick`` every ``interval`` seconds between :meth:`start` and :meth:`stop`."""

    def __init__(self, tick: Callable[[], object], *, interval: float, name: str) -> None:
        self.tick = tick
        self.interval = interval
        self.name = name
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"meshplane-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.tick)
            except Exception as error:
                log.warning("%s failed (%s); retrying", self.name, error)
