"""Golden signals from the proxies' windows (pure functions of a :class:`TelemetryStore`).

For a time range (the last ``seconds``), each proxy's counters give deltas between the last
flush and the last one at or before the range start — or, when the proxy started inside the
range (Envoy's ``server.uptime``), everything it counted (a counter that went down — Envoy
restarted — counts from zero); its histograms are the sum of the flush intervals in the range.
Signals per source are then summed over the instances of that source:

- :func:`edges`: one :class:`Signal` per (source proxy, series) — ``route`` series are the
  source -> virtual service / route edges, ``edge`` series the source -> virtual node edges;
- :func:`nodes`: one per virtual node, from what its own proxies' ingress answered.

A source none of whose instances reports any more is still listed, with ``reporting`` False
and no numbers (never as zero traffic).  Quantiles interpolate within Envoy's histogram bucket.

Used by :mod:`meshplane.telemetry.exposition`, the telemetry HTTP API and the console.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshplane.telemetry.stats import CODE_CLASSES, Series
from meshplane.telemetry.window import ProxyWindow, TelemetryStore

QUANTILES = (0.5, 0.9, 0.99)


@dataclass(slots=True)
class Signal:
    """The golden signals of one edge or node over a time range."""

    mesh: str
    source_kind: str
    source: str
    series: Series
    reporting: bool = False
    seconds: float = 0.0
    counts: dict[str, float] = field(default_factory=dict)
    """Deltas of the counters (``rq``, ``rq_5xx``, ``cx``, ``tx``, ``rx``, ``tls``...)."""
    active_connections: float = 0.0
    bounds: tuple[float, ...] = ()
    buckets: list[int] = field(default_factory=list)

    @property
    def requests(self) -> float:
        return self.counts.get("rq", 0.0)

    def rate(self) -> float | None:
        if not self.reporting or self.seconds <= 0:
            return None
        return self.requests / self.seconds

    def error_rate(self) -> float | None:
        if not self.reporting or self.requests <= 0:
            return None
        return self.counts.get("rq_5xx", 0.0) / self.requests

    def quantile(self, q: float) -> float | None:
        return quantile(self.bounds, self.buckets, q) if self.reporting else None

    def to_json(self) -> dict[str, Any]:
        series = self.series
        rate = self.rate()
        errors = self.error_rate()
        return {
            "mesh": self.mesh,
            "sourceKind": self.source_kind,
            "source": self.source,
            "kind": series.kind,
            "destinationService": series.service or None,
            "router": series.router or None,
            "route": series.route or None,
            "destinationNode": series.node or None,
            "reporting": self.reporting,
            "seconds": round(self.seconds, 3),
            "requests": int(self.requests) if self.reporting else None,
            "rate": round(rate, 4) if rate is not None else None,
            "errorRate": round(errors, 6) if errors is not None else None,
            "responseCodes": (
                {c: int(self.counts.get(f"rq_{c}", 0)) for c in CODE_CLASSES}
                if self.reporting
                else None
            ),
            "latencyMs": {f"p{round(q * 100)}": self.quantile(q) for q in QUANTILES},
            "tcp": {
                "connections": int(self.counts.get("cx", 0)),
                "activeConnections": int(self.active_connections),
                "bytesSent": int(self.counts.get("tx", 0)),
                "bytesReceived": int(self.counts.get("rx", 0)),
            }
            if self.reporting and series.kind != "route"
            else None,
            "mtls": self.counts.get("tls", 0) > 0 or self.counts.get("tls_total", 0) > 0,
        }


def quantile(bounds: Sequence[float], buckets: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (ms) of per-bucket counts (the last one past the last bound),
    interpolated linearly within its bucket; None without samples."""
    total = sum(buckets)
    if total <= 0 or not bounds:
        return None
    rank = q * total
    seen = 0.0
    lower = 0.0
    for i, count in enumerate(buckets):
        upper = bounds[i] if i < len(bounds) else bounds[-1]
        if count and seen + count >= rank:
            fraction = (rank - seen) / count
            return round(lower + (upper - lower) * fraction, 3)
        seen += count
        lower = upper
    return float(bounds[-1])


