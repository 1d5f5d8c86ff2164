"""Work on a server's data offline: the API tokens of ``meshplane token --data-dir`` and the
database of ``meshplane db upgrade|rekey``.

:func:`offline_tokens` locks the data directory (refusing with :class:`DataDirLocked` while a
server runs on it), opens its store and token key as ``meshplane serve`` would, and hands out
:class:`OfflineTokens`: create, list and revoke as the local administrator (``local:<user>``,
admin on every mesh), each audited with ``via=offline``, answering the same JSON the API does.
This is how the first admin token of a server that requires credentials is made.
:func:`upgrade_database` and :func:`rekey_database` migrate the store's schema and re-seal its
identity state under a new key-encryption key.

The server's public surface for the CLI (``meshplane.cli.token_commands``,
``meshplane.cli.db_commands``), which so never reaches into the store or the services itself.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from meshplane.errors import MeshplaneError
from meshplane.server.settings import Settings
from meshplane.server.startup import (
    DataDirLocked,
    api_token_box,
    lock_data_dir,
    open_vault,
    open_with_retry,
)
from meshplane.service.access import ALL_MESHES, Grant, Principal, Role
from meshplane.service.tokens import TokenService, describe
from meshplane.store import open_store

__all__ = [
    "DataDirLocked",
    "KekMissing",
    "OfflineTokens",
    "offline_tokens",
    "rekey_database",
    "upgrade_database",
]


class OfflineTokens:
    """The token operations of the admin API, on a stopped server's store."""

    def __init__(self, service: TokenService) -> None:
        self.service = service
        self.principal = Principal(f"local:{getpass.getuser()}", (Grant(ALL_MESHES, Role.ADMIN),))

    def create(self, mesh: str, role: str, description: str | None) -> dict[str, Any]:
        issued = self.service.create(
            mesh, role, description, principal=self.principal, via="offline"
        )
        return {**describe(issued.token), "secret": issued.secret, "token": issued.bearer}

    def list(self, mesh: str | None) -> list[dict[str, Any]]:
        return [describe(t) for t in self.service.list_tokens(principal=self.principal, mesh=mesh)]

    def revoke(self, token_id: str) -> dict[str, Any]:
        return describe(self.service.revoke(token_id, principal=self.principal, via="offline"))


@contextmanager
def offline_tokens(
    data_dir: Path, *, database_url: str | None = None, kek_file: Path | None = None
) -> Iterator[OfflineTokens]:
    """The tokens of the server whose data directory is ``data_dir`` (created if missing), or
    of the fleet on ``database_url`` (``MESHPLANE_DATABASE_URL``; the token key is then the one
    sealed in the database under the KEK, and replicas may be running)."""
    settings = Settings.load(data_dir=data_dir, database_url=database_url, kek_file=kek_file)
    assert settings.auth is not None
    shared = settings.store.database_url is not None
    lock = None if shared else lock_data_dir(data_dir)
    try:
        store = open_with_retry(settings.store)
        try:
            box = api_token_box(open_vault(store, settings.store), settings.auth.key_file)
            yield OfflineTokens(TokenService(store, box, clock=time.time))
        finally:
            store.close()
    finally:
        if lock is not None:
            lock.close()


class KekMissing(MeshplaneError):
    """``db rekey`` needs the current key-encryption key."""


def upgrade_database(settings: Settings) -> str:
    """Migrate the store's database to the schema this meshplane writes (opening it does);
    return the schema revision it is at now."""
    from meshplane.store import migrate

    store = open_with_retry(settings.store)
    try:
        with store.engine.connect() as conn, conn.begin():
            return str(migrate.current(conn))
    finally:
        store.close()


def rekey_database(settings: Settings, new_kek_file: Path) -> tuple[int, str, str]:
    """Re-seal the identity state under the key in ``new_kek_file``: (values re-sealed, the new
    key's id, the old key's id)."""
    from meshplane.authority.sealing import Kek
    from meshplane.store.vault import SealedVault, rekey

    old = Kek.load(settings.store.kek_file, settings.store.kek)
    if old is None:
        raise KekMissing("give the current key-encryption key: --kek-file or MESHPLANE_KEK")
    new = Kek.load(new_kek_file, None)
    assert new is not None
    store = open_store(data_dir=settings.store.data_dir, url=settings.store.database_url)
    try:
        SealedVault(store, old).check()
        count = rekey(store, old, new)
    finally:
        store.close()
    return count, new.id, old.id
