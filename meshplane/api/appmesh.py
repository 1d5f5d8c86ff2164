"""The App Mesh 2019-01-25 REST API, wire-compatible with botocore's rest-json client.

``AppMeshApi.handle`` decodes one request (URI labels, query, JSON body), calls the matching
``ResourceService`` operation in a worker thread and encodes the answer — the bare ``*Data``
payload, or an error with the ``x-amzn-errortype`` header and a ``{"message"}`` body.  The
caller is the request's principal (``meshplane.api.auth``); the service checks its roles.
Mounted by ``meshplane.api.app``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from meshplane.api.auth import principal_of
from meshplane.api.limits import HttpLimits, parse_json
from meshplane.errors import BadRequestError, MeshplaneError, NotFoundError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.service import inputs
from meshplane.service.resources import Caller, ResourceService

from .routing import Action, Operation, allowed_methods, match

log = logging.getLogger(__name__)

_READS = frozenset({Action.DESCRIBE, Action.LIST, Action.LIST_TAGS})


def json_response(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


def guarded(handler: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Any]:
    """A JSON endpoint around ``handler``: meshplane errors become modeled error responses,
    anything else a logged 500 without a stack trace.  Used by the ``/meshplane/v1`` APIs."""

    async def endpoint(request: Request) -> Response:
        try:
            return json_response(await handler(request))
        except MeshplaneError as error:
            return error_response(error)
        except Exception:
            log.exception("internal error in %s %s", request.method, request.url.path)
            return error_response(MeshplaneError("internal error; see the server log"))

    return endpoint


def error_response(error: MeshplaneError) -> Response:
    response = json_response({"message": error.message}, error.status)
    response.headers["x-amzn-errortype"] = f"{error.code}:"
    return response


def limits_of(request: Request) -> HttpLimits:
    """The request limits the application was built with (``build_app``)."""
    found = getattr(request.app.state, "http_limits", None)
    return found if isinstance(found, HttpLimits) else HttpLimits()


async def read_body(request: Request, limits: HttpLimits) -> bytes:
    """The request body, refused as soon as it passes ``limits.max_body`` (a body the
    authentication middleware already read is not read again)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body:
        raise BadRequestError(f"request body: larger than {limits.max_body} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body:
            raise BadRequestError(f"request body: larger than {limits.max_body} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


_INLINE_JSON = 64 * 1024
"""Bodies up to this size are parsed on the event loop; larger ones in a worker thread."""


async def read_json_body(request: Request, *, required: bool = False) -> dict[str, Any]:
    """The JSON object of the request body ({} when empty, unless ``required``), under the
    app's limits."""
    limits = limits_of(request)
    raw = await read_body(request, limits)
    if not raw.strip():
        if required:
            raise BadRequestError("request body: is required (a JSON object)")
        return {}
    if len(raw) <= _INLINE_JSON:
        body = parse_json(raw, limits)
    else:
        body = await run_in_threadpool(parse_json, raw, limits)
    if not isinstance(body, dict):
        raise BadRequestError("request body: must be a JSON object")
    return body


def _only(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequestError(
            f"{unknown[0]}: unknown member (expected one of {', '.join(sorted(allowed))})"
        )


def _key(op: Operation, labels: Mapping[str, str], body: Mapping[str, Any]) -> ResourceKey:
    """The resource key of a Create/Describe/Update/Delete, names validated."""
    kind = op.kind
    assert kind is not None
    mesh_field = "meshName"
    source = body if (op.action is Action.CREATE and kind is Kind.MESH) else labels
    mesh = inputs.resource_name(source.get(mesh_field), mesh_field)
    if kind is Kind.MESH:
        return ResourceKey(kind, mesh, mesh)
    parent = ""
    if kind.parent is not None:
        parent = inputs.resource_name(labels.get(kind.parent.name_field), kind.parent.name_field)
    name_source = body if op.action is Action.CREATE else labels
    check = inputs.service_name if kind is Kind.VIRTUAL_SERVICE else inputs.resource_name
    name = check(name_source.get(kind.name_field), kind.name_field)
    return ResourceKey(kind, mesh, name, parent)


class AppMeshApi:
    """Dispatches App Mesh REST requests to a ``ResourceService``."""

    def __init__(self, service: ResourceService, caller: Caller) -> None:
        self.service = service
        self.caller = caller

    async def handle(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        try:
            found = match(request.method, path)
            if found is None:
                methods = allowed_methods(path)
                if methods:
                    response = error_response(
                        BadRequestError(f"{request.method} is not allowed here; use {methods}")
                    )
                    response.status_code = 405
                    response.headers["Allow"] = ", ".join(methods)
                    return response
                raise NotFoundError(f"no App Mesh operation at {request.method} {path}")
            op, labels = found
            body = await read_json_body(request, required=True) if request.method == "PUT" else {}
            for member in ("clientToken", "tags", "tagKeys"):
                if member in body and body[member] is None:
                    raise BadRequestError(f"{member}: must not be null (leave it out instead)")
            query = dict(request.query_params)
            caller = dataclasses.replace(self.caller, principal=principal_of(request))
            if op.action in _READS:  # served from the store's in-memory read model
                answer = self._call(caller, op, labels, query, body)
            else:  # writes wait for their group commit in a worker thread
                answer = await run_in_threadpool(self._call, caller, op, labels, query, body)
            return json_response(answer)
        except MeshplaneError as error:
            return error_response(error)
        except Exception:  # the edge: never a stack trace to the caller
            log.exception("internal error in %s %s", request.method, path)
            return error_response(MeshplaneError("internal error; see the server log"))

    def _call(
        self,
        caller: Caller,
        op: Operation,
        labels: Mapping[str, str],
        query: Mapping[str, str],
        body: Mapping[str, Any],
    ) -> dict[str, Any]:
        service = self.service
        owner = query.get("meshOwner")
        kind = op.kind
        if op.action is Action.TAG:
            _only(body, {"tags"})
            if "tags" not in body:
                raise BadRequestError("tags: is required")
            return service.tag(query.get("resourceArn"), body["tags"], caller=caller)
        if op.action is Action.UNTAG:
            _only(body, {"tagKeys"})
            return service.untag(query.get("resourceArn"), body.get("tagKeys"), caller=caller)
        if op.action is Action.LIST_TAGS:
            return service.list_tags(
                query.get("resourceArn"),
                caller=caller,
                limit=query.get("limit"),
                next_token=query.get("nextToken"),
            )
        assert kind is not None
        if op.action is Action.LIST:
            mesh = (
                None if kind is Kind.MESH else inputs.resource_name(labels["meshName"], "meshName")
            )
            parent = None
            if kind.parent is not None:
                field = kind.parent.name_field
                parent = inputs.resource_name(labels[field], field)
            return service.list(
                kind,
                caller=caller,
                mesh=mesh,
                parent=parent,
                limit=query.get("limit"),
                next_token=query.get("nextToken"),
                mesh_owner=owner,
            )
        key = _key(op, labels, body)
        if op.action is Action.CREATE:
            _only(
                body,
                {
                    "meshName" if kind is Kind.MESH else kind.name_field,
                    "spec",
                    "tags",
                    "clientToken",
                },
            )
            return service.create(
                key,
                body.get("spec"),
                caller=caller,
                tags=body.get("tags"),
                client_token=body.get("clientToken"),
                mesh_owner=owner,
            )
        if op.action is Action.UPDATE:
            _only(body, {"spec", "clientToken"})
            return service.update(
                key,
                body.get("spec"),
                caller=caller,
                client_token=body.get("clientToken"),
                mesh_owner=owner,
            )
        if op.action is Action.DELETE:
            return service.delete(key, caller=caller, mesh_owner=owner)
        return service.describe(key, caller=caller, mesh_owner=owner)
