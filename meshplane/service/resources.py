"""The App Mesh operations on resources: create, describe, update, delete, list, tags.

The REST API calls these one request at a time; ``meshplane.service.apply`` calls the
transaction-level functions to apply many manifests in one atomic unit of work.  Every
operation first checks that the caller's principal may make it (``meshplane.service.access``),
validates, then checks the cross-resource rules and writes inside one store transaction, with
an audit entry naming the principal, so a refused or bad request changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshplane.errors import ConflictError, NotFoundError
from meshplane.model import dump_spec, parse_spec
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.service import inputs, rules, views
from meshplane.service.access import Principal, Role
from meshplane.service.arns import Partition, parse_arn
from meshplane.store.protocols import ResourceReader, ResourceStore, Transaction
from meshplane.store.records import Record, Tag

MAX_LIST = 100
MAX_TAG_LIST = 50


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the account that owns what it creates, the principal whose roles are
    checked and who the audit log names, and the way the change came in (``api``, ``apply``,
    ``delete``, ``label``)."""

    account_id: str
    principal: Principal
    via: str = "api"


def write_role(kind: Kind) -> Role:
    """The role that creates, updates or deletes a resource of ``kind``."""
    return Role.ADMIN if kind is Kind.MESH else Role.EDITOR


def _audit(tx: Transaction, caller: Caller, operation: str, record: Record) -> None:
    tx.audit(
        caller.principal.id,
        operation,
        mesh=record.key.mesh,
        resource=str(record.key),
        version=record.version,
        via=caller.via,
    )


def canonical_spec(kind: Kind, spec: Any) -> dict[str, Any]:
    """Validate a spec and return it in stored form (defaults filled in)."""
    return dump_spec(parse_spec(kind, spec))


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def check_mesh(reader: ResourceReader, mesh: str, mesh_owner: str | None) -> Record:
    record = reader.get(ResourceKey(Kind.MESH, mesh, mesh))
    if record is None or (mesh_owner is not None and record.mesh_owner != mesh_owner):
        owner = f" owned by {mesh_owner}" if mesh_owner else ""
        raise NotFoundError(f"meshName: mesh {mesh!r}{owner} not found")
    return record


def create_in(
    tx: Transaction,
    key: ResourceKey,
    spec: Mapping[str, Any],
    *,
    caller: Caller,
    mesh_owner: str | None = None,
    tags: list[Tag] | None = None,
) -> Record:
    """Create a validated resource inside a transaction, after checking references."""
    if key.kind is Kind.MESH:
        owner = caller.account_id
    else:
        owner = check_mesh(tx, key.mesh, mesh_owner).mesh_owner
    rules.check_references(tx, key, spec)
    record = tx.create(
        key, spec, mesh_owner=owner, resource_owner=caller.account_id, tags=tags or []
    )
    _audit(tx, caller, f"Create{key.kind.title}", record)
    return record


def update_in(
    tx: Transaction,
    key: ResourceKey,
    spec: Mapping[str, Any],
    *,
    caller: Caller,
    mesh_owner: str | None = None,
    read_version: int | None = None,
) -> Record:
    """Update inside a transaction; with ``read_version`` (the version the request read before
    the transaction), a resource another request changed meanwhile raises ConflictError."""
    check_mesh(tx, key.mesh, mesh_owner)
    _existing(tx, key)
    rules.check_references(tx, key, spec)
    record = tx.update(key, spec, expected_version=read_version)
    _audit(tx, caller, f"Update{key.kind.title}", record)
    return record


def delete_in(
    tx: Transaction, key: ResourceKey, *, caller: Caller, mesh_owner: str | None = None
) -> Record:
    check_mesh(tx, key.mesh, mesh_owner)
    _existing(tx, key)
    rules.check_deletable(tx, key)
    record = tx.delete(key)
    _audit(tx, caller, f"Delete{key.kind.title}", record)
    return record


