"""The Cloud Map operation records: GetOperation and ListOperations.

Every asynchronous call (creating, updating and deleting namespaces, updating services,
registering and deregistering instances) records a finished operation
(:meth:`~meshplane.service.cloudmap_base.RegistryOperations._operation`); these read them, with
the viewer role on some mesh.  Part of :class:`meshplane.service.cloudmap.CloudMapService`.
"""

from __future__ import annotations

from typing import Any

from meshplane.errors import OperationNotFoundError
from meshplane.model.kinds import REGISTRY_MESH, Kind
from meshplane.service import cloudmap_base as base
from meshplane.service import cloudmap_inputs as v
from meshplane.service.access import Role
from meshplane.service.resources import Caller
from meshplane.store import registry
from meshplane.store.records import Record


class OperationLookups(base.RegistryOperations):
    """GetOperation and ListOperations of one store."""

    def get_operation(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        op_id = v.required(request, "OperationId", max_len=255)
        v.string(request, "OwnerAccount", min_len=12, max_len=12)
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        record = self.store.get(registry.operation_key(op_id))
        if record is None:
            raise OperationNotFoundError(f"OperationId: operation {op_id!r} not found")
        return {"Operation": dict(record.spec)}

    def list_operations(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        count = v.integer(request, "MaxResults", minimum=1, maximum=100, default=100)
        after = v.next_token(request)
        found = v.filters(request, ("NAMESPACE_ID", "SERVICE_ID", "STATUS", "TYPE", "UPDATE_DATE"))
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")

        def keep(record: Record) -> bool:
            spec = record.spec
            targets = spec.get("Targets", {})
            actual = {
                "NAMESPACE_ID": str(targets.get("NAMESPACE", "")),
                "SERVICE_ID": str(targets.get("SERVICE", "")),
                "STATUS": str(spec["Status"]),
                "TYPE": str(spec["Type"]),
                "UPDATE_DATE": str(spec["UpdateDate"]),
            }
            return all(v.matches(cond, values, actual[name]) for name, cond, values in found)

        records = [
            r for r in self.store.list_kind(Kind.CLOUD_MAP_OPERATION, REGISTRY_MESH, "") if keep(r)
        ]
        page, token = base.page(records, after, count)
        return {
            "Operations": [{"Id": r.key.name, "Status": r.spec["Status"]} for r in page],
            **({"NextToken": token} if token else {}),
        }
