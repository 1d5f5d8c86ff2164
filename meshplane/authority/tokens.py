"""Proxy tokens: signed, expiring bootstrap credentials scoped to one virtual node or gateway.

A token is ``mpx1.<payload>.<signature>``: the payload is base64url JSON
``{"sub": "mesh/<mesh>/virtualNode/<name>", "iat": <unix>, "exp": <unix>, "jti": "<random>"}``
and the signature is HMAC-SHA256 over ``mpx1.<payload>`` with the server's token key.  The key
is 32 random bytes in ``<data dir>/proxy-token.key`` (mode 0600), created on first use; delete
it (and restart) to revoke every token at once.

A proxy sends its token as ``authorization: Bearer <token>`` on the ADS stream; the xDS
server's authorizer (:mod:`meshplane.server.proxy_auth`) checks it with :meth:`TokenKey.verify`
and that ``sub`` is the identity the proxy claims.

Pure apart from :meth:`TokenKey.load_or_create`.  Used by the API (issuing) and the server
(verifying).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

PREFIX = "mpx1"
KEY_FILE = "proxy-token.key"
MAX_TTL_SECONDS = 366 * 24 * 3600


class InvalidTokenError(Exception):
    """A proxy token that is malformed, forged or expired (the message says which)."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    """The node key the token is for: ``mesh/<mesh>/<kind>/<name>``."""
    issued_at: int
    expires_at: int
    token_id: str


class TokenKey:
    """Signs and verifies proxy tokens with one HMAC key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a proxy token key needs at least 32 bytes")
        self._key = key

    @classmethod
    def load_or_create(cls, path: Path) -> TokenKey:
        """The key in ``path``, written there (0600) first if the file does not exist."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32).hex().encode() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
        text = path.read_text().strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"{path} does not hold a hex token key") from None
        return cls(key)

    def issue(self, subject: str, now: int, ttl: int) -> tuple[str, TokenClaims]:
        """A token for ``subject`` valid for ``ttl`` seconds from ``now`` (unix seconds)."""
        if not 0 < ttl <= MAX_TTL_SECONDS:
            raise ValueError(f"a proxy token lives 1 to {MAX_TTL_SECONDS} seconds")
        claims = TokenClaims(subject, now, now + ttl, secrets.token_hex(8))
        payload = json.dumps(
            {
                "sub": claims.subject,
                "iat": claims.issued_at,
                "exp": claims.expires_at,
                "jti": claims.token_id,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        signed = f"{PREFIX}.{_b64(payload)}"
        return f"{signed}.{_b64(self._sign(signed))}", claims

    def verify(self, token: str, now: int) -> TokenClaims:
        """The claims of a genuine, unexpired token; :class:`InvalidTokenError` otherwise."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise InvalidTokenError("not a meshplane proxy token")
        signed = f"{parts[0]}.{parts[1]}"
        try:
            signature = _unb64(parts[2])
            payload = json.loads(_unb64(parts[1]))
        except ValueError:
            raise InvalidTokenError("malformed proxy token") from None
        if not hmac.compare_digest(signature, self._sign(signed)):
            raise InvalidTokenError("proxy token signature does not verify")
        try:
            claims = TokenClaims(
                str(payload["sub"]), int(payload["iat"]), int(payload["exp"]), str(payload["jti"])
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidTokenError("malformed proxy token claims") from None
        if now >= claims.expires_at:
            raise InvalidTokenError("proxy token has expired")
        return claims

    def _sign(self, signed: str) -> bytes:
        return hmac.new(self._key, signed.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as error:
        raise ValueError(str(error)) from None
