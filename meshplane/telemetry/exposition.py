"""The mesh's golden signals on ``/metrics`` (Prometheus text), from the telemetry store.

Series of reporting proxies only (a proxy that stopped reporting loses its series, so rates
go absent rather than to zero; ``meshplane_proxy_reporting`` says which):

- ``meshplane_requests_total{mesh, source_kind, source_node, destination_service, route,
  destination_node, response_code_class}``: requests a proxy sent, by response class.  A series
  with ``destination_node`` set is a source -> virtual node edge (the cluster); one with
  ``destination_service`` set and ``destination_node=""`` is a source -> virtual service /
  route edge (``route`` is ``<router>/<route>``, empty for a virtual node provider).
- ``meshplane_request_duration_milliseconds{...same but the class}``: Envoy's
  ``upstream_rq_time`` histogram, with Envoy's bucket bounds.
- ``meshplane_tcp_connections_total``, ``meshplane_tcp_sent_bytes_total``,
  ``meshplane_tcp_received_bytes_total``, ``meshplane_tcp_active_connections`` and
  ``meshplane_edge_mtls`` (1: TLS handshakes on the edge) per source -> virtual node edge.
- ``meshplane_inbound_requests_total{mesh, destination_node, response_code_class}`` and
  ``meshplane_inbound_request_duration_milliseconds``: what a node's application answered.
- ``meshplane_proxy_reporting{mesh, kind, proxy, instance}`` (1/0) and
  ``meshplane_proxy_report_age_seconds``.

:data:`METRIC_NAMES` lists them (the Grafana dashboard in ``docs/`` is tested against it).
Registered on the server's registry by the server wiring.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from meshplane.telemetry.stats import CODE_CLASSES, Series
from meshplane.telemetry.window import TelemetryStore

EDGE_LABELS = (
    "mesh",
    "source_kind",
    "source_node",
    "destination_service",
    "route",
    "destination_node",
)
METRIC_NAMES = (
    "meshplane_requests_total",
    "meshplane_request_duration_milliseconds",
    "meshplane_tcp_connections_total",
    "meshplane_tcp_sent_bytes_total",
    "meshplane_tcp_received_bytes_total",
    "meshplane_tcp_active_connections",
    "meshplane_edge_mtls",
    "meshplane_inbound_requests_total",
    "meshplane_inbound_request_duration_milliseconds",
    "meshplane_proxy_reporting",
    "meshplane_proxy_report_age_seconds",
)


def _labels(mesh: str, kind: str, source: str, series: Series) -> list[str]:
    route = f"{series.router}/{series.route}" if series.router else ""
    return [mesh, kind, source, series.service, route, series.node]


def _buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip(bounds, counts, strict=False):
        total += count
        out.append((repr(float(bound)), float(total)))
    out.append(("+Inf", float(sum(counts))))
    return out


class TelemetryCollector:
    """A prometheus_client collector over a :class:`TelemetryStore`."""

    def __init__(self, store: TelemetryStore) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        store = self.store
        requests = CounterMetricFamily(
            "meshplane_requests",
            "Requests sent from a mesh proxy to a virtual service route or virtual node.",
            labels=[*EDGE_LABELS, "response_code_class"],
        )
        durations = HistogramMetricFamily(
            "meshplane_request_duration_milliseconds",
            "Upstream request time seen by the sending proxy (Envoy upstream_rq_time).",
            labels=list(EDGE_LABELS),
        )
        tcp_labels = ["mesh", "source_kind", "source_node", "destination_node"]
        connections = CounterMetricFamily(
            "meshplane_tcp_connections", "Connections opened to a virtual node.", labels=tcp_labels
        )
        sent = CounterMetricFamily(
            "meshplane_tcp_sent_bytes", "Bytes sent to a virtual node.", labels=tcp_labels
        )
        received = CounterMetricFamily(
            "meshplane_tcp_received_bytes", "Bytes received from a virtual node.", labels=tcp_labels
        )
        active = GaugeMetricFamily(
            "meshplane_tcp_active_connections",
            "Open connections to a virtual node.",
            labels=tcp_labels,
        )
        mtls = GaugeMetricFamily(
            "meshplane_edge_mtls", "1 when the edge's connections use TLS.", labels=tcp_labels
        )
        inbound = CounterMetricFamily(
            "meshplane_inbound_requests",
            "Requests a virtual node's application answered, through its sidecar.",
            labels=["mesh", "destination_node", "response_code_class"],
        )
        inbound_durations = HistogramMetricFamily(
            "meshplane_inbound_request_duration_milliseconds",
            "Time a virtual node's application took, seen by its sidecar.",
            labels=["mesh", "destination_node"],
        )
        reporting = GaugeMetricFamily(
            "meshplane_proxy_reporting",
            "1 while a proxy streams its stats to the control plane, 0 once it stopped.",
            labels=["mesh", "kind", "proxy", "instance"],
        )
        age = GaugeMetricFamily(
            "meshplane_proxy_report_age_seconds",
            "Seconds since a proxy's last stats flush.",
            labels=["mesh", "kind", "proxy", "instance"],
        )
        values: dict[tuple[str, ...], float] = {}
        histograms: dict[tuple[str, ...], tuple[tuple[float, ...], list[int]]] = {}
        sums: dict[tuple[str, ...], float] = {}
        now = store.clock()
        for window in store.windows():
            key = window.key
            who = [key.mesh, key.kind, key.name, key.instance]
            up = store.reporting(window)
            reporting.add_metric(who, 1.0 if up else 0.0)
            age.add_metric(who, max(now - window.last_seen, 0.0))
            latest = window.latest()
            if not up or latest is None:
                continue
            for (series, name), value in latest.values.items():
                _add(
                    values,
                    (series.kind, name, *_labels(key.mesh, key.kind, key.name, series)),
                    value,
                )
            for series, (bounds, counts) in window.totals.items():
                labels = (series.kind, *_labels(key.mesh, key.kind, key.name, series))
                _add(sums, labels, window.sums.get(series, 0.0))
                found = histograms.get(labels)
                if found is None or found[0] != bounds:
                    histograms[labels] = (bounds, list(counts))
                else:
                    for i, count in enumerate(counts):
                        found[1][i] += count
        for row, value in sorted(values.items()):
            _emit(
                row[0],
                row[1],
                list(row[2:]),
                value,
                requests,
                inbound,
                connections,
                sent,
                received,
                active,
                mtls,
            )
        for hkey, (bounds, counts) in sorted(histograms.items()):
            kind, names = hkey[0], list(hkey[1:])
            buckets = _buckets(bounds, counts)
            total = sums.get(hkey, 0.0)
            if kind == "inbound":
                inbound_durations.add_metric([names[0], names[5]], buckets, total)
            else:
                durations.add_metric(names, buckets, total)
        yield from (
            requests,
            durations,
            connections,
            sent,
            received,
            active,
            mtls,
            inbound,
            inbound_durations,
            reporting,
            age,
        )


def _add(values: dict[tuple[str, ...], float], key: tuple[str, ...], value: float) -> None:
    values[key] = values.get(key, 0.0) + value


def _emit(kind: str, name: str, labels: list[str], value: float, *families: Any) -> None:
    requests, inbound, connections, sent, received, active, mtls = families
    if name.startswith("rq_") and name[3:] in CODE_CLASSES:
        if kind == "inbound":
            inbound.add_metric([labels[0], labels[5], name[3:]], value)
        else:
            requests.add_metric([*labels, name[3:]], value)
        return
    if kind != "edge":
        return
    tcp = [labels[0], labels[1], labels[2], labels[5]]
    if name == "cx":
        connections.add_metric(tcp, value)
    elif name == "tx":
        sent.add_metric(tcp, value)
    elif name == "rx":
        received.add_metric(tcp, value)
    elif name == "cx_active":
        active.add_metric(tcp, value)
    elif name == "tls":
        mtls.add_metric(tcp, 1.0 if value > 0 else 0.0)
