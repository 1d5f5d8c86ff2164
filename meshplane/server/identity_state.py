"""The identity state a process serving xDS needs: the mesh CAs, the proxy-token key and the
revocation list, opened from the data directory or, in a fleet, from the sealed vault in the
database; and how a process reloads them when another replica or process changed them.

Used by :class:`meshplane.server.run.Application` and by each xDS worker
(:mod:`meshplane.server.worker`), so that both open and follow the same state the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshplane.authority import CaSettings, CertificateAuthorities, TokenKey
from meshplane.authority.keystore import VaultKeyStore
from meshplane.authority.revocations import FILE as REVOCATIONS_FILE
from meshplane.authority.revocations import VAULT_NAME as REVOCATIONS_VAULT_NAME
from meshplane.authority.revocations import Revocations
from meshplane.authority.tokens import KEY_FILE as PROXY_TOKEN_KEY_FILE
from meshplane.store.vault import PROXY_TOKEN_KEY, SealedVault


@dataclass(frozen=True, slots=True)
class IdentityState:
    """The CAs, the proxy-token key and the revocations of one process."""

    authorities: CertificateAuthorities
    proxy_tokens: TokenKey
    revocations: Revocations

    @classmethod
    def open(cls, data_dir: Path, ca: CaSettings, vault: SealedVault | None) -> IdentityState:
        """From the vault when the database has one (every replica shares it), else from
        files in ``data_dir``."""
        if vault is not None:
            return cls(
                CertificateAuthorities(data_dir / "ca", ca, keystore=VaultKeyStore(vault)),
                TokenKey(vault.random_key(PROXY_TOKEN_KEY)),
                Revocations(data_dir / REVOCATIONS_FILE, vault=vault),
            )
        return cls(
            CertificateAuthorities(data_dir / "ca", ca),
            TokenKey.load_or_create(data_dir / PROXY_TOKEN_KEY_FILE),
            Revocations(data_dir / REVOCATIONS_FILE),
        )

    def reload(
        self,
        names: set[str],
        loop: asyncio.AbstractEventLoop | None,
        close_revoked: Callable[[], Any],
    ) -> None:
        """Another replica rotated a CA or revoked a proxy token (``names`` of the changed
        vault entries; called on the store's thread): reload them, and close the streams of
        revoked proxies on ``loop``."""
        meshes = {name.removeprefix("ca/") for name in names if name.startswith("ca/")}
        if meshes:
            self.authorities.reload(meshes)
        if REVOCATIONS_VAULT_NAME in names:
            self.revocations.reload()
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(close_revoked)
