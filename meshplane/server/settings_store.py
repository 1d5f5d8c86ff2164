"""The ``store`` settings of ``meshplane serve``: where the data lives (the embedded SQLite
directory or a database URL), how long start-up waits for the database, and the key-encryption
key that seals the CAs and token keys in it.

Declarations only (:class:`~meshplane.server.setting.Setting`); part of
:data:`meshplane.server.settings.SETTINGS`, whose ``Settings.load`` builds
:class:`~meshplane.server.settings_sections.StoreSettings` from them.
"""

from __future__ import annotations

from meshplane.server.setting import Kind, Setting, parse_duration

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir",
        "--data-dir",
        "MESHPLANE_DATA_DIR",
        Kind.PATH,
        "Where the embedded SQLite database, the CAs and the keys live "
        "(`scripts/run`: `.meshplane/data`).",
        "store",
        default_text="`~/.local/share/meshplane`",
    ),
    Setting(
        "database_url",
        "--database-url",
        "MESHPLANE_DATABASE_URL",
        Kind.TEXT,
        "A SQLAlchemy database URL instead of the embedded SQLite store: "
        "`postgresql://user:password@host/db` for several replicas sharing one database.",
        "store",
        metavar="URL",
    ),
    Setting(
        "database_wait",
        "--database-wait",
        "MESHPLANE_DATABASE_WAIT",
        Kind.DURATION,
        "How long start-up retries (with backoff) a database it cannot reach before it gives up.",
        "store",
        default=parse_duration("60s"),
        default_text="`60s`",
    ),
    Setting(
        "kek_file",
        "--kek-file",
        "MESHPLANE_KEK_FILE",
        Kind.FILE,
        "The key-encryption key (64 hex digits; `openssl rand -hex 32`, mode 0600) that seals "
        "the mesh CAs and token keys in the database; every replica gets the same one. "
        "Needed with a PostgreSQL `--database-url`.",
        "store",
    ),
    Setting(
        "kek",
        "--kek",
        "MESHPLANE_KEK",
        Kind.TEXT,
        "The key-encryption key itself instead of --kek-file (set the variable: a flag "
        "shows in the process list).",
        "store",
        metavar="KEY",
    ),
)
