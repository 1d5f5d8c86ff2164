"""Writing the identity layer's files: keys, certificates and lists, atomically, with their
permissions from the moment they exist.

Used by :mod:`~meshplane.authority.keystore` (mesh CAs), :mod:`~meshplane.authority.server_tls`
(the control plane's own certificate) and :mod:`~meshplane.authority.revocations`.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the old file or the new one, never
    a part); the file has ``mode`` from its creation on, whatever the umask.  Raises OSError."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.chmod(temporary, mode)  # the umask may have taken bits away
    os.replace(temporary, path)
