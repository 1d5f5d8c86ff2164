"""Durable storage of mesh resources, with a revisioned change feed.

``open_store(url_or_dir)`` builds the backend; callers code against ``Store``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshplane.store.base import Reader, Store, Transaction
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
    "Change",
    "ChangeOp",
    "Namespace",
    "Reader",
    "Record",
    "SqlStore",
    "Store",
    "StoredManifest",
    "Tag",
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
