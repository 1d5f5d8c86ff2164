"""The golden signals as JSON: ``GET /meshplane/v1/telemetry?mesh=M[&seconds=S]``.

Answers ``{"mesh", "seconds", "edges": [...], "nodes": [...], "proxies": [...]}`` (see
:meth:`meshplane.telemetry.signals.Signal.to_json`) for the last ``seconds`` (default 60, at
most the window kept), for a caller with the viewer role on the mesh (the API's
authentication).  Used by ``meshplane stat``/``top`` and the console; mounted by the server
wiring.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from meshplane.api.appmesh import guarded
from meshplane.api.auth import principal_of
from meshplane.errors import BadRequestError
from meshplane.service import inputs
from meshplane.service.access import Role
from meshplane.telemetry import signals
from meshplane.telemetry.window import TelemetryStore

DEFAULT_SECONDS = 60.0


def telemetry_json(store: TelemetryStore, mesh: str, seconds: float) -> dict[str, Any]:
    """The signals of ``mesh`` over the last ``seconds``."""
    return {
        "mesh": mesh,
        "seconds": seconds,
        "edges": [s.to_json() for s in signals.edges(store, mesh, seconds)],
        "nodes": [s.to_json() for s in signals.nodes(store, mesh, seconds)],
        "proxies": signals.proxies(store, mesh),
    }


class TelemetryApi:
    def __init__(self, store: TelemetryStore) -> None:
        self.store = store

    def routes(self) -> list[BaseRoute]:
        return [Route("/meshplane/v1/telemetry", guarded(self.telemetry), methods=["GET"])]

    def seconds(self, raw: str | None) -> float:
        if raw is None:
            return DEFAULT_SECONDS
        settings = self.store.settings
        longest = settings.capacity * settings.flush_interval
        try:
            value = float(raw)
        except ValueError:
            raise BadRequestError(f"seconds: must be a number (got {raw[:40]!r})") from None
        if not math.isfinite(value) or not 1 <= value <= longest:
            raise BadRequestError(f"seconds: must be between 1 and {longest:g}")
        return value

    async def telemetry(self, request: Request) -> dict[str, Any]:
        query = request.query_params
        unknown = sorted(set(query) - {"mesh", "seconds"})
        if unknown:
            raise BadRequestError(f"{unknown[0]}: unknown query parameter (expected mesh, seconds)")
        if "mesh" not in query:
            raise BadRequestError("mesh: is required")
        mesh = inputs.resource_name(query["mesh"], "mesh")
        principal_of(request).require(mesh, Role.VIEWER, f"read the telemetry of mesh {mesh}")
        return telemetry_json(self.store, mesh, self.seconds(query.get("seconds")))
