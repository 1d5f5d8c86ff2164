"""Watching a running control plane while something attacks it.

:class:`HealthWatch` runs a client of its own in a thread: every ``interval`` it asks
``/healthz`` and makes one App Mesh call (``ListMeshes``), each on a fresh connection with its
own generous timeout, and samples the server process's resident memory.  After the attack,
``problems()`` says which probes failed or went unanswered past ``bound`` seconds; the
abuse tests assert it is empty ("answered within a generous bound"), and ``bench.abuse``
reports the latency percentiles and the peak memory against an idle baseline.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx


def rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0
    return 0


@dataclass
class HealthWatch:
    url: str
    pid: int
    interval: float = 0.05
    bound: float = 10.0
    """Seconds a probe may take before it counts as unanswered (generous on purpose)."""
    headers: dict[str, str] = field(default_factory=dict)
    ok_statuses: frozenset[int] = frozenset({200})
    """Answers that count as answered (a connection flood may rightly be answered 503)."""
    healthz: list[float] = field(default_factory=list)
    api: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    peak_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthWatch:
        self._thread = threading.Thread(target=self._run, name="health-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.bound * 3)
            self._thread = None

    def _probe(self, path: str, into: list[float]) -> None:
        started = time.perf_counter()
        try:
            # a new connection each time: a server that stopped accepting must show it
            with httpx.Client(timeout=self.bound, headers=self.headers) as client:
                response = client.get(f"{self.url}{path}")
        except httpx.HTTPError as error:
            self.failures.append(f"GET {path}: {type(error).__name__}: {error}")
            return
        elapsed = time.perf_counter() - started
        if response.status_code not in self.ok_statuses:
            self.failures.append(f"GET {path}: HTTP {response.status_code} {response.text[:200]}")
            return
        into.append(elapsed)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, rss_bytes(self.pid))
            self._probe("/healthz", self.healthz)
            self._probe("/v20190125/meshes", self.api)
            self._stop.wait(self.interval)
        self.peak_rss = max(self.peak_rss, rss_bytes(self.pid))

    def problems(self) -> list[str]:
        """Why the server did not stay healthy (empty: every probe answered in time)."""
        found = list(self.failures)
        slow = [t for t in self.healthz + self.api if t > self.bound]
        if slow:
            found.append(f"{len(slow)} probe(s) took longer than {self.bound} s")
        if not self.healthz or not self.api:
            found.append("no probe completed while the attack ran")
        return found

    def p99(self) -> float:
        """The 99th percentile of the /healthz latencies, in seconds."""
        ordered = sorted(self.healthz)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
