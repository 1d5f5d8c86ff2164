"""Revoked proxy tokens: one token by its id, or every token issued for a proxy until a moment.

Proxy tokens are stateless (:mod:`meshplane.authority.tokens`), so revoking one is remembering
it until it cannot be valid any more.  :class:`Revocations` keeps two lists in
``<data dir>/proxy-token-revocations.json`` (mode 0600, rewritten atomically on every change):

- token ids (``jti``) — ``meshplane proxy-token revoke --token-id``;
- per proxy (``mesh/<mesh>/virtualNode/<name>``), a cut-off: every token for it issued at or
  before that second is revoked — ``meshplane proxy-token revoke --resource`` (a leaked token
  whose id nobody noted, or a decommissioned workload).

An entry is dropped once every token it can match has expired anyway (a token lives at most
:data:`~meshplane.authority.tokens.MAX_TTL_SECONDS`).  Thread-safe; the xDS authorizer asks
:meth:`Revocations.why` for every new stream, the API records revocations.

Used by :mod:`meshplane.server.proxy_auth` and :mod:`meshplane.api.authority`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from meshplane.authority.files import write_file
from meshplane.authority.keystore import Vault
from meshplane.authority.tokens import MAX_TTL_SECONDS, TokenClaims
from meshplane.errors import MeshplaneError

FILE = "proxy-token-revocations.json"
VAULT_NAME = "proxy-token-revocations"


class RevocationsFileError(MeshplaneError):
    """The revocation list cannot be read or written."""


class Revocations:
    """The revoked proxy tokens of one server (see the module docstring)."""

    def __init__(self, path: Path, vault: Vault | None = None) -> None:
        self.path = path
        self.vault = vault
        """Where replicas sharing a database keep the lists (``VAULT_NAME``), instead of
        ``path``."""
        self._lock = threading.Lock()
        self._tokens: dict[str, int] = {}
        """token id -> when it was revoked (unix seconds)"""
        self._subjects: dict[str, int] = {}
        """proxy key -> cut-off: tokens issued at or before it are revoked"""
        self._load()

    def why(self, claims: TokenClaims) -> str | None:
        """Why a (genuine, unexpired) token is revoked, or None if it is not."""
        with self._lock:
            if claims.token_id in self._tokens:
                return f"proxy token {claims.token_id} was revoked"
            cutoff = self._subjects.get(claims.subject)
        if cutoff is not None and claims.issued_at <= cutoff:
            return f"every proxy token for {claims.subject} issued until {cutoff} was revoked"
        return None

    def cutoff(self, subject: str) -> int | None:
        """The second up to which every token for ``subject`` is revoked, if any: a token
        issued for it now must say it was issued after that (``iat`` is in whole seconds)."""
        with self._lock:
            return self._subjects.get(subject)

    def revoke_token(self, token_id: str, now: int) -> None:
        """Revoke one token (its ``jti``); written before it takes effect."""
        with self._lock:
            self._save({**self._tokens, token_id: now}, self._subjects, now)

    def revoke_subject(self, subject: str, now: int) -> None:
        """Revoke every token for ``subject`` issued at or before ``now``."""
        with self._lock:
            cutoff = max(now, self._subjects.get(subject, now))
            self._save(self._tokens, {**self._subjects, subject: cutoff}, now)

    def reload(self) -> None:
        """Read the lists again (another replica revoked a token)."""
        with self._lock:
            self._load()

    def _load(self) -> None:
        if self.vault is not None:
            data = self.vault.read(VAULT_NAME)
            self._parse(data.decode() if data is not None else "{}")
            return
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        except OSError as error:
            raise RevocationsFileError(f"{self.path}: cannot read ({error.strerror})") from None
        self._parse(text)

    def _parse(self, text: str) -> None:
        try:
            data = json.loads(text)
            self._tokens = {str(k): int(v) for k, v in data.get("tokens", {}).items()}
            self._subjects = {str(k): int(v) for k, v in data.get("resources", {}).items()}
        except (ValueError, TypeError, AttributeError) as error:
            raise RevocationsFileError(
                f"{self.path}: not a proxy token revocation list ({error})"
            ) from None

    def _save(self, tokens: dict[str, int], subjects: dict[str, int], now: int) -> None:
        """Write the lists, then adopt them (a failed write changes nothing)."""
        horizon = now - MAX_TTL_SECONDS  # whatever was revoked before cannot be valid now
        tokens = {k: v for k, v in tokens.items() if v >= horizon}
        subjects = {k: v for k, v in subjects.items() if v >= horizon}
        body = json.dumps({"tokens": tokens, "resources": subjects}, indent=1, sort_keys=True)
        try:
            if self.vault is not None:
                self.vault.write(VAULT_NAME, body.encode())
            else:
                write_file(self.path, (body + "\n").encode(), 0o600)
        except OSError as error:
            raise RevocationsFileError(f"{self.path}: cannot write ({error.strerror})") from None
        self._tokens, self._subjects = tokens, subjects
