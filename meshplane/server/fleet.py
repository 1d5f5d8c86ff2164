"""What a load balancer and ``meshplane status`` ask a replica: ``/readyz`` and
``GET /meshplane/v1/fleet``.

- ``/readyz``: 200 when this replica can serve: its database answers and it has followed the
  change feed up to the database's last revision (or did so within the last few seconds, on a
  busy fleet); 503 with the reason otherwise.  ``/healthz`` (``meshplane.api.app``) only says
  the process is alive.
- ``GET /meshplane/v1/fleet``: this replica's id, the store backend and database (without its
  password), this replica's revision and the database's (the lag), the duty lease: whether
  this replica holds it and which replica does, and its xDS worker processes
  (``--xds-workers``): each one's pid, whether it answers, its revision and proxies.

With xDS workers, ``/readyz`` also needs every worker to answer and to have followed the feed
as far as the main process (within the same grace).

Built by ``meshplane.server.run``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from meshplane.errors import MeshplaneError
from meshplane.store.lease import DutyLease
from meshplane.store.sql import SqlStore, describe_url

READY_GRACE = 5.0
"""Seconds a replica behind the database still counts as ready (it follows every second)."""


class FleetApi:
    def __init__(
        self,
        store: SqlStore,
        lease: DutyLease,
        replica: str,
        *,
        workers: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.store = store
        self.lease = lease
        self.replica = replica
        self.workers = workers
        self._caught_up_at = time.monotonic()
        self._workers_caught_up_at = time.monotonic()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/meshplane/v1/fleet", self.fleet, methods=["GET"]),
        ]

    def _state(self) -> dict[str, Any]:
        try:
            database = self.store.database_revision()
            error = None
        except MeshplaneError as failure:
            database, error = None, failure.message
        revision = self.store.revision
        if database is not None and revision >= database:
            self._caught_up_at = time.monotonic()
        workers = self.workers() if self.workers is not None else []
        if all(w["alive"] and w["revision"] >= revision for w in workers):
            self._workers_caught_up_at = time.monotonic()
        return {
            "replica": self.replica,
            "backend": "postgresql" if self.store.postgres else "sqlite",
            "database": describe_url(self.store.url),
            "revision": revision,
            "databaseRevision": database,
            "lag": None if database is None else max(0, database - revision),
            "databaseError": error,
            "dutyLease": {"held": self.lease.held, "holder": self.lease.holder},
            "xdsWorkers": workers,
        }

    async def fleet(self, _: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self._state))

    async def readyz(self, _: Request) -> Response:
        state = await run_in_threadpool(self._state)
        if state["databaseError"] is not None:
            reason = f"database unavailable: {state['databaseError']}"
        elif state["lag"] and time.monotonic() - self._caught_up_at > READY_GRACE:
            reason = f"behind the change feed by {state['lag']} revisions"
        elif down := [str(w["worker"]) for w in state["xdsWorkers"] if not w["alive"]]:
            reason = f"xDS worker {', '.join(down)} not answering"
        elif time.monotonic() - self._workers_caught_up_at > READY_GRACE:
            behind = [
                str(w["worker"]) for w in state["xdsWorkers"] if w["revision"] < state["revision"]
            ]
            reason = f"xDS worker {', '.join(behind)} behind the change feed"
        else:
            return JSONResponse({"ready": True, "revision": state["revision"]})
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)
