"""What every group of Cloud Map operations shares: the caller's role check, ARNs, audit
entries, operation records, and the lookups of namespaces, services and instances by id.

:class:`RegistryOperations` is the base of the operation groups (:mod:`.cloudmap_namespaces`,
:mod:`.cloudmap_services`, :mod:`.cloudmap_instances`, :mod:`.cloudmap_discovery`,
:mod:`.cloudmap_operations`, :mod:`.cloudmap_tags`) that
:class:`meshplane.service.cloudmap.CloudMapService` puts together; the functions (new ids,
request fingerprints, pages of records) are theirs too.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from meshplane.errors import (
    AccessDeniedError,
    ForbiddenError,
    InstanceNotFoundError,
    NamespaceNotFoundError,
    ServiceNotFoundError,
)
from meshplane.model.kinds import REGISTRY_MESH
from meshplane.service import cloudmap_inputs as v
from meshplane.service.access import Role
from meshplane.service.arns import Partition
from meshplane.service.resources import Caller
from meshplane.store import registry
from meshplane.store.protocols import ResourceReader, ResourceStore, Transaction
from meshplane.store.records import Record


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def _operation_id() -> str:
    """Time-ordered (so the oldest come first in a listing), unique."""
    return f"{time.time_ns():x}-{secrets.token_hex(8)}"[:32]


def _strip_arn(value: str) -> str:
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def page(records: list[Record], after: str | None, count: int) -> tuple[list[Record], str | None]:
    ordered = sorted(records, key=lambda r: r.key.name)
    if after is not None:
        ordered = [r for r in ordered if r.key.name > after]
    page = ordered[:count]
    return page, (v.encode_token(page[-1].key.name) if len(ordered) > count else None)


class RegistryOperations:
    """The store and partition of a group of Cloud Map operations, and what they share."""

    def __init__(self, store: ResourceStore, partition: Partition) -> None:
        self.store = store
        self.partition = partition

    @staticmethod
    def _require(caller: Caller, role: Role, action: str, mesh: str | None = None) -> None:
        try:
            if mesh is not None:
                caller.principal.require(mesh, role, action)
            else:
                caller.principal.require_anywhere(role, action)
        except ForbiddenError as error:
            raise AccessDeniedError(error.message) from None

    def arn(self, kind: str, resource_id: str) -> str:
        p = self.partition
        return f"arn:aws:servicediscovery:{p.region}:{p.account_id}:{kind}/{resource_id}"

    def _audit(self, tx: Transaction, caller: Caller, operation: str, record: Record) -> None:
        kind = record.key.kind.value.removeprefix("cloudMap").lower()
        tx.audit(
            caller.principal.id,
            operation,
            mesh=REGISTRY_MESH,
            resource=f"cloudmap/{kind}/{record.key.name}",
            version=record.version,
            via=caller.via,
        )

    def _operation(
        self, tx: Transaction, kind: str, targets: Mapping[str, str], caller: Caller
    ) -> str:
        now = time.time()
        op_id = _operation_id()
        tx.create(
            registry.operation_key(op_id),
            {
                "Id": op_id,
                "Type": kind,
                "Status": "SUCCESS",
                "CreateDate": now,
                "UpdateDate": now,
                "Targets": dict(targets),
            },
            mesh_owner=caller.account_id,
            resource_owner=caller.account_id,
        )
        return op_id

    def _namespace(self, reader: ResourceReader, namespace_id: str, field: str = "Id") -> Record:
        record = registry.namespace(reader, _strip_arn(namespace_id))
        if record is None:
            raise NamespaceNotFoundError(f"{field}: namespace {namespace_id!r} not found")
        return record

    def _service(self, reader: ResourceReader, service_id: str, field: str = "Id") -> Record:
        record = registry.service(reader, _strip_arn(service_id))
        if record is None:
            raise ServiceNotFoundError(f"{field}: service {service_id!r} not found")
        return record

    @staticmethod
    def _instance(reader: ResourceReader, service: Record, instance_id: str) -> Record:
        record = reader.get(registry.instance_key(service.key.name, instance_id))
        if record is None:
            raise InstanceNotFoundError(
                f"InstanceId: instance {instance_id!r} not found in service {service.key.name}"
            )
        return record
