"""What ``meshplane serve`` checks and opens before it builds the components: the data
directory's lock, the store (waiting for its database), the sealed identity state, the key of
API token secrets, the TLS files, and whether its ports are free.

Each failure is a :class:`~meshplane.errors.LocalError` or
:class:`~meshplane.errors.MeshplaneError` that says what to do.  Called by
:class:`meshplane.server.run.Application` and :func:`meshplane.server.run.serve`, by each xDS
worker (:mod:`meshplane.server.worker`) and by the offline commands
(:mod:`meshplane.server.offline`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from meshplane.authority.sealing import Kek, KekError
from meshplane.errors import LocalError, MeshplaneError
from meshplane.server.keys import token_key
from meshplane.server.settings_sections import StoreSettings, TlsSettings
from meshplane.service.tokens import KEY_BYTES as TOKEN_KEY_BYTES
from meshplane.service.tokens import SecretBox
from meshplane.store import SqlStore, Store, open_store
from meshplane.store.sql import StoreUnavailableError, describe_url
from meshplane.store.vault import API_TOKEN_KEY, SealedVault

log = logging.getLogger("meshplane")


class DataDirLocked(LocalError):
    """Another meshplane process already uses this data directory."""


class PortInUse(LocalError):
    """An address the server or demo must bind is taken."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Take the data directory's lock (holding this process's PID), or raise DataDirLocked
    naming the process that holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "meshplane.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read(32).strip()
        handle.close()
        if holder.isdigit():
            raise DataDirLocked(
                f"data directory {data_dir} is in use by another meshplane process (pid "
                f"{holder}): stop it (Ctrl-C in its terminal, or kill {holder}) or give "
                "another --data-dir"
            ) from None
        raise DataDirLocked(
            f"data directory {data_dir} is in use by another meshplane process: stop it "
            f"(find it with: fuser {data_dir / 'meshplane.lock'}) or give another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class DatabaseUnreachable(MeshplaneError):
    """The database did not answer within the start-up wait."""


def open_with_retry(
    settings: StoreSettings, sleep: Callable[[float], None] = time.sleep
) -> SqlStore:
    """Open the store; while its database cannot be reached, say so and retry with backoff
    for up to ``settings.database_wait`` seconds."""
    deadline = time.monotonic() + settings.database_wait
    delay = 0.5
    while True:
        try:
            return open_store(data_dir=settings.data_dir, url=settings.database_url)
        except StoreUnavailableError as error:
            where = describe_url(settings.database_url or "")
            left = deadline - time.monotonic()
            if left <= 0:
                raise DatabaseUnreachable(
                    f"database {where} could not be reached for {settings.database_wait:g} s "
                    f"({error.message.split(';')[0]}); is it running, and is the URL right? "
                    "(--database-wait / MESHPLANE_DATABASE_WAIT sets how long start-up waits)"
                ) from None
            log.error(
                "database %s: %s; retrying in %.1f s", where, error.message.split(";")[0], delay
            )
            sleep(min(delay, max(left, 0.05)))
            delay = min(delay * 2, 10.0)


def open_vault(store: Store, settings: StoreSettings) -> SealedVault | None:
    """The sealed identity state in the database when a KEK is given (checked: a replica
    given another KEK than the one that sealed the state refuses to start); None without."""
    kek = Kek.load(settings.kek_file, settings.kek)
    if kek is None:
        if store.postgres:
            raise KekError(
                "a PostgreSQL store is shared by replicas, and so are the mesh CAs and token "
                "keys sealed in it: give every replica the same key-encryption key with "
                "--kek-file FILE or MESHPLANE_KEK (make one: openssl rand -hex 32 > FILE; "
                "chmod 600 FILE)"
            )
        return None
    vault = SealedVault(store, kek)
    vault.check()
    log.info("identity state: in the database, sealed under key-encryption key %s", kek.id)
    return vault


def check_ports(addresses: Sequence[tuple[str, int, str]]) -> None:
    """Raise PortInUse for the first (host, port, remedy) that cannot be bound now; a remedy
    starting with ``--`` is the flag that moves the port, anything else is said as it is."""
    for host, port, remedy in addresses:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host.strip("[]"), port))
            except OSError as error:
                if remedy.startswith("--"):
                    remedy = f"stop what holds it, or choose another port with {remedy}"
                raise PortInUse(
                    f"{host}:{port} is already in use ({error.strerror}; another meshplane "
                    f"server or demo?): {remedy}"
                ) from None


def api_token_box(vault: SealedVault | None, key_file: Path) -> SecretBox:
    """What seals API token secrets: the key in the database (sealed under the KEK, shared
    by every replica) when there is a vault, else the data directory's ``token.key``."""
    if vault is not None:
        return SecretBox(vault.random_key(API_TOKEN_KEY, TOKEN_KEY_BYTES))
    return SecretBox(token_key(key_file))


class TlsFilesError(LocalError):
    """The TLS certificate or key cannot be read."""


def _read_tls(tls: TlsSettings) -> tuple[bytes, bytes]:
    try:
        return tls.cert_file.read_bytes(), tls.key_file.read_bytes()
    except OSError as error:
        raise TlsFilesError(f"{error.filename}: cannot read ({error.strerror})") from None
