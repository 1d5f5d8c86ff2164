"""Identity state kept in the store, sealed under the key-encryption key: what lets every
replica sharing a database issue under the same mesh CAs and verify the same tokens.

:class:`SealedVault` implements ``meshplane.authority.keystore.Vault`` over the store's
``secrets`` table: values are sealed with :class:`~meshplane.authority.sealing.Kek` before they
are written and opened when read (from the read model, which follows other replicas' writes).
What it holds: ``ca/<mesh>`` (each mesh's CA roots and keys), ``proxy-token-key``,
``api-token-key`` (seals API token secrets), ``proxy-token-revocations`` and ``kek-check``,
which :meth:`SealedVault.check` opens at start-up so that a replica given another KEK refuses
to start before it writes anything.

Built by ``meshplane.server`` when a KEK is given; ``meshplane db rekey`` re-seals every value
under a new KEK (:func:`rekey`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from meshplane.authority.sealing import Kek
from meshplane.store.protocols import Store

CHECK = "kek-check"
PROXY_TOKEN_KEY = "proxy-token-key"
API_TOKEN_KEY = "api-token-key"


class SealedVault:
    """Named values sealed under one KEK, kept in a store shared by the replicas."""

    def __init__(self, store: Store, kek: Kek) -> None:
        self.store = store
        self.kek = kek

    def check(self) -> None:
        """Open (or, in a new database, create) the check value: KekMismatchError if the
        database's identity state was sealed under another KEK."""
        self.create(CHECK, lambda: b"meshplane")

    def read(self, name: str) -> bytes | None:
        sealed = self.store.secret(name)
        return None if sealed is None else self.kek.open(name, sealed)

    def write(self, name: str, data: bytes) -> None:
        sealed = self.kek.seal(name, data)
        self.store.transact(lambda tx: tx.put_secret(name, sealed))

    def create(self, name: str, make: Callable[[], bytes]) -> bytes:
        def work(tx: Any) -> str:
            existing: str | None = tx.secret(name)
            if existing is not None:
                return existing
            sealed = self.kek.seal(name, make())
            tx.put_secret(name, sealed)
            return sealed

        return self.kek.open(name, self.store.transact(work))

    def random_key(self, name: str, size: int = 32) -> bytes:
        """A random key stored under ``name`` the first time any replica asks for it."""
        return self.create(name, lambda: secrets.token_bytes(size))


def rekey(store: Store, old: Kek, new: Kek) -> int:
    """Re-seal every value sealed under ``old`` with ``new`` in one transaction; the number of
    values.  Replicas still running with ``old`` refuse the state from then on: restart them
    with ``new``."""

    def work(tx: Any) -> int:
        names = store.secret_names()
        for name in names:
            sealed = tx.secret(name)
            if sealed is not None:
                tx.put_secret(name, new.seal(name, old.open(name, sealed)))
        return len(names)

    return int(store.transact(work))
