"""API tokens and the audit log under ``/meshplane/v1`` (``meshplane token``, ``meshplane audit``).

- ``POST /meshplane/v1/tokens`` ``{"mesh": "M" | "*", "role": "admin|editor|viewer",
  "description": "..."}``: a new token; the answer is the only place its secret appears
- ``GET /meshplane/v1/tokens[?mesh=M]``: the tokens of the meshes the caller administers
- ``DELETE /meshplane/v1/tokens/{id}``: revoke a token
- ``GET /meshplane/v1/audit[?mesh=M&since=EPOCH&after=SEQ&limit=N]``: who changed what, oldest
  first, only in meshes the caller may view; ``next`` continues the listing

Mounted by ``meshplane.api.app``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from meshplane.api.appmesh import guarded, read_json_body
from meshplane.api.auth import principal_of
from meshplane.errors import BadRequestError
from meshplane.service import inputs
from meshplane.service.access import ALL_MESHES, Role
from meshplane.service.tokens import TokenService, describe
from meshplane.store.protocols import AuditLog
from meshplane.store.records import AuditEntry

log = logging.getLogger(__name__)

MAX_AUDIT_PAGE = 1000


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at,
        "principal": entry.principal,
        "operation": entry.operation,
        "mesh": entry.mesh or None,
        "resource": entry.resource,
        "version": entry.version,
        "revision": entry.revision,
        "via": entry.via,
    }


def _number(query: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if isinstance(default, int) else float(raw)
    except ValueError:
        kind = "a whole number" if isinstance(default, int) else "a number"
        raise BadRequestError(f"{name}: must be {kind} (got {raw!r})") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise BadRequestError(f"{name}: must be between {low:g} and {high:g}")
    return value


class AdminApi:
    """Token management and the audit log."""

    def __init__(self, tokens: TokenService, audit_log: AuditLog) -> None:
        self.tokens = tokens
        self.audit_log = audit_log

    def routes(self) -> list[BaseRoute]:
        prefix = "/meshplane/v1"
        return [
            Route(f"{prefix}/tokens", guarded(self.create_token), methods=["POST"]),
            Route(f"{prefix}/tokens", guarded(self.list_tokens), methods=["GET"]),
            Route(f"{prefix}/tokens/{{id}}", guarded(self.revoke_token), methods=["DELETE"]),
            Route(f"{prefix}/audit", guarded(self.audit), methods=["GET"]),
        ]

    async def create_token(self, request: Request) -> dict[str, Any]:
        body = await read_json_body(request)
        unknown = sorted(set(body) - {"mesh", "role", "description"})
        if unknown:
            raise BadRequestError(
                f"{unknown[0]}: unknown member (expected mesh, role, description)"
            )
        issued = await run_in_threadpool(
            self.tokens.create,
            body.get("mesh"),
            body.get("role"),
            body.get("description"),
            principal=principal_of(request),
        )
        return {**describe(issued.token), "secret": issued.secret, "token": issued.bearer}

    async def list_tokens(self, request: Request) -> dict[str, Any]:
        mesh = request.query_params.get("mesh")
        found = self.tokens.list_tokens(principal=principal_of(request), mesh=mesh)
        return {"tokens": [describe(t) for t in found]}

    async def revoke_token(self, request: Request) -> dict[str, Any]:
        revoked = await run_in_threadpool(
            self.tokens.revoke, request.path_params["id"], principal=principal_of(request)
        )
        return {"token": describe(revoked)}

    async def audit(self, request: Request) -> dict[str, Any]:
        principal = principal_of(request)
        query = dict(request.query_params)
        mesh = query.get("mesh")
        if mesh is not None:
            if mesh != ALL_MESHES:
                mesh = inputs.resource_name(mesh, "mesh")
            principal.require(mesh, Role.VIEWER, "read its audit log")
            meshes: frozenset[str] | None = frozenset({mesh})
        else:
            principal.require_anywhere(Role.VIEWER, "read the audit log")
            meshes = principal.meshes(Role.VIEWER)
        since = _number(query, "since", -1.0, -1.0, 1e11)
        after = int(_number(query, "after", 0, 0, 2**62))
        limit = int(_number(query, "limit", 100, 1, MAX_AUDIT_PAGE))
        entries = await run_in_threadpool(
            self.audit_log.audit_log,
            meshes=meshes,
            since=since if since >= 0 else None,
            after=after,
            limit=limit + 1,
        )
        more = len(entries) > limit
        entries = entries[:limit]
        return {
            "entries": [audit_json(e) for e in entries],
            "next": entries[-1].seq if more else None,
        }
