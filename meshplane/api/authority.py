"""Mesh identity endpoints under ``/meshplane/v1``: proxy tokens and the mesh CAs.

- ``POST /meshplane/v1/proxy-tokens`` ``{"resource": "mesh/<m>/virtualNode/<n>",
  "ttlSeconds": 86400}`` -> ``{"token", "resource", "expiresAt"}``: a bootstrap credential for
  one proxy (``meshplane envoy --token``); the xDS server gives a stream presenting it the
  configuration and secrets of that resource only.  The mesh must exist; the resource need
  not yet.
- ``POST /meshplane/v1/proxy-tokens/revoke`` ``{"resource": ..., "tokenId": ...}`` -> the
  revocation: the one token ``tokenId`` (the id create returned), or without it every token
  issued for the resource until now (:mod:`meshplane.authority.revocations`).  Open ADS streams
  holding a revoked token are ended at once (``streamsClosed``); they cannot reconnect with it.
- ``GET /meshplane/v1/meshes/{mesh}/ca``: the mesh's trust bundle (PEM) and its roots —
  public material, for clients outside the mesh that must trust its proxies.
- ``POST /meshplane/v1/meshes/{mesh}/ca/rotate``: start a CA rotation (new root trusted at
  once, signing after the propagation delay, old root trusted for the overlap), audited as
  ``RotateMeshCa`` on ``mesh/<mesh>/ca/<old serial>-><new serial>`` (hex serials of the
  signing roots), as the scheduled rotation (:mod:`meshplane.service.ca_rotation`) is.

Who may call (the caller's principal from ``meshplane.api.auth``): creating or revoking a
proxy token needs the editor role on its mesh, reading a CA the viewer role, rotating it the
admin role.  Mounted by ``meshplane.api.app`` (passed in by ``meshplane.server``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from meshplane.api.appmesh import guarded, read_json_body
from meshplane.api.auth import principal_of
from meshplane.authority import AuthorityError, CertificateAuthorities, TokenKey
from meshplane.authority.revocations import Revocations
from meshplane.errors import BadRequestError, MeshplaneError, NotFoundError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.model.proxy import InvalidNodeIdError, node_key
from meshplane.service import inputs
from meshplane.service.access import Role
from meshplane.store.protocols import ResourceStore, Transaction

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 24 * 3600


class AuthorityApi:
    """The handlers (see the module docstring)."""

    def __init__(
        self,
        store: ResourceStore,
        *,
        tokens: TokenKey | None,
        authorities: CertificateAuthorities | None,
        clock: Callable[[], float] = time.time,
        revocations: Revocations | None = None,
        on_revoked: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.authorities = authorities
        self.clock = clock
        self.revocations = revocations
        self.on_revoked = on_revoked
        """Ends the open streams whose token is now revoked; returns how many."""

    def routes(self) -> list[BaseRoute]:
        prefix = "/meshplane/v1"
        return [
            Route(f"{prefix}/proxy-tokens", guarded(self.create_token), methods=["POST"]),
            Route(f"{prefix}/proxy-tokens/revoke", guarded(self.revoke_tokens), methods=["POST"]),
            Route(f"{prefix}/meshes/{{mesh}}/ca", guarded(self.describe_ca), methods=["GET"]),
            Route(
                f"{prefix}/meshes/{{mesh}}/ca/rotate",
                guarded(self.rotate_ca),
                methods=["POST"],
            ),
        ]

    def _check(self, request: Request, mesh: str, role: Role, what: str) -> None:
        principal_of(request).require(mesh, role, what)
        if self.store.get(ResourceKey(Kind.MESH, mesh, mesh)) is None:
            raise NotFoundError(f"mesh {mesh!r} does not exist")

    async def create_token(self, request: Request) -> dict[str, Any]:
        body, subject = await _token_request(request, "ttlSeconds")
        ttl = body.get("ttlSeconds", DEFAULT_TTL_SECONDS)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 366 * 24 * 3600:
            raise BadRequestError("ttlSeconds: must be an integer from 1 to 31622400 (366 days)")
        if self.tokens is None:
            raise MeshplaneError("this server issues no proxy tokens")
        self._check(
            request, subject.split("/")[1], Role.EDITOR, f"create a proxy token for {subject}"
        )
        issued = int(self.clock())
        cutoff = self.revocations.cutoff(subject) if self.revocations is not None else None
        if cutoff is not None and issued <= cutoff:
            issued = cutoff + 1  # revoked "until now" must not catch a token made just after
        token, claims = self.tokens.issue(subject, issued, ttl)
        principal = principal_of(request).id
        await run_in_threadpool(
            self.store.transact,
            lambda tx: tx.audit(
                principal,
                "CreateProxyToken",
                mesh=subject.split("/")[1],
                resource=f"{subject}/proxy-token/{claims.token_id}",
            ),
        )
        log.info(
            "proxy token %s issued for %s until %s",
            claims.token_id,
            subject,
            _iso(claims.expires_at),
        )
        return {
            "token": token,
            "resource": subject,
            "tokenId": claims.token_id,
            "expiresAt": _iso(claims.expires_at),
        }

    async def revoke_tokens(self, request: Request) -> dict[str, Any]:
        body, subject = await _token_request(request, "tokenId")
        token_id = body.get("tokenId")
        if token_id is not None and (
            not isinstance(token_id, str)
            or not 1 <= len(token_id) <= 64
            or not all(c in "0123456789abcdef" for c in token_id)
        ):
            raise BadRequestError("tokenId: must be the hex token id that create returned")
        if self.revocations is None:
            raise MeshplaneError("this server issues no proxy tokens")
        what = f"token {token_id} of {subject}" if token_id else f"every token of {subject}"
        self._check(request, subject.split("/")[1], Role.EDITOR, f"revoke proxy {what}")
        now = int(self.clock())
        revocations = self.revocations
        principal = principal_of(request).id
        target = f"{subject}/proxy-token/{token_id}" if token_id else f"{subject}/proxy-tokens"

        def work(tx: Transaction) -> None:  # audited only if the revocation is written
            tx.audit(principal, "RevokeProxyToken", mesh=subject.split("/")[1], resource=target)
            if token_id:
                revocations.revoke_token(token_id, now)
            else:
                revocations.revoke_subject(subject, now)

        await run_in_threadpool(self.store.transact, work)
        closed = self.on_revoked() if self.on_revoked is not None else 0
        log.warning("revoked proxy %s; %d open stream(s) ended", what, closed)
        answer: dict[str, Any] = {"resource": subject, "revokedAt": _iso(now)}
        if token_id:
            answer["tokenId"] = token_id
        else:
            answer["issuedUntil"] = _iso(now)
        answer["streamsClosed"] = closed
        return answer

    async def describe_ca(self, request: Request) -> dict[str, Any]:
        mesh = inputs.resource_name(request.path_params["mesh"], "mesh")
        self._check(request, mesh, Role.VIEWER, f"read the CA of mesh {mesh}")
        return await run_in_threadpool(self._ca, mesh)

    async def rotate_ca(self, request: Request) -> dict[str, Any]:
        mesh = inputs.resource_name(request.path_params["mesh"], "mesh")
        self._check(request, mesh, Role.ADMIN, f"rotate the CA of mesh {mesh}")
        return await run_in_threadpool(self._ca, mesh, principal_of(request).id)

    def _ca(self, mesh: str, rotated_by: str | None = None) -> dict[str, Any]:
        """The CA of ``mesh`` as JSON; rotated first (and audited) when ``rotated_by`` is the
        principal asking for it."""
        if self.authorities is None:
            raise MeshplaneError("this server has no certificate authority")
        try:
            before = self.authorities.authority(mesh)
            now = self.authorities.clock()
            old = before.signing_root(now).serial
            authority = before if rotated_by is None else self.authorities.rotate_ca(mesh)
        except AuthorityError as error:
            raise BadRequestError(str(error)) from None
        if rotated_by is not None:
            resource = f"mesh/{mesh}/ca/{old:x}->{authority.roots[-1].serial:x}"
            self.store.transact(
                lambda tx: tx.audit(rotated_by, "RotateMeshCa", mesh=mesh, resource=resource)
            )
            log.warning("mesh %s: CA rotated by %s (%s)", mesh, rotated_by, resource)
        now = self.authorities.clock()
        signing = authority.signing_root(now)
        return {
            "mesh": mesh,
            "trustDomain": self.authorities.trust_domain,
            "trustBundle": authority.trust_bundle(now).decode(),
            "roots": [
                {
                    "serial": f"{root.serial:x}",
                    "subject": root.certificate.subject.rfc4514_string(),
                    "notAfter": root.certificate.not_valid_after_utc.isoformat(),
                    "signsFrom": root.sign_from.isoformat(),
                    "trustedUntil": root.trusted_until.isoformat() if root.trusted_until else None,
                    "signing": root is signing,
                    "trusted": root.trusted(now),
                    "operatorSupplied": root.operator,
                }
                for root in authority.roots
            ],
        }


async def _token_request(request: Request, option: str) -> tuple[dict[str, Any], str]:
    """A proxy-token request's body (members ``resource`` and ``option``) and its proxy key."""
    body = await read_json_body(request)
    unknown = sorted(set(body) - {"resource", option})
    if unknown:
        raise BadRequestError(f"{unknown[0]}: unknown member (expected resource, {option})")
    resource = body.get("resource")
    if not isinstance(resource, str):
        raise BadRequestError("resource: is required, mesh/<mesh>/virtualNode/<name>")
    try:
        return body, node_key(resource)
    except InvalidNodeIdError as error:
        raise BadRequestError(f"resource: {error.message}") from None


def _iso(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat()
