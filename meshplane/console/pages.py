"""The web console at ``/console`` on the API port, and the JSON it reads.

- ``GET /console`` and ``GET /console/assets/<file>``: the page and its bundle (built from
  ``console/`` by ``scripts/setup-venv`` into ``meshplane/console/static``), public like the
  login page of any console — everything it shows comes from the endpoints below, with the
  API's authentication (a token pasted once, kept in the tab; loopback-open like the API).
  Every answer carries a Content-Security-Policy (scripts and styles from the page's own
  origin only, no framing), ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``
  and ``Referrer-Policy: no-referrer``.
- ``GET /meshplane/v1/console/graph?mesh=M[&window=S]``: the topology
  (:mod:`meshplane.console.graph`) with the signals of the last ``S`` seconds (default 60, at
  most the telemetry window; the page passes its own ``?window=S`` on);
- ``GET /meshplane/v1/console/events?mesh=M[&window=S]``: the same graph as server-sent events, sent
  again whenever it changes (checked every second), for at most ``max_stream_seconds``; at
  most ``max_streams`` at once (``TooManyRequestsException`` past it);
- ``GET /meshplane/v1/console/resources?mesh=M``: every resource of the mesh — kind, name,
  ARN, version, status, times, tags, spec — with its last change and who made it (from the
  audit log) and, for virtual nodes and gateways, their connected proxies with their xDS
  state and last NACK.

Weight shifts go through the App Mesh API (``UpdateRoute``) from the page itself, so they are
audited like any other change.  Mounted by the server wiring.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import mimetypes
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from meshplane.api.admin import audit_json
from meshplane.api.appmesh import error_response, guarded
from meshplane.api.auth import principal_of
from meshplane.api.extensions import ProxyStatusSource
from meshplane.console.graph import build_graph
from meshplane.errors import (
    BadRequestError,
    MeshplaneError,
    NotFoundError,
    TooManyRequestsError,
)
from meshplane.model.kinds import Kind
from meshplane.service import inputs
from meshplane.service.access import Role
from meshplane.service.arns import Partition
from meshplane.store.protocols import Store
from meshplane.store.records import Record
from meshplane.telemetry import TelemetryStore, signals

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
SIGNAL_SECONDS = 60.0
MAX_AUDIT_SCAN = 20_000

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


class ConsoleApi:
    """The console's page and JSON (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        telemetry: TelemetryStore,
        partition: Partition,
        proxies: ProxyStatusSource,
        *,
        static: Path = STATIC,
        max_streams: int = 64,
        max_stream_seconds: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.telemetry = telemetry
        self.partition = partition
        self.proxies = proxies
        self.static = static
        self.max_streams = max_streams
        self.max_stream_seconds = max_stream_seconds
        self.clock = clock
        self._streams = 0

    def routes(self) -> list[BaseRoute]:
        prefix = "/meshplane/v1/console"
        return [
            Route("/console", self.page, methods=["GET"]),
            Route("/console/", self.page, methods=["GET"]),
            Route("/console/assets/{name:path}", self.asset, methods=["GET"]),
            Route(f"{prefix}/graph", guarded(self.graph), methods=["GET"]),
            Route(f"{prefix}/resources", guarded(self.resources), methods=["GET"]),
            Route(f"{prefix}/events", self.events, methods=["GET"]),
        ]

    # -- the page ---------------------------------------------------------------------

    async def page(self, _: Request) -> Response:
        index = self.static / "index.html"
        if not index.is_file():
            return _secure(
                Response(
                    "The console is not built: run scripts/setup-venv (it needs Node.js and"
                    " npm) and restart meshplane serve.\n",
                    503,
                    media_type="text/plain",
                )
            )
        return _secure(Response(index.read_bytes(), media_type="text/html; charset=utf-8"))

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        folder = (self.static / "assets").resolve()
        path = (folder / name).resolve()
        if folder not in path.parents or not path.is_file():
            return _secure(Response("not found\n", 404, media_type="text/plain"))
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind in ("text/javascript", "application/javascript"):
            kind = "text/javascript; charset=utf-8"
        return _secure(Response(path.read_bytes(), media_type=kind))

    # -- JSON ---------------------------------------------------------------------------

    def _mesh(self, request: Request, allowed: tuple[str, ...] = ("mesh",)) -> str:
        query = request.query_params
        unknown = sorted(set(query) - set(allowed))
        if unknown:
            raise BadRequestError(
                f"{unknown[0]}: unknown query parameter (expected {', '.join(allowed)})"
            )
        if "mesh" not in query:
            raise BadRequestError("mesh: is required")
        mesh = inputs.resource_name(query["mesh"], "mesh")
        principal_of(request).require(mesh, Role.VIEWER, f"view mesh {mesh} in the console")
        return mesh

    def _records(self, mesh: str) -> list[Record]:
        records = self.store.mesh_records(mesh)
        if not any(r.kind is Kind.MESH for r in records):
            raise NotFoundError(f"mesh {mesh!r} not found")
        return records

    def _window(self, request: Request) -> float:
        """The ``window`` query parameter: seconds of signals, 1 to the telemetry window."""
        raw = request.query_params.get("window")
        if raw is None:
            return SIGNAL_SECONDS
        settings = self.telemetry.settings
        longest = settings.capacity * settings.flush_interval
        try:
            value = float(raw)
        except ValueError:
            text = f"window: must be a number of seconds (got {raw[:40]!r})"
            raise BadRequestError(text) from None
        if not math.isfinite(value) or not 1 <= value <= longest:
            raise BadRequestError(f"window: must be between 1 and {longest:g} seconds")
        return value

    def graph_json(self, mesh: str, seconds: float = SIGNAL_SECONDS) -> dict[str, Any]:
        records = self._records(mesh)
        return build_graph(
            mesh,
            records,
            signals.edges(self.telemetry, mesh, seconds),
            self.proxies(mesh=mesh),
            signals.proxies(self.telemetry, mesh),
        )

    async def graph(self, request: Request) -> dict[str, Any]:
        mesh = self._mesh(request, ("mesh", "window"))
        return await run_in_threadpool(self.graph_json, mesh, self._window(request))

    async def resources(self, request: Request) -> dict[str, Any]:
        mesh = self._mesh(request)
        return await run_in_threadpool(self._resources, mesh)

    def _resources(self, mesh: str) -> dict[str, Any]:
        records = self._records(mesh)
        changes = self._last_changes(mesh)
        proxies = self.proxies(mesh=mesh)
        return {
            "mesh": mesh,
            "resources": [
                self._resource(record, changes, proxies)
                for record in sorted(records, key=lambda r: (r.kind.value, str(r.key)))
            ],
        }

    def _resource(
        self,
        record: Record,
        changes: Mapping[str, dict[str, Any]],
        proxies: list[dict[str, Any]],
    ) -> dict[str, Any]:
        key = record.key
        out: dict[str, Any] = {
            "kind": key.kind.value,
            "name": key.name,
            "parent": key.parent or None,
            "arn": self.partition.arn(key, record.mesh_owner or None),
            "version": record.version,
            "status": record.status,
            "createdAt": record.created_at,
            "lastUpdatedAt": record.updated_at,
            "tags": [{"key": t.key, "value": t.value} for t in record.tags],
            "spec": record.spec,
            "lastChange": changes.get(str(key)),
        }
        if key.kind in (Kind.VIRTUAL_NODE, Kind.VIRTUAL_GATEWAY):
            out["proxies"] = [
                {
                    "nodeId": p["nodeId"],
                    "peer": p["peer"],
                    "connectedSince": p["connectedSince"],
                    "types": {
                        name: {
                            "synced": t["synced"],
                            "lastNack": t["lastNack"],
                        }
                        for name, t in p["types"].items()
                    },
                }
                for p in proxies
                if p.get("kind") == key.kind.value and p.get("name") == key.name
            ]
        return out

    def _last_changes(self, mesh: str) -> dict[str, dict[str, Any]]:
        """The latest audit entry of each resource of ``mesh`` (the log's last entries)."""
        latest: dict[str, dict[str, Any]] = {}
        after = 0
        scanned = 0
        while scanned < MAX_AUDIT_SCAN:
            entries = self.store.audit_log(meshes={mesh}, after=after, limit=1000)
            for entry in entries:
                latest[entry.resource] = audit_json(entry)
            scanned += len(entries)
            if len(entries) < 1000:
                break
            after = entries[-1].seq
        return latest

    # -- server-sent events -----------------------------------------------------------

    async def events(self, request: Request) -> Response:
        try:
            mesh = self._mesh(request, ("mesh", "window"))
            window = self._window(request)
            await run_in_threadpool(self._records, mesh)
            if self._streams >= self.max_streams:
                raise TooManyRequestsError(
                    f"at most {self.max_streams} console event streams at once"
                )
        except MeshplaneError as error:
            return error_response(error)
        self._streams += 1
        return StreamingResponse(
            self._stream(request, mesh, window),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _stream(self, request: Request, mesh: str, window: float) -> AsyncIterator[bytes]:
        try:
            ends = self.clock() + self.max_stream_seconds
            sent = ""
            quiet = 0
            while self.clock() < ends:
                if await request.is_disconnected():
                    return
                graph = await run_in_threadpool(self.graph_json, mesh, window)
                text = json.dumps(graph, separators=(",", ":"))
                digest = hashlib.sha256(text.encode()).hexdigest()
                if digest != sent:
                    sent = digest
                    quiet = 0
                    yield f"event: graph\ndata: {text}\n\n".encode()
                else:
                    quiet += 1
                    if quiet % 15 == 0:
                        yield b": still here\n\n"
                await asyncio.sleep(1.0)
        finally:
            self._streams -= 1
