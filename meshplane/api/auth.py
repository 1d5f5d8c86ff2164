"""Who is calling: API authentication (bearer tokens and SigV4) as ASGI middleware.

``Authentication`` wraps the whole application.  For each HTTP request it reads the body (a
SigV4 signature covers it; the body is then replayed to the application), finds the caller's
principal and leaves it in the scope, where handlers read it with ``principal_of``.  Roles per
mesh are checked by the service layer (``meshplane.service.access``); this module only makes
the coarse per-path decision:

- ``/healthz``, ``/readyz``, ``/openapi.json``: public;
- the App Mesh API, the Cloud Map API (``POST /``) and meshplane's own endpoints it knows: any
  valid credentials (the service layer checks the roles);
- ``/metrics``: the viewer role on every mesh; any other path: the admin role on every mesh.

Credentials are an API token (``meshplane.service.tokens``), presented as
``Authorization: Bearer <id>.<secret>`` or as a SigV4 signature made with the token id as
access key id and its secret as secret access key (boto3, the AWS CLI).  Missing or invalid
credentials get 401; too few rights get 403; both as ``ForbiddenException``.

When the server does not require credentials (bound to loopback only, without
``--require-auth``), a request without valid credentials is the anonymous caller, admin of
everything, and one with a valid token acts as that token.  Built by ``meshplane.api.app``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshplane.api import sigv4
from meshplane.errors import BadRequestError, MeshplaneError, UnauthorizedError
from meshplane.service.access import ALL_MESHES, ANONYMOUS, Principal, Role
from meshplane.service.tokens import TokenService, check_bearer, token_principal
from meshplane.store.protocols import TokenReader

log = logging.getLogger(__name__)

SCOPE_KEY = "meshplane.principal"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
EXTENSION_PATHS = (
    "apply",
    "delete",
    "namespaces",
    "manifests",
    "proxies",
    "tokens",
    "audit",
    "proxy-tokens",  # meshplane.api.authority: roles per mesh checked by the handlers
    "meshes",
    "dns",  # meshplane.api.cloudmap: the DNS lookup needs the viewer role on some mesh
    "telemetry",  # meshplane.telemetry.http and meshplane.console: viewer role per mesh
    "console",
)
_WHAT = (
    "send 'Authorization: Bearer <token>' (meshplane --token, MESHPLANE_TOKEN) or sign the "
    "request with SigV4 using the token id as access key id and its secret as secret key"
)


def principal_of(request: Request) -> Principal:
    """The principal the middleware found (the anonymous caller if it did not run)."""
    found = request.scope.get(SCOPE_KEY)
    return found if isinstance(found, Principal) else ANONYMOUS


def path_needs(path: str) -> Literal["public", "credentials"] | Role:
    """What a path needs before any handler runs: nothing, valid credentials (the handler
    checks roles per mesh), or a role on every mesh."""
    if path in PUBLIC_PATHS or path == "/console" or path.startswith("/console/"):
        return "public"  # the console's page and bundle; its data needs credentials
    if path.startswith("/v20190125/") or path == "/":
        return "credentials"
    if path.startswith("/meshplane/v1/") and path.split("/")[3] in EXTENSION_PATHS:
        return "credentials"
    if path == "/metrics":
        return Role.VIEWER
    return Role.ADMIN


class Authenticator:
    """Finds the principal of a request from its credentials."""

    def __init__(
        self,
        tokens: TokenService,
        *,
        required: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = tokens
        self.store: TokenReader = tokens.store
        self.required = required
        self._clock = clock

    def authenticate(
        self,
        *,
        method: str,
        raw_path: bytes,
        raw_query: bytes,
        headers: Mapping[str, Sequence[str]],
        body: bytes,
    ) -> Principal:
        values = headers.get("authorization") or []
        if not values:
            if self.required:
                raise UnauthorizedError(f"missing credentials: {_WHAT}")
            return ANONYMOUS
        try:
            if len(values) > 1:
                raise UnauthorizedError("send one Authorization header")
            header = values[0].strip()
            scheme, _, rest = header.partition(" ")
            if scheme.lower() == "bearer":
                token = check_bearer(self.store, rest.strip())
                if token is None:
                    raise UnauthorizedError("invalid or revoked token")
                return token_principal(token)
            if sigv4.is_sigv4(header):
                return self._sigv4(header, method, raw_path, raw_query, headers, body)
            raise UnauthorizedError(f"unsupported Authorization scheme: {_WHAT}")
        except UnauthorizedError:
            if self.required:
                raise
            return ANONYMOUS

    def _sigv4(
        self,
        header: str,
        method: str,
        raw_path: bytes,
        raw_query: bytes,
        headers: Mapping[str, Sequence[str]],
        body: bytes,
    ) -> Principal:
        try:
            auth = sigv4.parse_authorization(header)
            dates = headers.get("x-amz-date") or [""]
            amz_date = dates[0]
            sigv4.request_time(amz_date or None, auth, self._clock())
            token = self.store.api_token(auth.key_id)
            secret = self.tokens.secret(token) if token is not None else None
            if token is None or secret is None:
                raise UnauthorizedError("invalid or revoked token (SigV4 access key id)")
            canonical = sigv4.canonical_request(
                method=method,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=headers,
                signed_headers=auth.signed_headers,
                body=body,
            )
        except sigv4.SignatureError as error:
            raise UnauthorizedError(str(error)) from None
        if not sigv4.verify(secret, auth, amz_date, canonical):
            raise UnauthorizedError(
                "the SigV4 signature does not match (check the secret access key)"
            )
        return token_principal(token)


def _refusal(error: MeshplaneError) -> list[Message]:
    body = json.dumps({"message": error.message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-errortype", f"{error.code}:".encode()),
    ]
    if isinstance(error, UnauthorizedError):
        headers.append((b"www-authenticate", b'Bearer realm="meshplane"'))
    return [
        {"type": "http.response.start", "status": error.status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class Authentication:
    """ASGI middleware: authenticate every HTTP request, refuse what the path does not allow."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, *, max_body: int) -> None:
        self.app = app
        self.authenticator = authenticator
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = path_needs(scope["path"])
        if needed == "public":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._body(receive)
            headers: dict[str, list[str]] = {}
            for name, value in scope["headers"]:
                headers.setdefault(name.decode("latin-1").lower(), []).append(
                    value.decode("latin-1")
                )
            raw_path = scope.get("raw_path") or scope["path"].encode()
            principal = self.authenticator.authenticate(
                method=scope["method"],
                raw_path=raw_path.split(b"?", 1)[0],
                raw_query=scope.get("query_string", b""),
                headers=headers,
                body=body,
            )
            if isinstance(needed, Role):
                principal.require(ALL_MESHES, needed, f"use {scope['path']}")
        except MeshplaneError as error:
            for message in _refusal(error):
                await send(message)
            return
        scope[SCOPE_KEY] = principal
        await self.app(scope, _replay(body, receive), send)

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # disconnected: the app will see the same
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BadRequestError(f"request body: larger than {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
