"""One xDS worker process of ``meshplane serve --xds-workers N``.

Started by :class:`meshplane.server.workers.XdsWorkers` as ``python -m
meshplane.server.worker FD``, FD being its end of a private socket pair to the main process,
over which the settings arrive first.  It opens the store (following its change feed: SQLite
woken by the main process's ``revision`` messages and polled every second; PostgreSQL by
``LISTEN/NOTIFY``), builds the proxy authorizer and the mesh CAs from the same identity state
as the main process (it never rotates a CA: the main process does, and says so), and serves the
xDS port with ``SO_REUSEPORT`` (:class:`~meshplane.server.serving.XdsServing`).  Telemetry
flushes and tapped access log entries go to the main process; it answers the main process's
questions (proxy status, state, metrics).  It exits when the main process says so or when its
socket reads EOF (the main process died, however), and when its parent process changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import replace
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, generate_latest

from meshplane.model.proxy import ProxyIdentity
from meshplane.server import gc_pacing
from meshplane.server.identity_state import IdentityState
from meshplane.server.proxy_auth import ProxyAuthorizer
from meshplane.server.serving import XdsServing
from meshplane.server.settings import Settings
from meshplane.server.startup import _read_tls, open_vault, open_with_retry
from meshplane.server.workers import MAX_FRAME, pack, read_frame
from meshplane.store import SqlStore
from meshplane.telemetry import TelemetryStore
from meshplane.telemetry.stats import Flush
from meshplane.telemetry.tap import TapFilter, tap_secret
from meshplane.telemetry.window import ProxyKey

log = logging.getLogger("meshplane")


class TapMirror:
    """The main process's taps as this worker needs them: each proxy's secret (from the
    filters and key the main process sends) and where tapped entries go (to the main
    process)."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.key = b""
        self.filters: list[TapFilter] = []

    def secret_of(self, mesh: str, kind: str, name: str) -> str | None:
        return tap_secret(self.key, self.filters, mesh, kind, name)

    def publish(self, identity: ProxyIdentity, entry: dict[str, Any]) -> None:
        self.send(("tap", identity, entry))


