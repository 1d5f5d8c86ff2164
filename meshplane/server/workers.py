"""``meshplane serve --xds-workers N``: N xDS serving processes on one port, kept by the main
process.

The main process keeps the API, the mesh DNS server and the fleet's duties; each worker
(:mod:`meshplane.server.worker`) binds the xDS port with ``SO_REUSEPORT`` (the kernel spreads
new connections over the workers), opens the store itself and follows its change feed, and
runs its own read model, control loop and translation for the proxies connected to it.

Between the main process and each worker: one private Unix socket pair, the worker's end its
only inherited descriptor; messages are length-prefixed pickles (both ends are this program).

- main -> worker: the settings (first), ``("revision", n)`` after each commit of the main
  process's store (SQLite: the worker catches up with the ``changes`` table from its own
  revision, so no change is missed or reordered; it also polls every second in case a
  notification is lost; PostgreSQL: it follows ``LISTEN/NOTIFY`` itself), the tap filters
  and their key, ``revoked`` (a proxy token was revoked: reload and end those streams),
  ``ca`` (a mesh CA rotated), and questions (``ask``): the proxies connected to it, its state
  (pid, revision, proxies), its ``/metrics`` text.
- worker -> main: ``ready``, answers, every telemetry flush of its proxies' metrics streams and
  every tapped access log entry: the main process's telemetry store and tap hub stay the only
  ones, so ``/metrics``, ``meshplane stat``/``top``/``tap`` and the console see every proxy.

No orphans: a worker exits when its end of the socket reads EOF (the main process is gone,
however it died: the kernel closes the main process's end) or its parent process changes.
A worker that exits while the main process runs is logged and started again (with a
backoff); its proxies reconnect (Envoy retries) and land on the workers that listen.

Built by :class:`meshplane.server.run.Application`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from meshplane.errors import LocalError
from meshplane.server.settings import Settings

log = logging.getLogger("meshplane")

_HEADER = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024
ASK_TIMEOUT = 5.0
START_TIMEOUT = 120.0


def pack(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def read_frame(sock: socket.socket) -> object | None:
    """The next message on a blocking socket, None at EOF."""
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"a {size}-byte frame from an xDS worker")
    data = _recv_exactly(sock, size)
    if data is None:
        return None
    message: object = pickle.loads(data)  # our own child process, over a private socket pair
    return message


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class WorkerGone(Exception):
    """The worker exited before it answered."""


class WorkersFailed(LocalError):
    """An xDS worker could not start (its own error is in the log before this one)."""


class _Worker:
    """One worker process and the main process's end of its socket."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.send_lock = threading.Lock()
        self.pending: dict[int, Future[Any]] = {}
        self.ready = threading.Event()
        self.port: int | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.telemetry_keys: set[Any] = set()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def send(self, message: object) -> bool:
        sock = self.sock
        if sock is None:
            return False
        data = pack(message)
        try:
            with self.send_lock:
                sock.sendall(data)
        except OSError:
            return False
        return True


