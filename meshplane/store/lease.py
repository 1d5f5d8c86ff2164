"""The duty lease: which replica of a fleet runs the singleton duties (the registry's lease
sweeper, automatic CA root rotation).

On PostgreSQL the lease is a session advisory lock held on a connection of its own, whose
``application_name`` is the holder's replica id (so any replica can tell who holds it).  Every
replica tries to take it every ``interval`` seconds; when the holder dies its connection closes
(the kernel closes a killed process's sockets; TCP keepalives end a lost host's) and PostgreSQL
releases the lock, so another replica takes the duties within seconds.  A replica that loses
its lease connection stops its duties at once.  On SQLite one server owns the database: it
always holds the lease.

Built by ``meshplane.server``; duties ask :attr:`DutyLease.held` before each run.
"""

from __future__ import annotations

import logging
import threading

from meshplane.store.sql import SqlStore

log = logging.getLogger(__name__)

DUTY_LOCK = 0x6D65736C  # "mesl"
_HOLDER = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s AND l.classid = 0"
)


class DutyLease:
    """This replica's view of the duty lease (see the module docstring)."""

    def __init__(self, store: SqlStore, replica: str, *, interval: float = 1.0) -> None:
        self.store = store
        self.replica = replica
        self.interval = interval
        self.held = not store.postgres
        self.holder: str | None = replica if self.held else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.store.postgres and self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="meshplane-duty-lease", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 6)
            self._thread = None

    def _conninfo(self) -> str:
        return self.store.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo(),
                    autocommit=True,
                    connect_timeout=5,
                    application_name=f"meshplane {self.replica}"[:63],
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=2,
                ) as conn:
                    while not self._stop.is_set():
                        if not self.held:
                            row = conn.execute(
                                "SELECT pg_try_advisory_lock(%s)", (DUTY_LOCK,)
                            ).fetchone()
                            if row is not None and row[0]:
                                self.held = True
                                log.info("duty lease taken: this replica runs the fleet's duties")
                        found = conn.execute(_HOLDER, (DUTY_LOCK,)).fetchone()
                        self.holder = str(found[0]).removeprefix("meshplane ") if found else None
                        self._stop.wait(self.interval)
            except psycopg.Error as error:
                if self.held:
                    log.warning("duty lease lost (%s): duties stop here", str(error).strip())
                self.held = False
                self.holder = None
                self._stop.wait(min(self.interval * 2, 5.0))
        self.held = False
