"""The Cloud Map instance operations: RegisterInstance, DeregisterInstance, GetInstance and
ListInstances.

Registering and deregistering need the editor role on some mesh, or on the mesh named by the
instance's ``appmesh.k8s.aws/mesh`` attribute when it has one; reading needs the viewer role.
RegisterInstance takes meshplane's ``MeshplaneLeaseSeconds`` (see
:mod:`meshplane.service.leases`).  Part of :class:`meshplane.service.cloudmap.CloudMapService`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from meshplane.errors import (
    InvalidInputError,
    ResourceLimitExceededError,
)
from meshplane.service import cloudmap_base as base
from meshplane.service import cloudmap_inputs as v
from meshplane.service.access import Role
from meshplane.service.resources import Caller
from meshplane.store import registry
from meshplane.store.protocols import Transaction
from meshplane.store.records import Record

MAX_INSTANCES_PER_SERVICE = 1_000
MESH_ATTRIBUTE = "appmesh.k8s.aws/mesh"


class InstanceOperations(base.RegistryOperations):
    """The instance operations of one store."""

    def register_instance(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        instance_id = v.required(request, "InstanceId", max_len=64, pattern=v.INSTANCE_ID)
        token = v.request_id(request)
        attributes = v.instance_attributes(request)
        lease = request.get("MeshplaneLeaseSeconds")
        if lease is not None and (
            isinstance(lease, bool) or not isinstance(lease, int) or not 1 <= lease <= 3600
        ):
            raise InvalidInputError("MeshplaneLeaseSeconds: an integer from 1 to 3600")
        self._require(
            caller,
            Role.EDITOR,
            f"register instances ({instance_id!r})",
            attributes.get(MESH_ATTRIBUTE),
        )

        def work(tx: Transaction) -> dict[str, Any]:
            service = self._service(tx, srv_id, "ServiceId")
            _check_records(service, attributes)
            key = registry.instance_key(service.key.name, instance_id)
            current = tx.get(key)
            spec: dict[str, Any] = {"Id": instance_id, "Attributes": attributes}
            if token:
                spec["CreatorRequestId"] = token
            if lease is not None:
                spec["Lease"] = {"Seconds": lease, "ExpiresAt": time.time() + lease}
            if current is None:
                if (
                    len(registry.instance_records(tx, service.key.name))
                    >= MAX_INSTANCES_PER_SERVICE
                ):
                    raise ResourceLimitExceededError(
                        f"ServiceId: at most {MAX_INSTANCES_PER_SERVICE} instances per service"
                    )
                spec["Health"] = attributes.get("AWS_INIT_HEALTH_STATUS", registry.HEALTHY)
                record = tx.create(
                    key, spec, mesh_owner=caller.account_id, resource_owner=caller.account_id
                )
                count = int(service.spec.get("InstanceCount", 0)) + 1
            else:
                spec["Health"] = current.spec.get("Health", registry.HEALTHY)
                if lease is not None and current.spec.get("Lease", {}).get("Expired"):
                    spec["Health"] = attributes.get("AWS_INIT_HEALTH_STATUS", registry.HEALTHY)
                record = tx.update(key, spec)
                count = int(service.spec.get("InstanceCount", 0))
            tx.update(service.key, {**service.spec, "InstanceCount": count})
            self._audit(tx, caller, "RegisterInstance", record)
            targets = {"SERVICE": service.key.name, "INSTANCE": instance_id}
            return {"OperationId": self._operation(tx, "REGISTER_INSTANCE", targets, caller)}

        return self.store.transact(work)

    def deregister_instance(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        instance_id = v.required(request, "InstanceId", max_len=64)

        def work(tx: Transaction) -> dict[str, Any]:
            service = self._service(tx, srv_id, "ServiceId")
            record = self._instance(tx, service, instance_id)
            self._require(
                caller,
                Role.EDITOR,
                f"deregister instance {instance_id!r}",
                record.spec.get("Attributes", {}).get(MESH_ATTRIBUTE),
            )
            self._audit(tx, caller, "DeregisterInstance", tx.delete(record.key))
            count = max(0, int(service.spec.get("InstanceCount", 1)) - 1)
            tx.update(service.key, {**service.spec, "InstanceCount": count})
            targets = {"SERVICE": service.key.name, "INSTANCE": instance_id}
            return {"OperationId": self._operation(tx, "DEREGISTER_INSTANCE", targets, caller)}

        self._require(caller, Role.EDITOR, f"deregister instance {instance_id!r}")
        return self.store.transact(work)

    def get_instance(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        instance_id = v.required(request, "InstanceId", max_len=64)
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        service = self._service(self.store, srv_id, "ServiceId")
        record = self._instance(self.store, service, instance_id)
        instance = {"Id": instance_id, "Attributes": dict(record.spec["Attributes"])}
        if record.spec.get("CreatorRequestId"):
            instance["CreatorRequestId"] = record.spec["CreatorRequestId"]
        instance["CreatedByAccount"] = record.resource_owner
        return {"ResourceOwner": service.resource_owner, "Instance": instance}

    def list_instances(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        count = v.integer(request, "MaxResults", minimum=1, maximum=100, default=100)
        after = v.next_token(request)
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        service = self._service(self.store, srv_id, "ServiceId")
        records = registry.instance_records(
            self.store, service.key.name, after=after, limit=count + 1
        )
        page = records[:count]
        token = v.encode_token(page[-1].key.name) if len(records) > count else None
        return {
            "ResourceOwner": service.resource_owner,
            "Instances": [
                {
                    "Id": r.key.name,
                    "Attributes": dict(r.spec["Attributes"]),
                    "CreatedByAccount": r.resource_owner,
                }
                for r in page
            ],
            **({"NextToken": token} if token else {}),
        }


def _check_records(service: Record, attributes: Mapping[str, str]) -> None:
    """The address attributes a service's DNS records need."""
    types = {r["Type"] for r in service.spec.get("DnsConfig", {}).get("DnsRecords", [])}
    needs = {
        "A": "AWS_INSTANCE_IPV4",
        "AAAA": "AWS_INSTANCE_IPV6",
        "SRV": "AWS_INSTANCE_PORT",
        "CNAME": "AWS_INSTANCE_CNAME",
    }
    for record_type, attribute in needs.items():
        if record_type in types and attribute not in attributes:
            if (
                record_type == "SRV"
                and ("AWS_INSTANCE_IPV4" in attributes or "AWS_INSTANCE_IPV6" in attributes)
                and "AWS_INSTANCE_PORT" in attributes
            ):
                continue
            raise InvalidInputError(
                f"Attributes.{attribute}: required, the service has {record_type} records"
            )
