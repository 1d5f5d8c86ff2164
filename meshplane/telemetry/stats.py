"""Envoy stat names -> the series the golden signals are made of (pure; no I/O).

One flush of a proxy (a ``StreamMetricsMessage``) becomes one :class:`Flush`: the counters
and gauges it reports for the series meshplane knows, and the histograms of the flush interval
(Envoy's metrics service sends counters cumulative and histograms per interval).  Three kinds
of series, told apart by the names translation gives Envoy's resources
(:mod:`meshplane.translate.names`):

- ``edge``: ``cluster.cds_egress_<mesh>_<node>_<proto>_<port>.*`` — what the proxy sent to a
  destination virtual node (one series per node: ports are summed);
- ``route``: ``vhost.<vhost>.route.<service>/<router>/<route>.*`` — what the proxy sent
  through one App Mesh route of a backend service (``<service>//`` for a virtual node
  provider), whatever node answered;
- ``inbound``: ``cluster.cds_ingress_<mesh>_<self>_<proto>_<port>.*`` — what the proxy's own
  application answered.

Only the proxy's own mesh is read (egress clusters of another mesh are ignored) and only its
own ingress clusters: a proxy cannot report traffic of resources it does not run as.  At most
``max_series`` series per flush are kept; the rest are counted as dropped.

A window keeps every flush of a proxy for 15 minutes, so what a flush holds is shared where it
can be: equal series keys and histogram bounds are one object across flushes and proxies
(:func:`_shared`, a bounded table), leaving a flush only its numbers.

Called by :mod:`meshplane.telemetry.window`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

SeriesKind = Literal["edge", "route", "inbound"]

COUNTERS = {
    "upstream_rq_total": "rq",
    "upstream_rq_1xx": "rq_1xx",
    "upstream_rq_2xx": "rq_2xx",
    "upstream_rq_3xx": "rq_3xx",
    "upstream_rq_4xx": "rq_4xx",
    "upstream_rq_5xx": "rq_5xx",
    "upstream_cx_total": "cx",
    "upstream_cx_tx_bytes_total": "tx",
    "upstream_cx_rx_bytes_total": "rx",
    "ssl.handshake": "tls",
}
"""Envoy counter suffix -> our short name."""
GAUGES = {"upstream_cx_active": "cx_active"}
HISTOGRAM = "upstream_rq_time"
CODE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

_CLUSTER = re.compile(r"^cluster\.cds_(?P<way>egress|ingress)_(?P<rest>.+)$")
_SUFFIXES = sorted([*COUNTERS, *GAUGES, HISTOGRAM], key=len, reverse=True)
_PORTED = re.compile(r"^(?P<node>.+)_(?:http|http2|grpc|tcp)_\d+$")
_ROUTE = re.compile(r"^vhost\..+?\.route\.(?P<prefix>[^/]+/[^/]*/[^/]*)\.(?P<stat>[\w.]+)$")


@dataclass(frozen=True, slots=True)
class Series:
    """One thing the golden signals are kept for (see the module docstring)."""

    kind: SeriesKind
    node: str = ""
    """``edge``: the destination virtual node; ``inbound``: the proxy's own."""
    service: str = ""
    router: str = ""
    route: str = ""


@dataclass(slots=True)
class Flush:
    """The values of one flush: ``values[(series, name)]`` for counters (cumulative) and
    gauges; ``histograms[series]`` = (bucket upper bounds in ms, per-bucket counts of the
    interval, count past the last bound)."""

    at: float
    values: dict[tuple[Series, str], float] = field(default_factory=dict)
    histograms: dict[Series, tuple[tuple[float, ...], tuple[int, ...]]] = field(
        default_factory=dict
    )
    sums: dict[Series, float] = field(default_factory=dict)
    """The histograms' sums of the interval (ms)."""
    dropped: int = 0
    uptime: float | None = None
    """Envoy's ``server.uptime`` (seconds since the process started), when sent."""