def _delta(
    window: ProxyWindow, since: float
) -> tuple[
    float, dict[tuple[Series, str], float], dict[Series, tuple[tuple[float, ...], list[int]]]
]:
    flushes = window.flushes
    if not flushes:
        return 0.0, {}, {}
    last = flushes[-1]
    base = None
    histograms: dict[Series, tuple[tuple[float, ...], list[int]]] = {}
    for flush in reversed(flushes):
        if flush.at <= since and flush is not last:
            base = flush
            break
        for series, (bounds, counts) in flush.histograms.items():
            found = histograms.get(series)
            if found is None or found[0] != bounds:
                histograms[series] = (bounds, list(counts))
            else:
                for i, count in enumerate(counts):
                    found[1][i] += count
    first = flushes[0]
    started = None  # when the proxy started, if that is inside the range
    if base is None and first.uptime is not None and first.at - first.uptime >= since:
        started = first.at - first.uptime
    if base is None:
        base = first
        if started is None and base is not last:  # its interval began before the range
            for series, (bounds, counts) in base.histograms.items():
                found = histograms.get(series)
                if found is not None and found[0] == bounds:
                    for i, count in enumerate(counts):
                        found[1][i] -= count
    values: dict[tuple[Series, str], float] = {}
    for key, value in last.values.items():
        if key[1] == "cx_active":
            values[key] = value
            continue
        before = base.values.get(key, 0.0) if base is not last and started is None else 0.0
        values[key] = value - before if value >= before else value
    if started is not None:  # the proxy started in the range: everything it counted
        return last.at - started, values, histograms
    if base is last:  # one flush only: totals since the proxy started, no rate
        return 0.0, {k: v for k, v in values.items() if k[1] == "cx_active"}, {}
    return last.at - base.at, values, histograms


def _signals(
    store: TelemetryStore, windows: Iterable[ProxyWindow], seconds: float
) -> dict[tuple[str, str, str, Series], Signal]:
    since = store.clock() - seconds
    out: dict[tuple[str, str, str, Series], Signal] = {}
    for window in windows:
        key = window.key
        reporting = store.reporting(window)
        span, values, histograms = _delta(window, since) if reporting else (0.0, {}, {})
        names = {s for s, _ in values} | set(histograms)
        if not reporting:  # still list what it last reported, without numbers
            latest = window.latest()
            names = {s for s, _ in latest.values} if latest is not None else set()
        for series in names:
            signal = out.get((key.mesh, key.kind, key.name, series))
            if signal is None:
                signal = out[(key.mesh, key.kind, key.name, series)] = Signal(
                    key.mesh, key.kind, key.name, series
                )
            if not reporting:
                continue
            signal.reporting = True
            signal.seconds = max(signal.seconds, span)
            for (s, name), value in values.items():
                if s != series:
                    continue
                if name == "cx_active":
                    signal.active_connections += value
                else:
                    signal.counts[name] = signal.counts.get(name, 0.0) + value
            found = histograms.get(series)
            if found is not None:
                bounds, counts = found
                if signal.bounds in ((), bounds):
                    signal.bounds = bounds
                    if not signal.buckets:
                        signal.buckets = [0] * len(counts)
                    for i, count in enumerate(counts):
                        signal.buckets[i] += max(count, 0)
        latest = window.latest()
        if latest is not None:  # mTLS: any TLS handshake on the edge since the proxy started
            for (s, name), value in latest.values.items():
                if name == "tls" and value > 0:
                    signal = out.get((key.mesh, key.kind, key.name, s))
                    if signal is not None:
                        signal.counts["tls_total"] = value
    return out


def edges(store: TelemetryStore, mesh: str | None = None, seconds: float = 60.0) -> list[Signal]:
    """Every edge's signals over the last ``seconds`` (see the module docstring)."""
    found = _signals(store, store.windows(mesh), seconds)
    return sorted(
        (s for s in found.values() if s.series.kind != "inbound"),
        key=lambda s: (
            s.mesh,
            s.source,
            s.series.kind,
            s.series.service,
            s.series.route,
            s.series.node,
        ),
    )


def nodes(store: TelemetryStore, mesh: str | None = None, seconds: float = 60.0) -> list[Signal]:
    """Every virtual node's inbound signals over the last ``seconds``."""
    found = _signals(store, store.windows(mesh), seconds)
    return sorted(
        (s for s in found.values() if s.series.kind == "inbound"),
        key=lambda s: (s.mesh, s.source),
    )


def proxies(store: TelemetryStore, mesh: str | None = None) -> list[dict[str, Any]]:
    """Every reporting (or lately reporting) proxy instance."""
    now = store.clock()
    return [
        {
            "mesh": w.key.mesh,
            "kind": w.key.kind,
            "name": w.key.name,
            "instance": w.key.instance,
            "reporting": store.reporting(w),
            "lastReportSecondsAgo": round(now - w.last_seen, 3) if w.last_seen else None,
            "droppedSeries": w.dropped,
            "flushes": len(w.flushes),
            "windowSeconds": round(w.flushes[-1].at - w.flushes[0].at, 3) if w.flushes else 0.0,
        }
        for w in sorted(store.windows(mesh), key=lambda w: (w.key.mesh, w.key.name))
    ]
