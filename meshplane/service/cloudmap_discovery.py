"""Cloud Map discovery and instance health: DiscoverInstances (and its filters,
:func:`select_instances`), DiscoverInstancesRevision, GetInstancesHealthStatus and
UpdateInstanceCustomHealthStatus.

Discovery and reading health need the viewer role on some mesh, setting health the editor
role.  Part of :class:`meshplane.service.cloudmap.CloudMapService`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshplane.errors import (
    CustomHealthNotFoundError,
    InstanceNotFoundError,
    InvalidInputError,
    NamespaceNotFoundError,
    ServiceNotFoundError,
)
from meshplane.service import cloudmap_base as base
from meshplane.service import cloudmap_inputs as v
from meshplane.service.access import Role
from meshplane.service.resources import Caller
from meshplane.store import registry
from meshplane.store.protocols import Transaction
from meshplane.store.records import Record


class DiscoveryOperations(base.RegistryOperations):
    """The discovery and health operations of one store."""

    def _discovered(
        self, request: dict[str, Any], caller: Caller
    ) -> tuple[Record, Record, list[registry.Instance]]:
        namespace_name = v.required(request, "NamespaceName", pattern=v.NAMESPACE_NAME)
        service_name = v.required(request, "ServiceName", pattern=v.SERVICE_NAME)
        owner = v.string(request, "OwnerAccount", min_len=12, max_len=12)
        self._require(caller, Role.VIEWER, "discover Cloud Map instances")
        namespace = registry.namespace_by_http_name(self.store, namespace_name)
        if namespace is None or (owner is not None and owner != namespace.resource_owner):
            raise NamespaceNotFoundError(f"NamespaceName: namespace {namespace_name!r} not found")
        service = registry.service_named(self.store, namespace.key.name, service_name)
        if service is None:
            raise ServiceNotFoundError(
                f"ServiceName: service {service_name!r} not found in {namespace_name!r}"
            )
        return namespace, service, registry.instances(self.store, service)

    def discover_instances(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        count = v.integer(request, "MaxResults", minimum=1, maximum=1000, default=100)
        query = v.attribute_map(request, "QueryParameters")
        optional = v.attribute_map(request, "OptionalParameters")
        wanted = v.string(
            request, "HealthStatus", choices=("HEALTHY", "UNHEALTHY", "ALL", "HEALTHY_OR_ELSE_ALL")
        )
        namespace, service, found = self._discovered(request, caller)
        chosen = select_instances(found, query, optional, wanted or "HEALTHY")
        return {
            "Instances": [
                {
                    "InstanceId": i.id,
                    "NamespaceName": registry.http_name(namespace),
                    "ServiceName": service.spec["Name"],
                    "HealthStatus": i.health,
                    "Attributes": dict(i.attributes),
                }
                for i in chosen[:count]
            ],
            "InstancesRevision": service.revision,
        }

    def discover_instances_revision(
        self, request: dict[str, Any], caller: Caller
    ) -> dict[str, Any]:
        _, service, _ = self._discovered(request, caller)
        return {"InstancesRevision": service.revision}

    def get_instances_health_status(
        self, request: dict[str, Any], caller: Caller
    ) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        count = v.integer(request, "MaxResults", minimum=1, maximum=100, default=100)
        after = v.next_token(request)
        ids = request.get("Instances")
        if ids is not None and (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(i, str) and len(i) <= 64 for i in ids)
        ):
            raise InvalidInputError("Instances: a non-empty list of instance ids")
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        service = self._service(self.store, srv_id, "ServiceId")
        found = {i.id: i for i in registry.instances(self.store, service)}
        wanted = sorted(set(ids)) if ids is not None else sorted(found)
        for instance_id in wanted:
            if instance_id not in found:
                raise InstanceNotFoundError(f"Instances: instance {instance_id!r} not found")
        if after is not None:
            wanted = [i for i in wanted if i > after]
        page = wanted[:count]
        token = v.encode_token(page[-1]) if len(wanted) > count else None
        return {
            "Status": {i: found[i].health for i in page},
            **({"NextToken": token} if token else {}),
        }

    def update_instance_custom_health_status(
        self, request: dict[str, Any], caller: Caller
    ) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        instance_id = v.required(request, "InstanceId", max_len=64)
        status = v.required(request, "Status", choices=("HEALTHY", "UNHEALTHY"))
        self._require(caller, Role.EDITOR, f"set the health of instance {instance_id!r}")
        return self.store.transact(
            lambda tx: self.set_health(tx, srv_id, instance_id, status, caller)
        )

    def set_health(
        self, tx: Transaction, srv_id: str, instance_id: str, status: str, caller: Caller
    ) -> dict[str, Any]:
        service = self._service(tx, srv_id, "ServiceId")
        if not service.spec.get("HealthCheckCustomConfig"):
            raise CustomHealthNotFoundError(
                f"ServiceId: service {service.key.name} has no custom health check "
                "(HealthCheckCustomConfig)"
            )
        record = self._instance(tx, service, instance_id)
        if record.spec.get("Health") != status:
            updated = tx.update(record.key, {**record.spec, "Health": status})
            self._audit(tx, caller, "UpdateInstanceCustomHealthStatus", updated)
        return {}


def select_instances(
    found: list[registry.Instance],
    query: Mapping[str, str],
    optional: Mapping[str, str],
    health: str,
) -> list[registry.Instance]:
    """DiscoverInstances' filters: every query parameter must match; the optional ones apply
    when some instance matches them too; then the health filter (ignored for services without
    a health check, whose instances are UNKNOWN)."""

    def match(instance: registry.Instance, wanted: Mapping[str, str]) -> bool:
        return all(instance.attributes.get(k) == val for k, val in wanted.items())

    chosen = [i for i in found if match(i, query)]
    if optional:
        narrowed = [i for i in chosen if match(i, optional)]
        if narrowed:
            chosen = narrowed
    if any(i.health == registry.UNKNOWN for i in chosen) or health == "ALL":
        return sorted(chosen, key=lambda i: i.id)
    healthy = [i for i in chosen if i.health == registry.HEALTHY]
    if health == "HEALTHY":
        chosen = healthy
    elif health == "UNHEALTHY":
        chosen = [i for i in chosen if i.health == registry.UNHEALTHY]
    elif health == "HEALTHY_OR_ELSE_ALL":
        chosen = healthy or chosen
    return sorted(chosen, key=lambda i: i.id)
