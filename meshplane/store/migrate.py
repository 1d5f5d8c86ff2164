"""Schema migrations of the store (Alembic, ``meshplane/store/migrations``), SQLite and
PostgreSQL alike.

:func:`upgrade` brings a database to the newest schema this meshplane knows: an empty one from
nothing, one of the release before migrations (tables, no ``alembic_version``) by stamping it
with that release's revision first.  It runs at every start-up (``SqlStore``, on PostgreSQL
under an advisory lock so that replicas starting together migrate once) and from ``meshplane db
upgrade``; the migrations so far only add tables and indexes, which replicas of the previous
release ignore.  A database whose schema is newer than this meshplane knows is refused
(:class:`SchemaError`), at start-up and, for a running replica, at its next write: two replicas
with different schema versions, the older refuses to write.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from meshplane.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config

REVISIONS = ("0001", "0002", "0003", "0004")
"""The migrations' revisions, oldest first (``tests/test_store_migrations.py`` checks them
against the scripts): known here so that a start-up with nothing to migrate never imports
Alembic."""
BASELINE = REVISIONS[0]
"""The schema of the release before migrations existed."""
HEAD = REVISIONS[-1]
_VERSION = sa.text("SELECT version_num FROM alembic_version")


class SchemaError(ServiceUnavailableError):
    """The database's schema is not the one this meshplane writes (a newer release upgraded
    it): this replica refuses to write."""


def config(conn: Connection | None = None) -> Config:
    """Alembic's configuration, running on ``conn``."""
    from alembic.config import Config

    result = Config()
    result.set_main_option("script_location", "meshplane.store:migrations")
    result.attributes["connection"] = conn
    return result


def head() -> str:
    """The newest revision this meshplane knows."""
    return HEAD


def current(conn: Connection) -> str | None:
    """The database's revision (None: no migration ran on it)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    found = conn.execute(_VERSION).scalar()
    return None if found is None else str(found)


def upgrade(conn: Connection) -> tuple[str | None, str]:
    """Bring the database on ``conn`` (in its transaction) to :data:`HEAD`; (from, to)."""
    before = current(conn)
    if before == HEAD:
        return before, HEAD
    if before is not None and before not in REVISIONS:
        raise SchemaError(
            f"the database schema is at revision {before}, newer than this meshplane knows "
            f"(up to {HEAD}): a newer release upgraded it; upgrade this replica"
        )
    from alembic import command

    logging.getLogger("alembic").setLevel(logging.WARNING)  # the store logs what changed
    if before is None and sa.inspect(conn).has_table("resources"):
        command.stamp(config(conn), BASELINE)  # a database of the release before migrations
        before = BASELINE
    command.upgrade(config(conn), "head")
    return before, HEAD


def check(conn: Connection) -> None:
    """Raise :class:`SchemaError` if the database is not at :data:`HEAD` any more (one query
    on every write batch of a shared store)."""
    found = conn.execute(_VERSION).scalar()
    if found != HEAD:
        raise SchemaError(
            f"the database schema is at revision {found}, this replica writes revision "
            f"{HEAD}: a newer release upgraded it; upgrade this replica (it refuses to write)"
        )
