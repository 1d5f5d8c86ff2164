"""API tokens: issuing, listing and revoking them, and keeping their secrets.

A token is an id (``MPT`` and 17 base32 characters, shaped like an AWS access key id) and a
secret (40 URL-safe characters).  Clients present it as ``Authorization: Bearer <id>.<secret>``
or sign their requests with SigV4, the id as access key id and the secret as secret access key
(what boto3 and the AWS CLI do).

The store never holds a secret in the clear: it keeps sha256(secret), which checks the bearer
form, and the secret sealed with the server's token key (AES-256-GCM, the token id as
associated data), because verifying a SigV4 signature needs the raw secret.  The database
alone reveals no secret, and neither does the key alone.  Secrets are 240 random bits, so a
fast hash is the right one (slow hashes are for guessable passwords).

Called by the API (``meshplane.api.admin``, ``meshplane.api.auth``) and by ``meshplane token``
working offline on a data directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshplane.errors import BadRequestError, NotFoundError
from meshplane.service import inputs
from meshplane.service.access import ALL_MESHES, Grant, Principal, Role
from meshplane.store.protocols import TokenReader, TokenStore, Transaction
from meshplane.store.records import ApiToken

ID_PREFIX = "MPT"
KEY_BYTES = 32
MAX_DESCRIPTION = 256
_NONCE = 12


def new_key() -> bytes:
    """A fresh token key for a server (kept in its data directory, mode 0600)."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


class SecretBox:
    """Seals token secrets with the server's key so that only that server can read them."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a token key has {KEY_BYTES} bytes (got {len(key)})")
        self._aead = AESGCM(key)

    def seal(self, token_id: str, secret: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, secret.encode(), token_id.encode())
        return base64.b64encode(nonce + sealed).decode()

    def open(self, token_id: str, sealed: str) -> str | None:
        """The secret, or None if it was not sealed with this key for this token id."""
        try:
            raw = base64.b64decode(sealed, validate=True)
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], token_id.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error):
            return None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer(token_id: str, secret: str) -> str:
    return f"{token_id}.{secret}"


def split_bearer(value: str) -> tuple[str, str] | None:
    token_id, dot, secret = value.partition(".")
    if not dot or not token_id or not secret:
        return None
    return token_id, secret


def token_principal(token: ApiToken) -> Principal:
    return Principal(token.id, (Grant(token.mesh, Role(token.role)),))


def check_bearer(reader: TokenReader, value: str) -> ApiToken | None:
    """The token a bearer value names, if its secret is right."""
    parts = split_bearer(value)
    if parts is None:
        return None
    token = reader.api_token(parts[0])
    if token is None or not hmac.compare_digest(token.secret_hash, hash_secret(parts[1])):
        return None
    return token


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token with its secret: the only time the secret is known outside the server."""

    token: ApiToken
    secret: str

    @property
    def bearer(self) -> str:
        return bearer(self.token.id, self.secret)


def describe(token: ApiToken) -> dict[str, Any]:
    """A token as the API shows it (never its secret)."""
    return {
        "id": token.id,
        "mesh": token.mesh,
        "role": token.role,
        "description": token.description,
        "createdAt": token.created_at,
        "createdBy": token.created_by,
    }


def _mesh(value: Any) -> str:
    if value == ALL_MESHES:
        return ALL_MESHES
    return inputs.resource_name(value, "mesh")


def _role(value: Any) -> Role:
    try:
        return Role(value)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise BadRequestError(f"role: must be one of {roles} (got {value!r})") from None


def _description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise BadRequestError(f"description: must be a string of at most {MAX_DESCRIPTION}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise BadRequestError("description: must not contain control characters")
    return value


def _new_id() -> str:
    return ID_PREFIX + base64.b32encode(secrets.token_bytes(11)).decode()[:17]


class TokenService:
    """Issues, lists and revokes API tokens; each change is audited in its transaction."""

    def __init__(self, store: TokenStore, box: SecretBox, *, clock: Callable[[], float]) -> None:
        self.store = store
        self.box = box
        self._clock = clock

    def secret(self, token: ApiToken) -> str | None:
        """The raw secret of a token (for SigV4), or None if this server's key cannot open it."""
        return self.box.open(token.id, token.sealed_secret)

    def create(
        self,
        mesh: Any,
        role: Any,
        description: Any = None,
        *,
        principal: Principal,
        via: str = "api",
    ) -> IssuedToken:
        mesh_name = _mesh(mesh)
        role_value = _role(role)
        text = _description(description)
        principal.require(mesh_name, Role.ADMIN, "create API tokens for it")
        token_id = _new_id()
        secret = secrets.token_urlsafe(30)
        token = ApiToken(
            id=token_id,
            mesh=mesh_name,
            role=role_value.value,
            secret_hash=hash_secret(secret),
            sealed_secret=self.box.seal(token_id, secret),
            description=text,
            created_at=self._clock(),
            created_by=principal.id,
        )

        def work(tx: Transaction) -> None:
            tx.put_api_token(token)
            tx.audit(
                principal.id, "CreateToken", mesh=mesh_name, resource=f"token/{token_id}", via=via
            )

        self.store.transact(work)
        return IssuedToken(token, secret)

    def list_tokens(self, *, principal: Principal, mesh: Any = None) -> list[ApiToken]:
        """The tokens of the meshes this principal administers (of ``mesh`` only, if given)."""
        wanted = None if mesh is None else _mesh(mesh)
        if wanted is not None:
            principal.require(wanted, Role.ADMIN, "list its API tokens")
        else:
            principal.require_anywhere(Role.ADMIN, "list API tokens")
        return [
            t
            for t in self.store.api_tokens()
            if (wanted is None or t.mesh == wanted) and principal.can(t.mesh, Role.ADMIN)
        ]

    def revoke(self, token_id: Any, *, principal: Principal, via: str = "api") -> ApiToken:
        if not isinstance(token_id, str) or not token_id:
            raise BadRequestError("id: is required")
        principal.require_anywhere(Role.ADMIN, "revoke API tokens")

        def work(tx: Transaction) -> ApiToken:
            token = tx.api_token(token_id)
            if token is None:
                raise NotFoundError(f"API token {token_id!r} not found")
            principal.require(token.mesh, Role.ADMIN, f"revoke API token {token_id}")
            tx.delete_api_token(token_id)
            tx.audit(
                principal.id, "RevokeToken", mesh=token.mesh, resource=f"token/{token_id}", via=via
            )
            return token

        return self.store.transact(work)
