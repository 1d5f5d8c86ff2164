"""The Cloud Map service operations: CreateService, GetService, ListServices, UpdateService,
DeleteService and the service attributes (Get/Update/DeleteServiceAttributes).

Changing a service needs the editor role on some mesh, reading it the viewer role.  A
``CreatorRequestId`` with the same request makes CreateService idempotent.  Part of
:class:`meshplane.service.cloudmap.CloudMapService`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from meshplane.errors import (
    CloudMapResourceInUseError,
    InvalidInputError,
    ResourceLimitExceededError,
    ServiceAlreadyExistsError,
)
from meshplane.service import cloudmap_base as base
from meshplane.service import cloudmap_inputs as v
from meshplane.service.access import Role
from meshplane.service.resources import Caller
from meshplane.store import registry
from meshplane.store.protocols import Transaction
from meshplane.store.records import Record

MAX_SERVICES_PER_NAMESPACE = 10_000


class ServiceOperations(base.RegistryOperations):
    """The service operations of one store."""

    def _service_shape(self, record: Record) -> dict[str, Any]:
        hidden = ("ServiceAttributes", "Fingerprint")
        spec = {k: v for k, v in record.spec.items() if k not in hidden}
        return {
            **spec,
            "Arn": self.arn("service", record.key.name),
            "ResourceOwner": record.resource_owner,
            "CreatedByAccount": record.mesh_owner,
        }

    def create_service(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        name = v.required(request, "Name", pattern=v.SERVICE_NAME)
        ns_id = v.string(request, "NamespaceId", max_len=255)
        token = v.request_id(request)
        description = v.description(request)
        dns = v.dns_config(request)
        health = v.health_check_config(request, "HealthCheckConfig")
        custom = v.custom_health_config(request)
        tags = v.tags(request)
        wanted_type = v.string(request, "Type", choices=("HTTP",))
        if health is not None and custom is not None:
            raise InvalidInputError(
                "HealthCheckConfig and HealthCheckCustomConfig: give at most one of them"
            )
        if dns is not None and ns_id is None:
            ns_id = dns.get("NamespaceId")
        if ns_id is None:
            raise InvalidInputError("NamespaceId: required")
        if dns is not None and wanted_type == "HTTP":
            raise InvalidInputError("Type: HTTP services have no DnsConfig")
        self._require(caller, Role.EDITOR, f"create Cloud Map service {name!r}")
        fingerprint = base.fingerprint(name, ns_id, description, dns, health, custom)

        def work(tx: Transaction) -> dict[str, Any]:
            namespace = self._namespace(tx, ns_id, "NamespaceId")
            existing = registry.service_named(tx, namespace.key.name, name)
            if existing is not None:
                replay = token is not None and existing.spec.get("CreatorRequestId") == token
                if replay and existing.spec.get("Fingerprint") == fingerprint:
                    return {"Service": self._service_shape(existing)}
                raise ServiceAlreadyExistsError(
                    f"Name: service {name!r} already exists in namespace {namespace.key.name}",
                    ServiceId=existing.key.name,
                    ServiceArn=self.arn("service", existing.key.name),
                    CreatorRequestId=str(existing.spec.get("CreatorRequestId") or ""),
                )
            if len(registry.services(tx, namespace.key.name)) >= MAX_SERVICES_PER_NAMESPACE:
                raise ResourceLimitExceededError(
                    f"at most {MAX_SERVICES_PER_NAMESPACE} services per namespace"
                )
            is_dns = namespace.spec["Type"] != "HTTP"
            if dns is not None and not is_dns:
                raise InvalidInputError(
                    f"DnsConfig: namespace {namespace.key.name} is an HTTP namespace (no DNS)"
                )
            if health is not None and namespace.spec["Type"] != "DNS_PUBLIC":
                raise InvalidInputError(
                    "HealthCheckConfig: Route 53 health checks need a public DNS namespace"
                )
            srv_id = base.new_id("srv-")
            spec: dict[str, Any] = {
                "Id": srv_id,
                "Name": name,
                "NamespaceId": namespace.key.name,
                "Type": "DNS_HTTP" if dns is not None else "HTTP",
                "InstanceCount": 0,
                "CreateDate": time.time(),
                "Fingerprint": fingerprint,
            }
            for field, value in (
                ("Description", description),
                ("DnsConfig", dns),
                ("HealthCheckConfig", health),
                ("HealthCheckCustomConfig", custom),
                ("CreatorRequestId", token),
            ):
                if value:
                    spec[field] = value
            if dns is not None:
                spec["DnsConfig"] = {**dns, "NamespaceId": namespace.key.name}
            record = tx.create(
                registry.service_key(namespace.key.name, srv_id),
                spec,
                mesh_owner=caller.account_id,
                resource_owner=caller.account_id,
                tags=tags,
            )
            self._audit(tx, caller, "CreateService", record)
            return {"Service": self._service_shape(record)}

        return self.store.transact(work)

    def get_service(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "Id")
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        return {"Service": self._service_shape(self._service(self.store, srv_id))}

    def list_services(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        count = v.integer(request, "MaxResults", minimum=1, maximum=100, default=100)
        after = v.next_token(request)
        found = v.filters(request, ("NAMESPACE_ID", "RESOURCE_OWNER"))
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")

        def keep(record: Record) -> bool:
            actual = {"NAMESPACE_ID": record.key.parent, "RESOURCE_OWNER": record.resource_owner}
            return all(v.matches(cond, values, actual[name]) for name, cond, values in found)

        records = [r for r in registry.services(self.store) if keep(r)]
        page, token = base.page(records, after, count)
        summary_keys = (
            "Id", "Name", "Type", "Description", "InstanceCount", "DnsConfig",
            "HealthCheckConfig", "HealthCheckCustomConfig", "CreateDate",
        )  # fmt: skip
        return {
            "Services": [
                {
                    **{k: r.spec[k] for k in summary_keys if k in r.spec},
                    "Arn": self.arn("service", r.key.name),
                }
                for r in page
            ],
            **({"NextToken": token} if token else {}),
        }

    def update_service(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "Id")
        change = v.struct(request, "Service")
        if change is None:
            raise InvalidInputError("Service: required")
        description = v.description(change)
        dns_change = v.struct(change, "DnsConfig")
        records = (
            v.dns_records(dns_change.get("DnsRecords"), "Service.DnsConfig.DnsRecords")
            if dns_change is not None
            else None
        )
        health = v.health_check_config(change, "Service.HealthCheckConfig")
        self._require(caller, Role.EDITOR, f"update Cloud Map service {srv_id!r}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._service(tx, srv_id)
            spec = dict(record.spec)
            if description is not None:
                spec["Description"] = description
            if records is not None:
                if "DnsConfig" not in spec:
                    raise InvalidInputError("Service.DnsConfig: the service has no DNS records")
                kinds = {r["Type"] for r in spec["DnsConfig"]["DnsRecords"]}
                if {r["Type"] for r in records} != kinds:
                    raise InvalidInputError(
                        "Service.DnsConfig.DnsRecords: only the TTLs can change, not the types"
                    )
                spec["DnsConfig"] = {**spec["DnsConfig"], "DnsRecords": records}
            if health is not None:
                if "HealthCheckConfig" not in spec:
                    raise InvalidInputError(
                        "Service.HealthCheckConfig: the service has no Route 53 health check"
                    )
                spec["HealthCheckConfig"] = health
            updated = tx.update(record.key, spec)
            self._audit(tx, caller, "UpdateService", updated)
            target = {"SERVICE": record.key.name}
            return {"OperationId": self._operation(tx, "UPDATE_SERVICE", target, caller)}

        return self.store.transact(work)

    def delete_service(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "Id")
        self._require(caller, Role.EDITOR, f"delete Cloud Map service {srv_id!r}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._service(tx, srv_id)
            if registry.instance_records(tx, record.key.name, limit=1):
                raise CloudMapResourceInUseError(
                    f"Id: service {record.key.name} still has instances; deregister them first"
                )
            self._audit(tx, caller, "DeleteService", tx.delete(record.key))
            return {}

        return self.store.transact(work)

    def get_service_attributes(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        record = self._service(self.store, srv_id, "ServiceId")
        return {
            "ServiceAttributes": {
                "ServiceArn": self.arn("service", record.key.name),
                "Attributes": dict(record.spec.get("ServiceAttributes", {})),
            }
        }

    def _set_service_attributes(
        self,
        caller: Caller,
        srv_id: str,
        change: Callable[[dict[str, str]], dict[str, str]],
    ) -> dict[str, Any]:
        self._require(caller, Role.EDITOR, f"change the attributes of service {srv_id!r}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._service(tx, srv_id, "ServiceId")
            attributes = change(dict(record.spec.get("ServiceAttributes", {})))
            if len(attributes) > 30:
                raise ResourceLimitExceededError("Attributes: at most 30 service attributes")
            updated = tx.update(record.key, {**record.spec, "ServiceAttributes": attributes})
            self._audit(tx, caller, "UpdateServiceAttributes", updated)
            return {}

        return self.store.transact(work)

    def update_service_attributes(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        attributes = v.attribute_map(request, "Attributes", required_map=True)
        if not 1 <= len(attributes) <= 30:
            raise InvalidInputError("Attributes: 1 to 30 attributes")
        return self._set_service_attributes(caller, srv_id, lambda old: {**old, **attributes})

    def delete_service_attributes(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        keys = request.get("Attributes")
        if not isinstance(keys, list) or not 1 <= len(keys) <= 30:
            raise InvalidInputError("Attributes: required, 1 to 30 attribute keys")
        if not all(isinstance(k, str) and 1 <= len(k) <= 255 for k in keys):
            raise InvalidInputError("Attributes: keys are strings of 1 to 255 characters")
        drop = set(keys)
        return self._set_service_attributes(
            caller, srv_id, lambda old: {k: val for k, val in old.items() if k not in drop}
        )