def _split(name: str) -> tuple[str, str] | None:
    """``(head, suffix)`` of a stat name ending in a suffix we read."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name[-len(suffix) - 1 : -len(suffix)] == ".":
            return name[: -len(suffix) - 1], suffix
    return None


def series_of(name: str, mesh: str, kind: str, own: str) -> tuple[Series, str] | None:
    """The series and Envoy stat suffix of a stat name, or None when it is not one we read or
    not the reporting proxy's to report (``kind``/``own``: what the proxy runs as)."""
    if name.startswith("vhost."):
        match = _ROUTE.match(name)
        if match is None or (match["stat"] not in COUNTERS and match["stat"] != HISTOGRAM):
            return None
        service, router, route = match["prefix"].split("/")
        return Series("route", service=service, router=router, route=route), match["stat"]
    if not name.startswith("cluster.cds_"):
        return None
    split = _split(name)
    if split is None:
        return None
    head, suffix = split
    match = _CLUSTER.match(head)
    if match is None or not match["rest"].startswith(mesh + "_"):
        return None
    ported = _PORTED.match(match["rest"][len(mesh) + 1 :])
    if ported is None:
        return None
    node = ported["node"]
    if match["way"] == "ingress":
        if kind != "virtualNode" or node != own:
            return None
        return Series("inbound", node=node), suffix
    return Series("edge", node=node), suffix


_SHARED: dict[Any, Any] = {}
_SHARED_LIMIT = 100_000


def _shared(value: Any) -> Any:
    """The one kept object equal to ``value`` (hashable); the table is emptied when full, which
    only loses sharing.  Used from the server's event loop only."""
    found = _SHARED.get(value)
    if found is None:
        if len(_SHARED) >= _SHARED_LIMIT:
            _SHARED.clear()
        found = _SHARED[value] = value
    return found


def read_flush(families: Any, at: float, mesh: str, kind: str, own: str, max_series: int) -> Flush:
    """One :class:`Flush` from a message's ``envoy_metrics`` (``MetricFamily`` messages)."""
    flush = Flush(at)
    seen: set[Series] = set()
    for family in families:
        if family.name == "server.uptime" and family.metric:
            uptime = family.metric[0].gauge.value
            flush.uptime = uptime if 0 <= uptime < 1e10 else None
            continue
        found = series_of(family.name, mesh, kind, own)
        if found is None or not family.metric:
            continue
        series, suffix = found
        series = _shared(series)
        if series not in seen:
            if len(seen) >= max_series:
                flush.dropped += 1
                continue
            seen.add(series)
        metric = family.metric[0]
        if suffix == HISTOGRAM:
            if not metric.HasField("histogram"):
                continue
            bounds, counts = _buckets(metric.histogram)
            bounds = _shared(bounds)
            old = flush.histograms.get(series)
            if old is not None and old[0] == bounds:  # two ports of one node: add them
                counts = tuple(a + b for a, b in zip(old[1], counts, strict=True))
            flush.histograms[series] = (bounds, counts)
            total = float(metric.histogram.sample_sum)
            if total == total and total >= 0:
                flush.sums[series] = flush.sums.get(series, 0.0) + total
            continue
        short = COUNTERS.get(suffix) or GAUGES[suffix]
        value = metric.counter.value if suffix in COUNTERS else metric.gauge.value
        if value != value or value < 0:  # NaN or negative: not a stat Envoy sends
            continue
        key = _shared((series, short))
        flush.values[key] = flush.values.get(key, 0.0) + value
    return flush


_MAX_BUCKETS = 64


def _buckets(histogram: Any) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Bucket bounds and per-bucket (not cumulative) counts, plus one overflow count."""
    bounds: list[float] = []
    counts: list[int] = []
    previous = 0
    for bucket in histogram.bucket[:_MAX_BUCKETS]:
        cumulative = max(int(bucket.cumulative_count), previous)
        bounds.append(float(bucket.upper_bound))
        counts.append(cumulative - previous)
        previous = cumulative
    counts.append(max(int(histogram.sample_count) - previous, 0))
    return tuple(bounds), tuple(counts)
