"""``meshplane db upgrade|rekey``: the store's database, offline.

``upgrade`` migrates the schema to the one this meshplane writes (``serve`` also does it at
start-up); ``rekey`` re-seals the identity state in the database under a new key-encryption
key.  Both take the store settings of ``serve`` (``--database-url``, ``--data-dir``, the KEK).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from meshplane.cli import output
from meshplane.cli.settings_options import settings_options
from meshplane.errors import MeshplaneError
from meshplane.server.settings import Settings


@click.group()
def db() -> None:
    """The store's database: schema migrations and the key-encryption key."""


def _settings(values: dict[str, Any]) -> Settings:
    try:
        return Settings.load(**values)
    except ValueError as error:
        raise output.fail(str(error), output.EXIT_USAGE) from None


@db.command()
@settings_options("data_dir", "database_url", "database_wait")
def upgrade(**values: Any) -> None:
    """Migrate the database to the schema this meshplane writes (from an empty database, or
    from any earlier release). Safe while replicas run: migrations only add tables and
    indexes; a running replica (of this release or later) refuses to write once the schema
    moved past the one it knows.

    \b
    Examples:
      meshplane db upgrade --database-url postgresql://meshplane@db.internal/meshplane
      meshplane db upgrade --data-dir /var/lib/meshplane
    """
    from meshplane.server.offline import upgrade_database

    settings = _settings(values)
    try:
        revision = upgrade_database(settings)  # opening migrates
    except MeshplaneError as error:
        raise output.fail(error.message) from None
    click.echo(f"database schema at revision {revision} (the newest this meshplane knows)")


@db.command()
@settings_options("data_dir", "database_url", "kek_file", "kek")
@click.option(
    "--new-kek-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="The new key-encryption key (64 hex digits, mode 0600).",
)
def rekey(new_kek_file: Path, **values: Any) -> None:
    """Re-seal the identity state in the database (mesh CAs, token keys, revocations) under a
    new key-encryption key, in one transaction.

    Rotate a KEK: make a new one (openssl rand -hex 32 > new.kek; chmod 600 new.kek), stop the
    replicas, run this with the old key (--kek-file or MESHPLANE_KEK) and --new-kek-file, then
    start every replica with the new key. A replica still given the old key refuses to start.

    \b
    Examples:
      meshplane db rekey --database-url postgresql://meshplane@db/meshplane \\
          --kek-file /etc/meshplane/kek --new-kek-file /etc/meshplane/kek.new
    """
    from meshplane.server.offline import rekey_database

    settings = _settings(values)
    try:
        count, new_id, old_id = rekey_database(settings, new_kek_file)
    except MeshplaneError as error:
        raise output.fail(error.message) from None
    click.echo(f"re-sealed {count} values under key-encryption key {new_id} (was {old_id})")
