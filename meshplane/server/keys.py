"""The server's token key, which seals API token secrets (see ``meshplane.service.tokens``).

Kept in the data directory as ``token.key``: 32 random bytes, mode 0600, created atomically on
first use.  The database and this key belong together; neither alone reveals a token secret.
Used by ``meshplane serve`` and by ``meshplane token`` working offline on a data directory.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from meshplane.errors import MeshplaneError
from meshplane.service.tokens import KEY_BYTES, new_key


class KeyFileError(MeshplaneError):
    """The token key file is unusable (wrong size or readable by others)."""


def token_key(path: Path) -> bytes:
    """The key in ``path``, created first if there is none."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(new_key())
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    mode = path.stat().st_mode
    if stat.S_IMODE(mode) & 0o077:
        raise KeyFileError(f"{path}: the token key is readable by others; run chmod 600 {path}")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{path}: not a meshplane token key ({KEY_BYTES} bytes)")
    return key