class XdsWorkers:
    """The xDS worker processes of this server (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_flush: Callable[[int, Any, Any], None],
        on_tap: Callable[[Any, dict[str, Any]], None],
        on_gone: Callable[[int, set[Any]], None],
    ) -> None:
        self.settings = settings
        self.count = settings.xds.workers
        self.on_flush = on_flush
        self.on_tap = on_tap
        self.on_gone = on_gone
        self._workers = [_Worker(i) for i in range(self.count)]
        self._ids = itertools.count(1)
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._presence: dict[int, tuple[int | None, set[int]]] = {}
        """Per worker: its pid and the streams reported to the fleet's proxy table."""
        self._last: dict[str, object] = {}
        """The latest message of each kind every worker must know (taps), resent to a
        restarted worker."""

    # life cycle ---------------------------------------------------------------------------

    async def start(self) -> int:
        """Start every worker; return the xDS port once all of them listen."""
        self._loop = asyncio.get_running_loop()
        for worker in self._workers:
            self._spawn(worker)
        await asyncio.to_thread(self._wait_ready, self._workers)
        port = self._workers[0].port
        assert port is not None
        return port

    def _wait_ready(self, workers: list[_Worker]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for worker in workers:
            while not worker.ready.wait(0.1):
                process = worker.process
                if process is not None and process.poll() is not None:
                    raise WorkersFailed(
                        f"xDS worker {worker.index + 1} exited with status {process.returncode} "
                        "while starting (its error is in the log above)"
                    )
                if time.monotonic() > deadline:
                    raise WorkersFailed(
                        f"xDS worker {worker.index + 1} did not start within {START_TIMEOUT:g} s"
                    )

    def _spawn(self, worker: _Worker) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        worker.ready.clear()
        worker.port = None
        worker.sock = mine
        worker.started_at = time.time()
        worker.process = subprocess.Popen(
            [sys.executable, "-m", "meshplane.server.worker", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        worker.send(("settings", self.settings, worker.index, self.count, os.getpid()))
        for message in self._last.values():
            worker.send(message)
        threading.Thread(
            target=self._read,
            args=(worker, mine),
            name=f"xds-worker-{worker.index + 1}-reader",
            daemon=True,
        ).start()
        threading.Thread(
            target=self._supervise,
            args=(worker, worker.process),
            name=f"xds-worker-{worker.index + 1}-supervisor",
            daemon=True,
        ).start()

    def _supervise(self, worker: _Worker, process: subprocess.Popen[bytes]) -> None:
        """Wait for the worker to exit; unless the server stops, log it and start it again."""
        status = process.wait()
        if self._stopping:
            return
        pause = min(10.0, 0.5 * 2 ** min(worker.restarts, 5))
        if time.time() - worker.started_at > 60:
            pause = 0.5  # it ran for a while: a fresh failure, not a crash loop
        log.error(
            "xDS worker %d (pid %d) exited with status %s; its proxies reconnect to the other "
            "workers; starting it again in %.1f s",
            worker.index + 1,
            process.pid,
            status,
            pause,
        )
        time.sleep(pause)
        if self._stopping:
            return
        worker.restarts += 1
        self._spawn(worker)
        if worker.ready.wait(START_TIMEOUT):
            log.info("xDS worker %d started again (pid %s)", worker.index + 1, worker.pid)

    def _read(self, worker: _Worker, sock: socket.socket) -> None:
        try:
            while True:
                message = read_frame(sock)
                if message is None:
                    break
                self._dispatch(worker, message)
        except (OSError, ValueError, pickle.UnpicklingError) as error:
            if not self._stopping:
                log.warning("xDS worker %d: its channel failed (%s)", worker.index + 1, error)
        finally:
            sock.close()
            if worker.sock is sock:
                worker.sock = None
            for future in list(worker.pending.values()):
                if not future.done():
                    future.set_exception(WorkerGone(f"xDS worker {worker.index + 1} exited"))
            worker.pending.clear()
            keys, worker.telemetry_keys = worker.telemetry_keys, set()
            loop = self._loop
            if keys and loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self.on_gone, worker.index, keys)

    def _dispatch(self, worker: _Worker, message: Any) -> None:
        kind = message[0]
        loop = self._loop
        if kind == "answer":
            future = worker.pending.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message[2])
        elif kind == "ready":
            worker.port = message[1]
            worker.ready.set()
        elif kind == "flush" and loop is not None and not loop.is_closed():
            key, flush = message[1], message[2]
            if flush is None:
                worker.telemetry_keys.discard(key)
            else:
                worker.telemetry_keys.add(key)
            loop.call_soon_threadsafe(self.on_flush, worker.index, key, flush)
        elif kind == "tap" and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.on_tap, message[1], message[2])

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.to_thread(self._stop_all)

    def _stop_all(self) -> None:
        for worker in self._workers:
            worker.send(("stop",))
        deadline = time.monotonic() + 5.0
        for worker in self._workers:
            process = worker.process
            if process is None:
                continue
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if worker.sock is not None:
                worker.sock.close()

    # messages -----------------------------------------------------------------------------

    def broadcast(self, message: tuple[Any, ...], *, remember: str | None = None) -> None:
        """Send ``message`` to every worker (``remember``: also to a worker started later)."""
        if remember is not None:
            self._last[remember] = message
        for worker in self._workers:
            worker.send(message)

    def ask(self, what: str, timeout: float = ASK_TIMEOUT, **args: Any) -> list[tuple[int, Any]]:
        """``(worker index, answer)`` of every worker that answered within ``timeout``."""
        asked = []
        for worker in self._workers:
            if not worker.ready.is_set():
                continue
            request = next(self._ids)
            future: Future[Any] = Future()
            worker.pending[request] = future
            if worker.send(("ask", request, what, args)):
                asked.append((worker, request, future))
            else:
                worker.pending.pop(request, None)
        deadline = time.monotonic() + timeout
        answers = []
        for worker, request, future in asked:
            try:
                answers.append((worker.index, future.result(max(0.0, deadline - time.monotonic()))))
            except Exception as error:  # gone or too slow: it shows as not answering
                worker.pending.pop(request, None)
                log.warning("xDS worker %d did not answer %s: %s", worker.index + 1, what, error)
        return answers

    # what the main process shows ----------------------------------------------------------

    def statuses(self, *, mesh: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """The proxies connected to every worker, each with its ``worker`` (1..N)."""
        out: list[dict[str, Any]] = []
        for index, found in self.ask("statuses", mesh=mesh, name=name):
            out.extend({**status, "worker": index + 1} for status in found)
        return sorted(out, key=lambda status: int(status["stream"]))

    def states(self) -> list[dict[str, Any]]:
        """Every worker: its number, pid, whether it answers, its revision and proxies."""
        answers = dict(self.ask("state", timeout=2.0))
        out = []
        for worker in self._workers:
            state = answers.get(worker.index)
            out.append(
                {
                    "worker": worker.index + 1,
                    "pid": worker.pid,
                    "alive": state is not None,
                    "revision": state["revision"] if state else None,
                    "proxies": state["proxies"] if state else None,
                    "restarts": worker.restarts,
                    "startedAt": worker.started_at,
                }
            )
        return out

    def presence_resync(self) -> None:
        """The next :meth:`presence_changes` reports every proxy (the rows were withdrawn)."""
        self._presence = {}
        self.broadcast(("presence_resync",))

    def presence_changes(self) -> tuple[list[dict[str, Any]], set[int]]:
        """The proxies whose status changed since the last call, on any worker, and the
        streams that ended (a restarted worker's streams all did); raises when a serving
        worker does not answer (the caller withdraws the rows and starts over)."""
        serving = sum(1 for worker in self._workers if worker.ready.is_set())
        answers = dict(self.ask("presence"))
        if len(answers) < serving:
            raise WorkerGone("an xDS worker did not report its proxies")
        changed: list[dict[str, Any]] = []
        gone: set[int] = set()
        for worker in self._workers:
            pid, streams = self._presence.get(worker.index, (worker.pid, set()))
            if pid != worker.pid:  # started again: its earlier proxies are gone
                gone |= streams
                streams = set()
            answer = answers.get(worker.index)
            if answer is not None:
                found, ended = answer
                changed.extend({**status, "worker": worker.index + 1} for status in found)
                gone |= set(ended)
                streams = (streams | {int(status["stream"]) for status in found}) - set(ended)
            self._presence[worker.index] = (worker.pid, streams)
        return changed, gone

    def pids(self) -> list[int]:
        return [pid for worker in self._workers if (pid := worker.pid) is not None]


class WorkerMetrics(Collector):
    """The workers' ``/metrics`` (xDS streams, translations, publish times...), summed over
    the workers sample by sample, in the main process's ``/metrics``."""

    def __init__(self, workers: XdsWorkers) -> None:
        self.workers = workers
        self._texts: list[str] = []

    async def refresh(self) -> None:
        """Ask the workers for their metrics in a thread (a hung worker is waited for up to
        :data:`ASK_TIMEOUT` there, not on the event loop); :meth:`collect` sums what came."""
        answers = await asyncio.to_thread(self.workers.ask, "metrics")
        self._texts = [text for _, text in answers]

    def describe(self) -> list[Metric]:
        return []  # families known only once the workers answer

    def collect(self) -> Iterator[Metric]:
        """The sums of the workers' metrics as of the last :meth:`refresh`."""
        families: dict[str, Metric] = {}
        totals: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for text in self._texts:
            for family in text_string_to_metric_families(text):
                found = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                sums = totals.setdefault(found.name, {})
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    sums[key] = sums.get(key, 0.0) + sample.value
        for name, family in families.items():
            for (sample_name, labels), value in totals[name].items():
                family.add_sample(sample_name, dict(labels), value)
            yield family
