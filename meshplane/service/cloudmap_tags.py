"""The Cloud Map tag operations: TagResource, UntagResource and ListTagsForResource, on the
ARN of a namespace or a service.

Tagging needs the admin role on some mesh, listing tags the viewer role.  Part of
:class:`meshplane.service.cloudmap.CloudMapService`.
"""

from __future__ import annotations

from typing import Any

from meshplane.errors import (
    CloudMapResourceNotFoundError,
    CloudMapTooManyTagsError,
    InvalidInputError,
)
from meshplane.service import cloudmap_base as base
from meshplane.service import cloudmap_inputs as v
from meshplane.service.access import Role
from meshplane.service.resources import Caller
from meshplane.store import registry
from meshplane.store.protocols import ResourceReader, Transaction
from meshplane.store.records import Record, Tag


class TagOperations(base.RegistryOperations):
    """The tag operations of one store."""

    def _tagged(self, reader: ResourceReader, arn: str) -> Record:
        prefix = f"arn:aws:servicediscovery:{self.partition.region}:"
        kind, _, resource_id = arn.rpartition(":")[2].partition("/")
        record = None
        if arn.startswith(prefix) and kind == "namespace":
            record = registry.namespace(reader, resource_id)
        elif arn.startswith(prefix) and kind == "service":
            record = registry.service(reader, resource_id)
        if record is None:
            raise CloudMapResourceNotFoundError(f"ResourceARN: {arn[:200]!r} not found")
        return record

    def tag_resource(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        arn = v.required(request, "ResourceARN", min_len=1, max_len=1011)
        if request.get("Tags") is None:
            raise InvalidInputError("Tags: required")
        new = v.tags(request)
        self._require(caller, Role.ADMIN, f"tag {arn[:200]}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._tagged(tx, arn)
            merged: dict[str, Tag] = {t.key: t for t in record.tags}
            merged.update({t.key: t for t in new})
            if len(merged) > v.MAX_TAGS:
                raise CloudMapTooManyTagsError(
                    f"Tags: a resource has at most {v.MAX_TAGS} tags", ResourceName=arn
                )
            self._audit(tx, caller, "TagResource", tx.set_tags(record.key, list(merged.values())))
            return {}

        return self.store.transact(work)

    def untag_resource(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        arn = v.required(request, "ResourceARN", min_len=1, max_len=1011)
        drop = set(v.tag_keys(request))
        self._require(caller, Role.ADMIN, f"untag {arn[:200]}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._tagged(tx, arn)
            kept = [t for t in record.tags if t.key not in drop]
            self._audit(tx, caller, "UntagResource", tx.set_tags(record.key, kept))
            return {}

        return self.store.transact(work)

    def list_tags_for_resource(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        arn = v.required(request, "ResourceARN", min_len=1, max_len=1011)
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        record = self._tagged(self.store, arn)
        return {"Tags": [{"Key": t.key, "Value": t.value} for t in record.tags]}
