"""The golden signals as JSON (``GET /meshplane/v1/telemetry?mesh=M[&seconds=S]``) and the
tap's stream of requests (``GET /meshplane/v1/tap?mesh=M...``, see :meth:`TelemetryApi.tap`).

Answers ``{"mesh", "seconds", "edges": [...], "nodes": [...], "proxies": [...]}`` (see
:meth:`meshplane.telemetry.signals.Signal.to_json`) for the last ``seconds`` (default 60, at
most the window kept), for a caller with the viewer role on the mesh (the API's
authentication).  Used by ``meshplane stat``/``top`` and the console; mounted by the server
wiring.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from meshplane.api.appmesh import error_response, guarded
from meshplane.api.auth import principal_of
from meshplane.errors import BadRequestError, MeshplaneError
from meshplane.service import inputs
from meshplane.service.access import Role
from meshplane.telemetry import signals
from meshplane.telemetry.tap import TapFilter, TapHub, TapSession
from meshplane.telemetry.window import TelemetryStore

DEFAULT_SECONDS = 60.0
_STATUS = re.compile(r"^(?:[1-5]xx|[1-5][0-9][0-9])$")


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
    def __init__(
        self, store: TelemetryStore, hub: TapHub | None = None, max_tap_seconds: float = 3600.0
    ) -> None:
        self.store = store
        self.hub = hub
        self.max_tap_seconds = max_tap_seconds

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/meshplane/v1/telemetry", guarded(self.telemetry), methods=["GET"]),
            Route("/meshplane/v1/tap", self.tap, methods=["GET"]),
        ]

    async def tap(self, request: Request) -> Response:
        """``GET /meshplane/v1/tap?mesh=M[&node=N&service=S&pathPrefix=P&status=5xx]``: the
        matching requests as they happen, one JSON object a line (an empty line every 5 s
        keeps the connection alive); the proxies are tapped while it runs."""
        try:
            if self.hub is None:
                raise BadRequestError("tapping is not available on this server")
            query = request.query_params
            allowed = {"mesh", "node", "service", "pathPrefix", "status"}
            unknown = sorted(set(query) - allowed)
            if unknown:
                raise BadRequestError(
                    f"{unknown[0]}: unknown query parameter (expected {', '.join(sorted(allowed))})"
                )
            if "mesh" not in query:
                raise BadRequestError("mesh: is required")
            mesh = inputs.resource_name(query["mesh"], "mesh")
            principal_of(request).require(mesh, Role.VIEWER, f"tap mesh {mesh}")
            status = query.get("status")
            if status is not None and not _STATUS.match(status):
                raise BadRequestError("status: must be a class like 5xx or a code like 503")
            prefix = query.get("pathPrefix")
            if prefix is not None and (len(prefix) > 1024 or not prefix.startswith("/")):
                raise BadRequestError("pathPrefix: must start with / (at most 1024 characters)")
            node = query.get("node")
            service = query.get("service")
            tap_filter = TapFilter(
                mesh,
                inputs.resource_name(node, "node") if node else None,
                inputs.resource_name(service, "service") if service else None,
                prefix,
                status,
            )
            session = self.hub.open(tap_filter)
        except MeshplaneError as error:
            return error_response(error)
        return StreamingResponse(
            self._follow(request, session),
            media_type="application/x-ndjson",
            headers={"cache-control": "no-store"},
        )

    async def _follow(self, request: Request, session: TapSession) -> AsyncIterator[bytes]:
        assert self.hub is not None
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.max_tap_seconds
        try:
            yield b"\n"
            written = loop.time()
            while loop.time() < ends:
                try:
                    # a reader that went away is noticed within half a second (the proxies'
                    # access log streams end with the last tap); a keep-alive line every 5 s
                    entry = await asyncio.wait_for(session.queue.get(), 0.5)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    if loop.time() - written >= 5.0:
                        written = loop.time()
                        yield b"\n"
                    continue
                written = loop.time()
                if session.dropped:
                    entry = {**entry, "droppedBefore": session.dropped}
                    session.dropped = 0
                yield json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        finally:
            self.hub.close(session)

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
