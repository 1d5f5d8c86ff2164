"""The key-encryption key (KEK) that seals identity state kept in a shared database.

When several replicas share one database, the mesh CA keys, the proxy-token key, the API-token
seal key and the revocation list live in the database (``meshplane.store.vault``), each sealed
with AES-256-GCM under the KEK every replica is given (``--kek-file`` or ``MESHPLANE_KEK``).  The
database alone reveals no key; a replica given another KEK cannot open the state and refuses to
start (:class:`KekMismatchError` names both keys' ids).

A KEK is 32 random bytes written as 64 hex digits or as base64, e.g.
``openssl rand -hex 32 > kek`` or ``python3 -c 'import secrets; print(secrets.token_hex(32))'``.
Its id (:attr:`Kek.id`) is a short hash that names it in messages without revealing it.

A sealed value is ``kek1.<kek id>.<base64url(nonce | ciphertext | tag)>``; the name of the value
is the associated data, so a sealed value moved to another name does not open.  Pure.  Used by
``meshplane.store.vault`` and the server's start-up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshplane.errors import MeshplaneError

PREFIX = "kek1"
KEY_BYTES = 32
_NONCE = 12


class KekError(MeshplaneError):
    """A key-encryption key that is missing or malformed (the message says where and how)."""


class KekMismatchError(MeshplaneError):
    """Identity state sealed under another key-encryption key than this replica's."""


class Kek:
    """One key-encryption key: seals and opens named values."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KekError(f"a key-encryption key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.id = hashlib.sha256(b"meshplane-kek\0" + key).hexdigest()[:12]

    @classmethod
    def parse(cls, text: str, source: str) -> Kek:
        """A KEK written as 64 hex digits or base64 of 32 bytes; ``source`` names where it
        came from in the error."""
        value = text.strip()
        key: bytes | None = None
        if len(value) == 2 * KEY_BYTES:
            try:
                key = bytes.fromhex(value)
            except ValueError:
                key = None
        if key is None:
            try:
                key = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
            except (binascii.Error, ValueError):
                key = None
        if key is None or len(key) != KEY_BYTES:
            raise KekError(
                f"{source}: not a key-encryption key (64 hex digits or base64 of 32 bytes; "
                "make one with: openssl rand -hex 32)"
            )
        return cls(key)

    @classmethod
    def load(cls, file: Path | None, text: str | None) -> Kek | None:
        """The KEK from ``--kek-file`` or ``MESHPLANE_KEK`` (not both), or None."""
        if file is not None and text:
            raise KekError("give the key-encryption key once: --kek-file or MESHPLANE_KEK")
        if file is not None:
            try:
                if os.stat(file).st_mode & 0o077:
                    raise KekError(f"{file}: the KEK file is readable by others; chmod 600 {file}")
                return cls.parse(file.read_text(), str(file))
            except OSError as error:
                raise KekError(f"{file}: cannot read the KEK file ({error.strerror})") from None
        if text:
            return cls.parse(text, "MESHPLANE_KEK")
        return None

    def seal(self, name: str, data: bytes) -> str:
        nonce = os.urandom(_NONCE)
        sealed = nonce + self._aead.encrypt(nonce, data, name.encode())
        return f"{PREFIX}.{self.id}.{base64.urlsafe_b64encode(sealed).decode()}"

    def open(self, name: str, sealed: str) -> bytes:
        """The plaintext of ``sealed`` (stored under ``name``); KekMismatchError if another
        KEK sealed it, MeshplaneError if it is damaged."""
        parts = sealed.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise MeshplaneError(f"sealed value {name!r} is damaged (not {PREFIX}.<id>.<data>)")
        if parts[1] != self.id:
            raise KekMismatchError(
                f"{name!r} in the database is sealed under key-encryption key {parts[1]}, "
                f"this replica's KEK is {self.id}: give every replica the same --kek-file "
                "(or MESHPLANE_KEK)"
            )
        try:
            raw = base64.urlsafe_b64decode(parts[2])
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], name.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise MeshplaneError(f"sealed value {name!r} is damaged or was moved") from None
