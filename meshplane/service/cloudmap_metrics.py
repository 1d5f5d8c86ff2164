"""Prometheus gauges of the Cloud Map registry (namespaces, services, instances by health).

:class:`RegistryCollector` reads the store at scrape time; registered on the metrics registry
by :mod:`meshplane.server.run`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meshplane.store import registry
from meshplane.store.protocols import Store


class RegistryCollector(Collector):
    """Prometheus gauges of the registry, read from the store at scrape time:
    ``meshplane_registry_namespaces``, ``meshplane_registry_services`` and
    ``meshplane_registry_instances{health}`` (lapsed leases count as UNHEALTHY)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        services = registry.services(self.store)
        namespaces = GaugeMetricFamily(
            "meshplane_registry_namespaces", "Cloud Map namespaces in the registry"
        )
        namespaces.add_metric([], len(registry.namespaces(self.store)))
        yield namespaces
        service_count = GaugeMetricFamily(
            "meshplane_registry_services", "Cloud Map services in the registry"
        )
        service_count.add_metric([], len(services))
        yield service_count
        health: dict[str, int] = {registry.HEALTHY: 0, registry.UNHEALTHY: 0, registry.UNKNOWN: 0}
        for service in services:
            for instance in registry.instances(self.store, service):
                health[instance.health] = health.get(instance.health, 0) + 1
        instances = GaugeMetricFamily(
            "meshplane_registry_instances",
            "Registered Cloud Map instances, by health status",
            labels=["health"],
        )
        for status, count in sorted(health.items()):
            instances.add_metric([status], count)
        yield instances
