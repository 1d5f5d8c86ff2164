"""Endpoints (EDS): the ``ClusterLoadAssignment`` of every Cloud Map discovered provider.

A provider virtual node with ``awsCloudMap`` service discovery becomes an EDS cluster
(:mod:`~meshplane.translate.clusters`).  Translation names, for each such cluster, what to
discover (:class:`CloudMapTarget`: the namespace's HTTP name, the service, the attributes every
instance must carry, the IP preference and the listener port) and publishes an empty
assignment; the control loop fills it from the registry with :func:`assignment` — and keeps
doing so as instances come, go or change health, without translating anything else.  DNS
discovered providers carry their endpoint inline and get no assignment here.

Pure.  Used by :mod:`meshplane.translate.proxy` and the control loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import address_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from meshplane.store.registry import UNHEALTHY, Instance
from meshplane.translate.plan import Provider

DEFAULT_PREFERENCE = "IPv4_PREFERRED"


@dataclass(frozen=True, slots=True)
class CloudMapTarget:
    """What one EDS cluster's endpoints are: instances of a Cloud Map service."""

    cluster: str
    namespace: str
    service: str
    attributes: tuple[tuple[str, str], ...]
    ip_preference: str
    port: int


def cloud_map_targets(
    providers: Iterable[Provider], mesh_preference: str | None = None
) -> tuple[CloudMapTarget, ...]:
    """The discovery target of each Cloud Map discovered provider listener."""
    found = []
    for provider in providers:
        discovery = provider.spec.serviceDiscovery
        cloud_map = discovery.awsCloudMap if discovery is not None else None
        if cloud_map is None:
            continue
        found.append(
            CloudMapTarget(
                cluster=provider.cluster,
                namespace=cloud_map.namespaceName,
                service=cloud_map.serviceName,
                attributes=tuple(sorted((a.key, a.value) for a in cloud_map.attributes or ())),
                ip_preference=cloud_map.ipPreference or mesh_preference or DEFAULT_PREFERENCE,
                port=provider.port,
            )
        )
    return tuple(found)


def empty_assignments(
    targets: Iterable[CloudMapTarget],
) -> list[endpoint_pb2.ClusterLoadAssignment]:
    """The assignments as translation publishes them (the control loop fills them)."""
    return [endpoint_pb2.ClusterLoadAssignment(cluster_name=t.cluster) for t in targets]


def _address(instance: Instance, preference: str) -> str | None:
    v4, v6 = instance.ipv4, instance.ipv6
    if preference == "IPv4_ONLY":
        return v4
    if preference == "IPv6_ONLY":
        return v6
    if preference == "IPv6_PREFERRED":
        return v6 or v4
    return v4 or v6


def selected(
    target: CloudMapTarget, instances: Sequence[Instance]
) -> list[tuple[str, int, Instance]]:
    """(address, port, instance) of the instances that match every attribute of ``target``,
    are not UNHEALTHY and have an address ``target.ip_preference`` allows; sorted."""
    wanted = dict(target.attributes)
    out = []
    for instance in instances:
        if instance.health == UNHEALTHY:
            continue
        if any(instance.attributes.get(k) != v for k, v in wanted.items()):
            continue
        address = _address(instance, target.ip_preference)
        if address is None:
            continue
        out.append((address, instance.port or target.port, instance))
    return sorted(out, key=lambda item: (item[0], item[1], item[2].id))


def assignment(
    target: CloudMapTarget, instances: Sequence[Instance]
) -> endpoint_pb2.ClusterLoadAssignment:
    """The assignment of ``target``'s cluster: one endpoint per selected instance."""
    endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=address, port_value=port)
                ),
                hostname=instance.id,
            ),
            health_status=health_check_pb2.HEALTHY
            if instance.health == "HEALTHY"
            else health_check_pb2.UNKNOWN,
        )
        for address, port, instance in selected(target, instances)
    ]
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=target.cluster)
    if endpoints:
        cla.endpoints.append(endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=endpoints))
    return cla
