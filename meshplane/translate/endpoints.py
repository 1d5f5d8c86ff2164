"""Endpoints (EDS): the ``ClusterLoadAssignment`` of every Cloud Map discovered provider.

A provider virtual node with ``awsCloudMap`` service discovery becomes an EDS cluster
(:mod:`~meshplane.translate.clusters`); its assignment is published here under the cluster's
name.  Until meshplane's instance registry exists the assignment has no endpoints: Envoy
accepts it, the cluster warms, and requests to it fail with 503 (no healthy upstream) rather
than the proxy waiting for ever.  DNS discovered providers carry their endpoint inline and get
no assignment here.

Used by :mod:`meshplane.translate.proxy`.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.endpoint.v3 import endpoint_pb2

from meshplane.translate.plan import Provider


def cloud_map_assignments(
    providers: Iterable[Provider],
) -> list[endpoint_pb2.ClusterLoadAssignment]:
    """One (for now empty) assignment per Cloud Map discovered provider listener."""
    return [
        endpoint_pb2.ClusterLoadAssignment(cluster_name=provider.cluster)
        for provider in providers
        if provider.spec.serviceDiscovery is not None
        and provider.spec.serviceDiscovery.awsCloudMap is not None
    ]