class Worker:
    def __init__(self, settings: Settings, index: int, count: int, parent: int) -> None:
        self.settings = settings
        self.index = index
        self.parent = parent
        if settings.store.database_url is None:  # follows the main process's writes
            store = SqlStore.open(settings.store.data_dir, follow=True)
        else:
            store = open_with_retry(settings.store)
        self.store = store
        vault = open_vault(store, settings.store)
        data_dir = settings.store.data_dir
        self.identity = IdentityState.open(data_dir, settings.ca, vault)
        self.authorities = self.identity.authorities
        proxy_tokens = self.identity.proxy_tokens
        self.revocations = self.identity.revocations
        if vault is not None:
            store.add_secret_listener(self._secrets_changed)
        self.registry = CollectorRegistry()
        self.authorizer = ProxyAuthorizer(
            proxy_tokens,
            required=settings.xds.require_proxy_auth,
            registry=self.registry,
            revocations=self.revocations,
        )
        credentials = None
        if settings.tls is not None:
            cert, key = _read_tls(settings.tls)
            credentials = grpc.ssl_server_credentials([(key, cert)])
        self.taps = TapMirror(self.send)
        self._writer: asyncio.StreamWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.serving = XdsServing(
            settings.xds,
            store,
            self.registry,
            authorities=self.authorities,
            authorizer=self.authorizer,
            # the main process keeps the windows; this one only bounds the streams
            telemetry=TelemetryStore(replace(settings.telemetry, capacity=1)),
            taps=self.taps,
            credentials=credentials,
            relay=self._relay,
            worker=(index, count),
            tracing=settings.tracing,
        )

    def send(self, message: object) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(pack(message))

    def _relay(self, key: ProxyKey, flush: Flush | None) -> None:
        self.send(("flush", key, flush))

    def _secrets_changed(self, names: set[str]) -> None:
        self.identity.reload(names, self._loop, self.serving.close_revoked)

    async def run(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        reader, self._writer = await asyncio.open_unix_connection(sock=sock)
        port = await self.serving.start(reuse_port=True)
        xds = self.serving.xds
        pacing = asyncio.create_task(gc_pacing.pace(lambda: xds.activity))
        watch = asyncio.create_task(_watch_parent(self.parent))
        self.send(("ready", port))
        log.info("xDS worker %d serving %s:%d", self.index + 1, self.settings.xds.host, port)
        try:
            while True:
                try:
                    header = await reader.readexactly(4)
                    size = int.from_bytes(header, "big")
                    if size > MAX_FRAME:
                        raise ValueError(f"a {size}-byte frame")
                    message = _loads(await reader.readexactly(size))
                except (asyncio.IncompleteReadError, ConnectionError):
                    log.info("xDS worker %d: the main process is gone; stopping", self.index + 1)
                    return
                if message[0] == "stop":
                    return
                self._handle(message)
        finally:
            watch.cancel()
            pacing.cancel()
            await self.serving.stop()
            self._writer.close()
            await asyncio.to_thread(self.store.close)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "revision":
            if self.store.revision < message[1]:
                self.store.follow_now()
        elif kind == "taps":
            self.taps.key, self.taps.filters = message[1], list(message[2])
            key, filters = self.taps.key, list(self.taps.filters)

            def secret_of(mesh: str, kind: str, name: str) -> str | None:
                return tap_secret(key, filters, mesh, kind, name)

            self.serving.control.set_taps(secret_of)
        elif kind == "revoked":
            self.revocations.reload()
            self.serving.close_revoked()
        elif kind == "ca":
            self.authorities.reload()
        elif kind == "presence_resync":
            self.serving.presence_resync()
        elif kind == "ask":
            _, request, what, args = message
            try:
                answer = self._answer(what, args)
            except Exception as error:
                log.exception("xDS worker %d: answering %s failed", self.index + 1, what)
                answer = {"error": str(error)}
            self.send(("answer", request, answer))

    def _answer(self, what: str, args: dict[str, Any]) -> Any:
        if what == "statuses":
            return self.serving.statuses(mesh=args.get("mesh"), name=args.get("name"))
        if what == "state":
            return {
                "revision": self.store.revision,
                "proxies": len(self.serving.control.connections),
                "pid": os.getpid(),
            }
        if what == "presence":
            changed, gone = self.serving.presence_changes()
            return changed, sorted(gone)
        if what == "metrics":
            return generate_latest(self.registry).decode()
        raise ValueError(f"unknown question {what!r}")


def _loads(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)  # from the main process


async def _watch_parent(parent: int) -> None:
    """Exit when the main process is gone (its socket's EOF says so too; this also covers a
    worker whose socket read is stuck).  Not PR_SET_PDEATHSIG: that fires when the *thread*
    that started the worker ends, and restarted workers are started by short-lived threads."""
    while True:
        if os.getppid() != parent:
            log.error("the main process (pid %d) is gone; exiting", parent)
            os._exit(1)
        await asyncio.sleep(1.0)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.setblocking(True)
    first = read_frame(sock)
    if not isinstance(first, tuple) or first[0] != "settings":
        sys.exit("meshplane xDS worker: no settings from the main process")
    _, settings, index, count, parent = first
    if os.getppid() != parent:
        sys.exit("meshplane xDS worker: the main process is gone")
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s [xds-worker-{index + 1}]: %(message)s",
    )
    # the main process handles Ctrl-C and SIGTERM, then stops its workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    started = time.monotonic()
    worker = Worker(settings, index, count, parent)
    log.debug("xDS worker %d built in %.1f s", index + 1, time.monotonic() - started)
    asyncio.run(worker.run(sock))


if __name__ == "__main__":
    main()
