"""The control plane's bounded memory of what every proxy reported.

:class:`ProxyWindow` keeps the last ``capacity`` flushes of one reporting proxy (15 minutes at
5 s by default) plus running totals of its histograms (for ``/metrics``).
:class:`TelemetryStore` holds one window per reporting proxy instance, keyed by the
*authenticated* identity of its stream and the instance (the admin address or workload address
the bootstrap wrote; several replicas of one virtual node are several instances), at most
``max_proxies`` of them; a window whose proxy stopped reporting is kept (and shown as not
reporting) until it is older than the window, then forgotten.

Not thread-safe: used from the server's event loop only.  Built by the server wiring; fed by
:mod:`meshplane.telemetry.service`; read by :mod:`meshplane.telemetry.signals`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from meshplane.telemetry.stats import Flush, Series


@dataclass(frozen=True, slots=True)
class ProxyKey:
    """Who reported: the proxy's identity (from its authenticated stream) and instance."""

    mesh: str
    kind: str
    """``virtualNode`` or ``virtualGateway``."""
    name: str
    instance: str


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """How much is kept: ``capacity`` flushes per proxy (the window over the proxies' flush
    interval), ``max_proxies`` proxies, at most ``max_series`` series per proxy; a proxy silent
    for ``stale_after`` seconds is shown as not reporting.  The streams' bounds:
    ``max_message`` bytes per metrics or access log message, flushes closer together than
    ``min_interval`` seconds dropped unread, at most ``max_taps`` taps at once, each buffering
    up to ``tap_queue`` entries for a slow reader.

    Declared once as ``meshplane serve`` settings (``--telemetry-*``, ``--tap-*``) in
    :mod:`meshplane.server.settings`; the defaults here are theirs."""

    capacity: int = 180
    max_proxies: int = 10_000
    max_series: int = 2_000
    stale_after: float = 15.0
    flush_interval: float = 5.0
    max_message: int = 4 * 1024 * 1024
    min_interval: float = 0.5
    max_taps: int = 16
    tap_queue: int = 1000

    @classmethod
    def of(cls, window: float, resolution: float, **given: Any) -> TelemetrySettings:
        """Settings keeping ``window`` seconds of flushes made every ``resolution`` seconds
        (``given``: the other fields)."""
        capacity = max(1, round(window / resolution))
        return cls(capacity=capacity, flush_interval=resolution, **given)


class ProxyWindow:
    """The recent flushes of one proxy instance."""

    def __init__(self, key: ProxyKey, capacity: int) -> None:
        self.key = key
        self.flushes: deque[Flush] = deque(maxlen=capacity)
        self.totals: dict[Series, tuple[tuple[float, ...], list[int]]] = {}
        """Running histogram totals (bounds, per-bucket counts + overflow), for ``/metrics``."""
        self.sums: dict[Series, float] = {}
        self.connected = True
        self.last_seen = 0.0
        self.dropped = 0

    def add(self, flush: Flush) -> None:
        self.flushes.append(flush)
        self.last_seen = flush.at
        self.dropped += flush.dropped
        for series, value in flush.sums.items():
            self.sums[series] = self.sums.get(series, 0.0) + value
        for series, (bounds, counts) in flush.histograms.items():
            total = self.totals.get(series)
            if total is None or total[0] != bounds:
                self.totals[series] = (bounds, list(counts))
            else:
                for i, count in enumerate(counts):
                    total[1][i] += count

    def latest(self) -> Flush | None:
        return self.flushes[-1] if self.flushes else None


class TelemetryStore:
    """Every proxy's window (see the module docstring)."""

    def __init__(
        self, settings: TelemetrySettings | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings or TelemetrySettings()
        self.clock = clock
        self._windows: dict[ProxyKey, ProxyWindow] = {}
        self.refused_proxies = 0

    def window(self, key: ProxyKey) -> ProxyWindow | None:
        """The window of ``key``, made if there is room (None when ``max_proxies`` are
        already kept and none can be forgotten)."""
        found = self._windows.get(key)
        if found is not None:
            return found
        if len(self._windows) >= self.settings.max_proxies:
            self.forget_old()
            if len(self._windows) >= self.settings.max_proxies:
                self.refused_proxies += 1
                return None
        found = self._windows[key] = ProxyWindow(key, self.settings.capacity)
        return found

    def forget_old(self) -> None:
        """Drop the windows of proxies that stopped reporting longer ago than the window."""
        horizon = self.clock() - self.settings.capacity * self.settings.flush_interval
        for key, window in list(self._windows.items()):
            if not window.connected and window.last_seen < horizon:
                del self._windows[key]

    def windows(self, mesh: str | None = None) -> Iterator[ProxyWindow]:
        for window in list(self._windows.values()):
            if mesh is None or window.key.mesh == mesh:
                yield window

    def reporting(self, window: ProxyWindow) -> bool:
        """Whether the proxy reported within ``stale_after`` seconds on an open stream."""
        return window.connected and self.clock() - window.last_seen <= self.settings.stale_after

    def __len__(self) -> int:
        return len(self._windows)
