"""Durable storage of mesh resources, with a revisioned change feed.

``open_store(url_or_dir)`` builds the backend; callers code against the protocols of
:mod:`meshplane.store.protocols` (``ResourceStore``, ``TokenStore``, ``AuditLog``,
``ManifestStore``; ``Store`` is all of them).  The SQL backend (:mod:`meshplane.store.sql`)
answers reads from its in-memory read model (:mod:`meshplane.store.read_model`) and writes
through :mod:`meshplane.store.transaction`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshplane.store.protocols import (
    AuditLog,
    ManifestStore,
    Reader,
    ResourceReader,
    ResourceStore,
    Store,
    TokenReader,
    TokenStore,
    Transaction,
)
from meshplane.store.records import (
    ApiToken,
    AuditEntry,
    Change,
    ChangeOp,
    Namespace,
    Record,
    StoredManifest,
    Tag,
)

if TYPE_CHECKING:
    from meshplane.store.sql import SqlStore

__all__ = [
    "ApiToken",
    "AuditEntry",
    "AuditLog",
    "Change",
    "ChangeOp",
    "ManifestStore",
    "Namespace",
    "Reader",
    "Record",
    "ResourceReader",
    "ResourceStore",
    "SqlStore",
    "Store",
    "StoredManifest",
    "Tag",
    "TokenReader",
    "TokenStore",
    "Transaction",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # SQLAlchemy is imported on first use, not by everything that names a record type.
    if name == "SqlStore":
        from meshplane.store.sql import SqlStore

        return SqlStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(*, data_dir: Path | None = None, url: str | None = None) -> SqlStore:
    """Open the store at a SQLAlchemy ``url``, or the embedded SQLite in ``data_dir``."""
    from meshplane.store.sql import SqlStore

    if url:
        return SqlStore(url)
    if data_dir is None:
        raise ValueError("open_store needs a data directory or a database URL")
    return SqlStore.open(data_dir)
