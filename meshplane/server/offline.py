"""Work on a stopped server's data directory: the API tokens of ``meshplane token --data-dir``.

:func:`offline_tokens` locks the data directory (refusing with :class:`DataDirLocked` while a
server runs on it), opens its store and token key as ``meshplane serve`` would, and hands out
:class:`OfflineTokens`: create, list and revoke as the local administrator (``local:<user>``,
admin on every mesh), each audited with ``via=offline``, answering the same JSON the API does.
This is how the first admin token of a server that requires credentials is made.

The server's public surface for the CLI (``meshplane.cli.token_commands``), which so never
reaches into the store or the services itself.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from meshplane.server.keys import token_key
from meshplane.server.run import DataDirLocked, lock_data_dir
from meshplane.server.settings import Settings
from meshplane.service.access import ALL_MESHES, Grant, Principal, Role
from meshplane.service.tokens import SecretBox, TokenService, describe
from meshplane.store import open_store

__all__ = ["DataDirLocked", "OfflineTokens", "offline_tokens"]


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
def offline_tokens(data_dir: Path) -> Iterator[OfflineTokens]:
    """The tokens of the server whose data directory is ``data_dir`` (created if missing)."""
    lock = lock_data_dir(data_dir)
    try:
        settings = Settings.load(data_dir=data_dir)
        assert settings.auth is not None
        store = open_store(data_dir=data_dir)
        try:
            box = SecretBox(token_key(settings.auth.key_file))
            yield OfflineTokens(TokenService(store, box, clock=time.time))
        finally:
            store.close()
    finally:
        lock.close()
