"""The AWS Cloud Map API (servicediscovery 2017-03-14), wire-compatible with botocore's JSON 1.1
client: ``POST /`` with ``X-Amz-Target: Route53AutoNaming_v20170314.<Operation>``.

``CloudMapApi.handle`` decodes the body (bounded in size by the authentication middleware, in
depth here), runs the operation (:class:`meshplane.service.cloudmap.CloudMapService`) in a worker
thread and answers ``application/x-amz-json-1.1``: the output members, or an error
``{"__type": "<ErrorType>", "Message": ...}`` with the status Cloud Map's model gives it.
Mounted by ``meshplane.api.app`` on ``/``; :class:`DnsLookupApi` on
``/meshplane/v1/dns/lookup``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from meshplane.api.appmesh import error_response as appmesh_error
from meshplane.api.appmesh import json_response
from meshplane.api.auth import principal_of
from meshplane.errors import (
    AccessDeniedError,
    BadRequestError,
    CloudMapError,
    ForbiddenError,
    InvalidInputError,
    MeshplaneError,
)
from meshplane.service.access import Role
from meshplane.service.cloudmap import CloudMapService
from meshplane.service.dns_answers import Answers
from meshplane.service.resources import Caller

log = logging.getLogger(__name__)

TARGET_PREFIX = "Route53AutoNaming_v20170314."
CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_DEPTH = 32


def _response(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type=CONTENT_TYPE)


def error_response(error: MeshplaneError) -> Response:
    if isinstance(error, ForbiddenError):
        error = AccessDeniedError(error.message)
    elif isinstance(error, BadRequestError):
        error = InvalidInputError(error.message)
    fields = error.fields if isinstance(error, CloudMapError) else {}
    response = _response({"__type": error.code, "Message": error.message, **fields}, error.status)
    response.headers["x-amzn-errortype"] = error.code
    return response


def _depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests (stops counting past ``limit``)."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def decode(raw: bytes) -> Any:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInputError(f"request body: not valid JSON ({str(exc)[:120]})") from None
    if _depth(body, MAX_DEPTH) > MAX_DEPTH:
        raise InvalidInputError(f"request body: nested deeper than {MAX_DEPTH} levels")
    return body


class DnsLookupApi:
    """``GET /meshplane/v1/dns/lookup?name=N&type=A``: what the mesh DNS server answers for
    a name, and why (``meshplane dns lookup``)."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers

    async def handle(self, request: Request) -> Response:
        try:
            principal_of(request).require_anywhere(Role.VIEWER, "look up mesh DNS names")
            name = request.query_params.get("name", "")
            rdtype = request.query_params.get("type", "A").upper()
            if not name or len(name) > 253:
                raise BadRequestError("name: a DNS name of 1 to 253 characters")
            if rdtype not in LOOKUP_TYPES:
                raise BadRequestError(f"type: one of {', '.join(LOOKUP_TYPES)}")
            answer = self.answers.resolve(name, rdtype)
            return json_response({"name": name, "type": rdtype, **answer.as_json()})
        except MeshplaneError as error:
            return appmesh_error(error)


LOOKUP_TYPES = ("A", "AAAA", "SRV", "CNAME", "ANY")


def is_cloud_map(request: Request) -> bool:
    return request.headers.get("x-amz-target", "").startswith(TARGET_PREFIX)


class CloudMapApi:
    """The JSON 1.1 endpoint of the Cloud Map operations."""

    def __init__(self, service: CloudMapService, caller: Caller) -> None:
        self.service = service
        self.caller = caller

    async def handle(self, request: Request) -> Response:
        try:
            target = request.headers.get("x-amz-target", "")
            if not target.startswith(TARGET_PREFIX):
                raise InvalidInputError(
                    f"X-Amz-Target: expected {TARGET_PREFIX}<Operation> (AWS Cloud Map)"
                )
            operation = target.removeprefix(TARGET_PREFIX)
            body = decode(await request.body())
            caller = Caller(self.caller.account_id, principal_of(request), "api")
            answer = await run_in_threadpool(self.service.call, operation, body, caller)
            return _response(answer)
        except MeshplaneError as error:
            return error_response(error)
        except Exception:
            log.exception("internal error in Cloud Map %s", request.headers.get("x-amz-target"))
            return error_response(MeshplaneError("internal error; see the server log"))
