"""A real PostgreSQL server for tests: Debian's ``postgresql`` package, ``initdb`` in a temporary
directory, listening on loopback only on a port from :mod:`tests.support.ports`.

Run as root (the CI machine), the cluster belongs to the ``postgres`` user the package creates.
Each test gets its own database (:meth:`PostgresServer.create_database`); the server is stopped
and its directory removed when the session ends.  If PostgreSQL is not installed the fixture
fails with the command that installs it: tests that need it never skip.

Used by ``tests/conftest.py`` (the ``postgres`` fixtures) and the fleet tests, which also stop
and restart the server under load (:meth:`PostgresServer.restart`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from tests.support.ports import free_port

USER = "meshplane"
PASSWORD = "meshplane-test"


def binaries() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``postgres``."""
    found = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise AssertionError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "run `apt-get install postgresql` (scripts/test does)"
        )
    return found[-1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, on ``127.0.0.1:<port>``."""

    def __init__(self, *, fsync: bool = False) -> None:
        self.bin = binaries()
        self.port = free_port()
        self.fsync = fsync
        self.root = Path(tempfile.mkdtemp(prefix="meshplane-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: the package's postgres user owns the cluster
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._initdb()

    def _initdb(self) -> None:
        secret = self.root / "pwfile"
        secret.write_text(PASSWORD + "\n")
        if self._as:
            shutil.chown(secret, "postgres")
        subprocess.run(
            [
                *self._as,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                USER,
                "--pwfile",
                str(secret),
                "-A",
                "scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale",
                "C",
            ],
            check=True,
            capture_output=True,
        )
        secret.unlink()

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> PostgresServer:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                *self._as,
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                f"fsync={'on' if self.fsync else 'off'}",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"postgres exited early:\n{self.log()}")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise AssertionError(f"postgres did not accept connections:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def create_database(self) -> str:
        """A new empty database; its SQLAlchemy-style URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, mode: signal.Signals = signal.SIGINT, timeout: float = 30.0) -> None:
        """Stop the server (SIGINT: fast shutdown; SIGKILL: a crash)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if self._as:  # runuser forwards nothing: signal the postmaster itself
            self._signal_postmaster(mode)
        else:
            process.send_signal(mode)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if mode is signal.SIGKILL:  # children of a killed postmaster linger: end them too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            time.sleep(0.2)

    def _signal_postmaster(self, mode: signal.Signals) -> None:
        pid_file = self.data / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, mode)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
