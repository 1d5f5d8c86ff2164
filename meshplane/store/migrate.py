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

from functools import cache

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from meshplane.errors import ServiceUnavailableError

BASELINE = "0001"
"""The schema of the release before migrations existed."""


class SchemaError(ServiceUnavailableError):
    """The database's schema is not the one this meshplane writes (a newer release upgraded
    it): this replica refuses to write."""


def _config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "meshplane.store:migrations")
    config.attributes["connection"] = conn
    return config


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this meshplane knows."""
    revision = _script().get_current_head()
    assert revision is not None
    return revision


def current(conn: Connection) -> str | None:
    """The database's revision (None: no migration ran on it)."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(conn: Connection) -> tuple[str | None, str]:
    """Bring the database on ``conn`` (in its transaction) to :func:`head`; (from, to)."""
    before = current(conn)
    if before is None and sa.inspect(conn).has_table("resources"):
        command.stamp(_config(conn), BASELINE)  # a database of the release before migrations
        before = BASELINE
    known = {script.revision for script in _script().walk_revisions()}
    if before is not None and before not in known:
        raise SchemaError(
            f"the database schema is at revision {before}, newer than this meshplane knows "
            f"(up to {head()}): a newer release upgraded it; upgrade this replica"
        )
    if before != head():
        command.upgrade(_config(conn), "head")
    return before, head()


def check(conn: Connection) -> None:
    """Raise :class:`SchemaError` if the database is not at :func:`head` any more."""
    found = current(conn)
    if found != head():
        raise SchemaError(
            f"the database schema is at revision {found}, this replica writes revision "
            f"{head()}: a newer release upgraded it; upgrade this replica (it refuses to write)"
        )
