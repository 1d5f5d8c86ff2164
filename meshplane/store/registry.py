"""The Cloud Map registry and the virtual IPs, as the store keeps them.

The registry lives in the same store as the mesh, as records of the registry kinds
(:data:`~meshplane.model.kinds.Kind.CLOUD_MAP_NAMESPACE` ...) outside every mesh
(``mesh == REGISTRY_MESH``): a namespace is keyed by its id, a service by its id under its
namespace's id, an instance by its id under its service's id, an operation by its id.  Each
record's ``spec`` is the Cloud Map JSON of the object (``Id``, ``Name``, ``Attributes`` ...), so
the registry shares the mesh's transactions, revisions, change feed and audit log.  A virtual
IP is a record of kind ``VIRTUAL_IP`` in its virtual service's mesh, named after the service,
whose spec is ``{"ip": "240.240.0.7"}``.

This module is the registry's read protocol: typed look-ups over any ``ResourceReader`` (the
store or a transaction).  Used by the Cloud Map service, the DNS server, the VIP allocator and the
control loop (endpoints).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshplane.model.kinds import REGISTRY_MESH, Kind, ResourceKey
from meshplane.store.protocols import ResourceReader
from meshplane.store.records import Record

HEALTHY = "HEALTHY"
UNHEALTHY = "UNHEALTHY"
UNKNOWN = "UNKNOWN"


def namespace_key(namespace_id: str) -> ResourceKey:
    return ResourceKey(Kind.CLOUD_MAP_NAMESPACE, REGISTRY_MESH, namespace_id)


def service_key(namespace_id: str, service_id: str) -> ResourceKey:
    return ResourceKey(Kind.CLOUD_MAP_SERVICE, REGISTRY_MESH, service_id, namespace_id)


def instance_key(service_id: str, instance_id: str) -> ResourceKey:
    return ResourceKey(Kind.CLOUD_MAP_INSTANCE, REGISTRY_MESH, instance_id, service_id)


def operation_key(operation_id: str) -> ResourceKey:
    return ResourceKey(Kind.CLOUD_MAP_OPERATION, REGISTRY_MESH, operation_id)


def vip_key(mesh: str, virtual_service: str) -> ResourceKey:
    return ResourceKey(Kind.VIRTUAL_IP, mesh, virtual_service)


@dataclass(frozen=True, slots=True)
class Instance:
    """A registered instance as discovery reads it."""

    id: str
    service_id: str
    attributes: Mapping[str, str]
    health: str  # HEALTHY | UNHEALTHY | UNKNOWN (a service without a health check)
    revision: int

    @property
    def ipv4(self) -> str | None:
        return self.attributes.get("AWS_INSTANCE_IPV4")

    @property
    def ipv6(self) -> str | None:
        return self.attributes.get("AWS_INSTANCE_IPV6")

    @property
    def port(self) -> int | None:
        text = self.attributes.get("AWS_INSTANCE_PORT")
        return int(text) if text is not None and text.isdigit() else None


def has_health_check(service: Mapping[str, Any]) -> bool:
    return bool(service.get("HealthCheckCustomConfig") or service.get("HealthCheckConfig"))


def instance_of(record: Record, service: Mapping[str, Any]) -> Instance:
    spec = record.spec
    health = str(spec.get("Health", HEALTHY)) if has_health_check(service) else UNKNOWN
    if spec.get("Lease", {}).get("Expired"):
        health = UNHEALTHY  # its sidecar stopped renewing: no traffic, whatever the service

    return Instance(
        id=record.key.name,
        service_id=record.key.parent,
        attributes=dict(spec.get("Attributes", {})),
        health=health,
        revision=record.revision,
    )


def namespaces(reader: ResourceReader) -> list[Record]:
    return reader.list_kind(Kind.CLOUD_MAP_NAMESPACE, REGISTRY_MESH, "")


def namespace(reader: ResourceReader, namespace_id: str) -> Record | None:
    return reader.get(namespace_key(namespace_id))


def http_name(record: Record) -> str:
    """The name DiscoverInstances takes for a namespace."""
    properties = record.spec.get("Properties", {})
    return str(properties.get("HttpProperties", {}).get("HttpName") or record.spec["Name"])


def namespace_by_http_name(reader: ResourceReader, name: str) -> Record | None:
    return next((r for r in namespaces(reader) if http_name(r) == name), None)


def namespaces_named(reader: ResourceReader, name: str) -> list[Record]:
    return [r for r in namespaces(reader) if r.spec.get("Name") == name]


def services(reader: ResourceReader, namespace_id: str | None = None) -> list[Record]:
    return reader.list_kind(Kind.CLOUD_MAP_SERVICE, REGISTRY_MESH, namespace_id)


def service(reader: ResourceReader, service_id: str) -> Record | None:
    """A service by id (its namespace is found through the id index of every namespace)."""
    for found in services(reader):
        if found.key.name == service_id:
            return found
    return None


def service_named(reader: ResourceReader, namespace_id: str, name: str) -> Record | None:
    wanted = name.lower()
    return next(
        (r for r in services(reader, namespace_id) if str(r.spec["Name"]).lower() == wanted),
        None,
    )


def instance_records(
    reader: ResourceReader, service_id: str, *, after: str | None = None, limit: int | None = None
) -> list[Record]:
    return reader.list_kind(
        Kind.CLOUD_MAP_INSTANCE, REGISTRY_MESH, service_id, after=after, limit=limit
    )


def instances(reader: ResourceReader, service_record: Record) -> list[Instance]:
    return [
        instance_of(r, service_record.spec)
        for r in instance_records(reader, service_record.key.name)
    ]


def discover(
    reader: ResourceReader, namespace_name: str, service_name: str
) -> tuple[Record, Record, list[Instance]] | None:
    """The namespace (by HttpName), the service and its instances, or None."""
    ns = namespace_by_http_name(reader, namespace_name)
    if ns is None:
        return None
    svc = service_named(reader, ns.key.name, service_name)
    if svc is None:
        return None
    return ns, svc, instances(reader, svc)


def vips(reader: ResourceReader, mesh: str | None = None) -> dict[tuple[str, str], str]:
    """``(mesh, virtual service) -> VIP`` of every allocated virtual IP (of ``mesh``)."""
    return {
        (r.key.mesh, r.key.name): str(r.spec["ip"])
        for r in reader.list_kind(Kind.VIRTUAL_IP, mesh, "" if mesh is not None else None)
    }
