"""Prometheus metrics of the ADS server, registered on an injected ``CollectorRegistry``.

- ``meshplane_xds_connected_proxies``: open ADS streams.
- ``meshplane_xds_pushes_total{type}``: responses sent.
- ``meshplane_xds_nacks_total{type}``: responses Envoy rejected.
- ``meshplane_xds_push_ack_seconds{type}``: time from sending a response to its ACK.

Never touches the process-wide default registry.  Created by :class:`XdsServer`; updated by the
streams.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from meshplane.xds import types

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class XdsMetrics:
    """The ADS server's collectors."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(
            "meshplane_xds_connected_proxies", "Open ADS streams.", registry=registry
        )
        self.pushes = Counter(
            "meshplane_xds_pushes", "xDS responses sent.", ["type"], registry=registry
        )
        self.nacks = Counter(
            "meshplane_xds_nacks", "xDS responses rejected by Envoy.", ["type"], registry=registry
        )
        self.ack_latency = Histogram(
            "meshplane_xds_push_ack_seconds",
            "Seconds from sending an xDS response to its ACK.",
            ["type"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

        self._pushes: dict[str, Counter] = {}
        self._acks: dict[str, Histogram] = {}
        """Each type's child collectors, looked up once (a push and an ACK per proxy per
        update: the label lookup showed in profiles at 10,000 proxies)."""

    def pushed(self, type_url: str) -> None:
        child = self._pushes.get(type_url)
        if child is None:
            child = self._pushes[type_url] = self.pushes.labels(type=types.short_name(type_url))
        child.inc()

    def nacked(self, type_url: str) -> None:
        self.nacks.labels(type=types.short_name(type_url)).inc()

    def acked(self, type_url: str, seconds: float) -> None:
        child = self._acks.get(type_url)
        if child is None:
            child = self._acks[type_url] = self.ack_latency.labels(type=types.short_name(type_url))
        child.observe(seconds)
