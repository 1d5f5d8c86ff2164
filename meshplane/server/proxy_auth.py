"""Proxy authentication: the xDS server's authorizer.

A proxy proves who it is with a proxy token (``meshplane proxy-token create``, see
:mod:`meshplane.authority.tokens`) sent as ``authorization: Bearer <token>`` on its ADS stream.
:class:`ProxyAuthorizer` is the ``authorize`` hook of :class:`meshplane.xds.XdsServer`: the
token must verify, be unexpired, and be scoped to the very identity the stream's node id
claims; otherwise it raises :class:`PermissionError` (the stream ends with
``PERMISSION_DENIED`` before any configuration or secret is sent) and the refusal is logged
and counted (``meshplane_proxy_auth_refused_total``).

When authentication is not required (the server binds loopback only and was not started with
``--require-proxy-auth``), a stream without a token is let in; a stream *with* a token is
still checked, so a wrong or foreign token is always refused.  A revoked token
(:mod:`meshplane.authority.revocations`) is refused too; :meth:`ProxyAuthorizer.revoked` tells
the server which open streams to end after a revocation.

Built by :mod:`meshplane.server.run`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NoReturn

from prometheus_client import CollectorRegistry, Counter

from meshplane.authority import InvalidTokenError, TokenClaims, TokenKey
from meshplane.authority.revocations import Revocations
from meshplane.model.proxy import InvalidNodeIdError, ProxyIdentity, node_key
from meshplane.xds.producer import Metadata

log = logging.getLogger(__name__)


def bearer_token(metadata: Metadata) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, if any."""
    for key, value in metadata:
        if key.lower() != "authorization":
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


class ProxyAuthorizer:
    """Checks proxy tokens (see the module docstring)."""

    def __init__(
        self,
        key: TokenKey,
        *,
        required: bool,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        revocations: Revocations | None = None,
    ) -> None:
        self.key = key
        self.revocations = revocations
        self.required = required
        self.clock = clock
        self._refused = Counter(
            "meshplane_proxy_auth_refused",
            "ADS streams refused because the proxy could not prove its identity",
            ["reason"],
            registry=registry if registry is not None else CollectorRegistry(),
        )

    def admit(self, metadata: Metadata, peer_certificate: bytes | None) -> None:
        """The check made before any message of a stream is read (``XdsServer``'s ``admit``):
        a required token must be there, and a token that is sent must verify and not be
        revoked.  Whether it names the identity the stream claims is checked by ``__call__``
        once the first request says who it is."""
        del peer_certificate
        token = bearer_token(metadata)
        if token is None:
            if self.required:
                self._refuse(None, "missing", "no proxy token (authorization: Bearer ...)")
            return
        try:
            claims = self.key.verify(token, int(self.clock()))
        except InvalidTokenError as error:
            self._refuse(None, "invalid", str(error))
        revoked = self.revocations.why(claims) if self.revocations is not None else None
        if revoked is not None:
            self._refuse(None, "revoked", revoked)

    def __call__(
        self, identity: ProxyIdentity, metadata: Metadata, peer_certificate: bytes | None
    ) -> TokenClaims | None:
        """The claims of the stream's token (its credential), or None when it sent none."""
        del peer_certificate
        token = bearer_token(metadata)
        if token is None:
            if self.required:
                self._refuse(identity, "missing", "no proxy token (authorization: Bearer ...)")
            return None
        try:
            claims = self.key.verify(token, int(self.clock()))
        except InvalidTokenError as error:
            self._refuse(identity, "invalid", str(error))
        try:
            subject = node_key(claims.subject)
        except InvalidNodeIdError:
            self._refuse(identity, "invalid", "the proxy token names no proxy")
        if subject != identity.key:
            self._refuse(
                identity,
                "other_identity",
                f"the proxy token (id {claims.token_id}) is for {subject}",
            )
        revoked = self.revocations.why(claims) if self.revocations is not None else None
        if revoked is not None:
            self._refuse(identity, "revoked", revoked)
        return claims

    def revoked(self, identity: ProxyIdentity, credential: object) -> str | None:
        """Why an open stream's credential is now revoked (None: it is not, or it has none);
        for :meth:`meshplane.xds.XdsServer.close_streams`."""
        del identity
        if self.revocations is None or not isinstance(credential, TokenClaims):
            return None
        return self.revocations.why(credential)

    def _refuse(self, identity: ProxyIdentity | None, reason: str, message: str) -> NoReturn:
        self._refused.labels(reason).inc()
        if identity is None:
            log.warning("refused an ADS stream before reading it: %s", message)
        else:
            log.warning("refused an ADS stream claiming %s: %s", identity, message)
        raise PermissionError(message)
