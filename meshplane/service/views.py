"""How stored records look on the wire: the App Mesh ``*Data`` and ``*Ref`` shapes.

Used by the service operations (whose answers are also what idempotency tokens replay) and by
the CLI's describe output.
"""

from __future__ import annotations

from typing import Any

from meshplane.model.kinds import Kind
from meshplane.service.arns import Partition
from meshplane.store.records import Record


def _names(record: Record) -> dict[str, Any]:
    key = record.key
    names: dict[str, Any] = {"meshName": key.mesh}
    if key.kind is not Kind.MESH:
        names[key.kind.name_field] = key.name
    parent = key.kind.parent
    if parent is not None:
        names[parent.name_field] = key.parent
    return names


def data(record: Record, partition: Partition) -> dict[str, Any]:
    """The ``<Kind>Data`` shape: names, metadata, spec and status."""
    return {
        **_names(record),
        "metadata": {
            "arn": partition.arn(record.key, record.mesh_owner),
            "uid": record.uid,
            "version": record.version,
            "createdAt": record.created_at,
            "lastUpdatedAt": record.updated_at,
            "meshOwner": record.mesh_owner,
            "resourceOwner": record.resource_owner,
        },
        "spec": dict(record.spec),
        "status": {"status": record.status},
    }


def ref(record: Record, partition: Partition) -> dict[str, Any]:
    """The ``<Kind>Ref`` shape that List* operations return."""
    return {
        **_names(record),
        "arn": partition.arn(record.key, record.mesh_owner),
        "createdAt": record.created_at,
        "lastUpdatedAt": record.updated_at,
        "meshOwner": record.mesh_owner,
        "resourceOwner": record.resource_owner,
        "version": record.version,
    }