def _existing(reader: ResourceReader, key: ResourceKey) -> Record:
    record = reader.get(key)
    if record is None:
        where = f" in mesh {key.mesh!r}" if key.kind is not Kind.MESH else ""
        parent = key.kind.parent
        if parent is not None:
            where += f" under {parent.value} {key.parent!r}"
        raise NotFoundError(f"{key.kind.title} {key.name!r} not found{where}")
    return record


class ResourceService:
    """The resource operations of the App Mesh API over one store."""

    def __init__(self, store: ResourceStore, partition: Partition) -> None:
        self.store = store
        self.partition = partition

    def _data(self, record: Record) -> dict[str, Any]:
        return views.data(record, self.partition)

    def create(
        self,
        key: ResourceKey,
        spec: Any,
        *,
        caller: Caller,
        tags: Any = None,
        client_token: Any = None,
        mesh_owner: Any = None,
    ) -> dict[str, Any]:
        caller.principal.require(key.mesh, write_role(key.kind), f"create {key}")
        owner = inputs.account_id(mesh_owner)
        token = inputs.client_token(client_token)
        tag_list = inputs.mesh_tags(key.kind, inputs.tags(tags))
        canonical = canonical_spec(key.kind, spec)
        fingerprint = _fingerprint("create", key, canonical, [(t.key, t.value) for t in tag_list])

        def work(tx: Transaction) -> dict[str, Any]:
            replay = self._replay(tx, token, fingerprint)
            if replay is not None:
                return replay
            record = create_in(tx, key, canonical, caller=caller, mesh_owner=owner, tags=tag_list)
            answer = self._data(record)
            if token is not None:
                tx.remember_client_token(token, fingerprint, answer)
            return answer

        return self.store.transact(work)

    def update(
        self,
        key: ResourceKey,
        spec: Any,
        *,
        caller: Caller,
        client_token: Any = None,
        mesh_owner: Any = None,
    ) -> dict[str, Any]:
        caller.principal.require(key.mesh, write_role(key.kind), f"update {key}")
        owner = inputs.account_id(mesh_owner)
        token = inputs.client_token(client_token)
        canonical = canonical_spec(key.kind, spec)
        fingerprint = _fingerprint("update", key, canonical)
        # The version this replica saw when the request came in: if another request (through
        # any replica) changes the resource before this one commits, this one loses.
        seen = self.store.get(key)
        read_version = seen.version if seen is not None else None

        def work(tx: Transaction) -> dict[str, Any]:
            replay = self._replay(tx, token, fingerprint)
            if replay is not None:
                return replay
            record = update_in(
                tx, key, canonical, caller=caller, mesh_owner=owner, read_version=read_version
            )
            answer = self._data(record)
            if token is not None:
                tx.remember_client_token(token, fingerprint, answer)
            return answer

        return self.store.transact(work)

    @staticmethod
    def _replay(tx: Transaction, token: str | None, fingerprint: str) -> dict[str, Any] | None:
        if token is None:
            return None
        seen = tx.client_token(token)
        if seen is None:
            return None
        if seen[0] != fingerprint:
            raise ConflictError(
                f"clientToken: {token!r} was used for a previous request with different "
                "specifications"
            )
        answer: dict[str, Any] = seen[1]
        return answer

    def delete(self, key: ResourceKey, *, caller: Caller, mesh_owner: Any = None) -> dict[str, Any]:
        caller.principal.require(key.mesh, write_role(key.kind), f"delete {key}")
        owner = inputs.account_id(mesh_owner)
        return self.store.transact(
            lambda tx: self._data(delete_in(tx, key, caller=caller, mesh_owner=owner))
        )

    def describe(
        self, key: ResourceKey, *, caller: Caller, mesh_owner: Any = None
    ) -> dict[str, Any]:
        caller.principal.require(key.mesh, Role.VIEWER, f"describe {key}")
        owner = inputs.account_id(mesh_owner)
        if key.kind is not Kind.MESH:
            check_mesh(self.store, key.mesh, owner)
        return self._data(_existing(self.store, key))

    def list(
        self,
        kind: Kind,
        *,
        caller: Caller,
        mesh: str | None = None,
        parent: str | None = None,
        limit: Any = None,
        next_token: Any = None,
        mesh_owner: Any = None,
    ) -> dict[str, Any]:
        """One page of a kind; without ``mesh``, only the meshes the caller may view."""
        if mesh is not None:
            caller.principal.require(mesh, Role.VIEWER, f"list the {kind.plural} of mesh {mesh}")
        owner = inputs.account_id(mesh_owner)
        count = inputs.limit(limit, MAX_LIST)
        after = inputs.decode_token(next_token)
        if mesh is not None:
            check_mesh(self.store, mesh, owner)
        if parent is not None and mesh is not None and kind.parent is not None:
            _existing(self.store, ResourceKey(kind.parent, mesh, parent))
        if mesh is not None and kind.parent is None:
            parent = ""  # one group: served in name order without sorting
        visible = caller.principal.meshes(Role.VIEWER)
        if mesh is None and visible is not None:
            records = [
                r
                for r in self.store.list_kind(kind, None, parent, after=after)
                if r.key.mesh in visible
            ][: count + 1]
        else:
            records = self.store.list_kind(kind, mesh, parent, after=after, limit=count + 1)
        more = len(records) > count
        records = records[:count]
        return {
            kind.plural: [views.ref(r, self.partition) for r in records],
            "nextToken": inputs.encode_token(records[-1].key.name) if more else None,
        }

    # --- tags -----------------------------------------------------------------------------

    def tag(self, arn: Any, tags: Any, *, caller: Caller) -> dict[str, Any]:
        key = parse_arn(arn if isinstance(arn, str) else "")
        caller.principal.require(key.mesh, Role.ADMIN, f"tag {key}")
        new_tags = inputs.tags(tags)

        def work(tx: Transaction) -> dict[str, Any]:
            record = _existing(tx, key)
            merged = {t.key: t for t in record.tags}
            merged.update({t.key: t for t in new_tags})
            inputs.tags([{"key": t.key, "value": t.value} for t in merged.values()])
            inputs.mesh_tags(key.kind, list(merged.values()))
            _audit(tx, caller, "TagResource", tx.set_tags(key, list(merged.values())))
            return {}

        return self.store.transact(work)

    def untag(self, arn: Any, tag_keys: Any, *, caller: Caller) -> dict[str, Any]:
        key = parse_arn(arn if isinstance(arn, str) else "")
        caller.principal.require(key.mesh, Role.ADMIN, f"untag {key}")
        drop = set(inputs.tag_keys(tag_keys))

        def work(tx: Transaction) -> dict[str, Any]:
            record = _existing(tx, key)
            kept = [t for t in record.tags if t.key not in drop]
            _audit(tx, caller, "UntagResource", tx.set_tags(key, kept))
            return {}

        return self.store.transact(work)

    def list_tags(
        self, arn: Any, *, caller: Caller, limit: Any = None, next_token: Any = None
    ) -> dict[str, Any]:
        key = parse_arn(arn if isinstance(arn, str) else "")
        caller.principal.require(key.mesh, Role.VIEWER, f"list the tags of {key}")
        count = inputs.limit(limit, MAX_TAG_LIST)
        after = inputs.decode_token(next_token)
        record = _existing(self.store, key)
        ordered = sorted(record.tags, key=lambda t: t.key)
        if after is not None:
            ordered = [t for t in ordered if t.key > after]
        page = ordered[:count]
        more = len(ordered) > count
        return {
            "tags": [{"key": t.key, "value": t.value} for t in page],
            "nextToken": inputs.encode_token(page[-1].key) if more else None,
        }
