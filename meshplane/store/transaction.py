"""One unit of work of the SQL store: reads through the batch's and its own pending changes,
writes to SQL inside its savepoint and to its overlay.

Idempotency tokens are read from SQL (the unit of work runs under the store's write lock, so
every replica sees the tokens every other one recorded); writes to the tables replicas keep in
memory besides resources (API tokens, manifests, namespaces) add a ``state_changes`` row.

``meshplane.store.sql.SqlStore`` runs each ``transact(work)`` call as one of these, several
per committed batch (group commit).  Also the row <-> record conversions.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from meshplane.errors import ConflictError, NotFoundError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store.read_model import ManifestKey, Overlay, ReadModel
from meshplane.store.records import (
    ApiToken,
    Change,
    ChangeOp,
    Namespace,
    Record,
    StoredManifest,
    Tag,
)
from meshplane.store.schema import (
    DELETE_API_TOKEN,
    DELETE_MANIFEST,
    DELETE_NAMESPACE,
    DELETE_RESOURCE,
    DELETE_SECRET,
    DELETE_TOKEN,
    INSERT_API_TOKEN,
    INSERT_AUDIT,
    INSERT_CHANGE,
    INSERT_MANIFEST,
    INSERT_NAMESPACE,
    INSERT_RESOURCE,
    INSERT_SECRET,
    INSERT_STATE_CHANGE,
    INSERT_TOKEN,
    SELECT_TOKEN,
    UPDATE_RESOURCE,
)

TOKEN_TTL_SECONDS = 24 * 3600


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _tags_json(tags: Iterable[Tag]) -> str:
    return _dumps([[t.key, t.value] for t in tags])


def _key_params(key: ResourceKey) -> dict[str, str]:
    return {
        "k_kind": key.kind.value,
        "k_mesh": key.mesh,
        "k_parent": key.parent,
        "k_name": key.name,
    }


def select_records(records: Iterable[Record], after: str | None, limit: int | None) -> list[Record]:
    ordered = sorted(records, key=lambda r: (r.key.mesh, r.key.parent, r.key.name))
    if after is not None:
        ordered = [r for r in ordered if r.key.name > after]
    return ordered[:limit] if limit is not None else ordered


class SqlTransaction:
    """One unit of work: reads see committed state plus earlier work of the same batch plus
    its own writes; writes go to SQL (inside its savepoint) and to its overlay."""

    def __init__(self, conn: Connection, model: ReadModel, batch: Overlay, revision: int) -> None:
        self._conn = conn
        self._model = model
        self._batch = batch
        self.overlay = Overlay()
        self.revision = revision
        self.changes: list[Change] = []
        self._now = time.time()

    # reads ------------------------------------------------------------------------------

    def get(self, key: ResourceKey) -> Record | None:
        for overlay in (self.overlay, self._batch):
            if key in overlay.records:
                return overlay.records[key]
        return self._model.get(key)

    def _merged(self, base: Iterable[Record], keep: Callable[[ResourceKey], bool]) -> list[Record]:
        merged = {r.key: r for r in base}
        for overlay in (self._batch, self.overlay):
            for key, record in overlay.records.items():
                if not keep(key):
                    continue
                if record is None:
                    merged.pop(key, None)
                else:
                    merged[key] = record
        return list(merged.values())

    def list_kind(
        self,
        kind: Kind,
        mesh: str | None = None,
        parent: str | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        def keep(key: ResourceKey) -> bool:
            return (
                key.kind is kind
                and (mesh is None or key.mesh == mesh)
                and (parent is None or key.parent == parent)
            )

        return select_records(
            self._merged(self._model.group(kind, mesh, parent), keep), after, limit
        )

    def mesh_records(self, mesh: str) -> list[Record]:
        return self._merged(self._model.mesh(mesh), lambda key: key.mesh == mesh)

    def namespaces(self) -> list[Namespace]:
        merged = self._model.namespaces()
        merged.update(self._batch.namespaces)
        merged.update(self.overlay.namespaces)
        return [merged[name] for name in sorted(merged)]

    def manifests(self) -> list[StoredManifest]:
        merged: dict[ManifestKey, StoredManifest | None] = dict(self._model.manifests())
        merged.update(self._batch.manifests)
        merged.update(self.overlay.manifests)
        return [m for _, m in sorted(merged.items()) if m is not None]

    def api_token(self, token_id: str) -> ApiToken | None:
        for overlay in (self.overlay, self._batch):
            if token_id in overlay.api_tokens:
                return overlay.api_tokens[token_id]
        return self._model.api_token(token_id)

    def secret(self, name: str) -> str | None:
        for overlay in (self.overlay, self._batch):
            if name in overlay.secrets:
                return overlay.secrets[name]
        return self._model.secret(name)

    def secret_names(self) -> list[str]:
        return sorted({*self._model.secrets(), *self._batch.secrets, *self.overlay.secrets})

    def api_tokens(self) -> list[ApiToken]:
        merged: dict[str, ApiToken | None] = dict(self._model.api_tokens())
        merged.update(self._batch.api_tokens)
        merged.update(self.overlay.api_tokens)
        return [t for _, t in sorted(merged.items()) if t is not None]

    # writes -----------------------------------------------------------------------------

    def _advance(self, op: ChangeOp, key: ResourceKey) -> int:
        self.revision += 1
        self._conn.execute(
            INSERT_CHANGE,
            {
                "revision": self.revision,
                "op": op.value,
                "kind": key.kind.value,
                "mesh": key.mesh,
                "parent": key.parent,
                "name": key.name,
                "at": self._now,
            },
        )
        self.changes.append(Change(self.revision, op, key))
        return self.revision

    def _existing(self, key: ResourceKey) -> Record:
        current = self.get(key)
        if current is None:
            raise NotFoundError(f"{key.kind.title} {key.name!r} not found ({key})")
        return current

    def create(
        self,
        key: ResourceKey,
        spec: Mapping[str, Any],
        *,
        mesh_owner: str,
        resource_owner: str,
        tags: Sequence[Tag] = (),
    ) -> Record:
        if self.get(key) is not None:
            raise ConflictError(f"{key.kind.title} {key.name!r} already exists ({key})")
        record = Record(
            key=key,
            spec=dict(spec),
            uid=str(uuid.uuid4()),
            version=1,
            created_at=self._now,
            updated_at=self._now,
            mesh_owner=mesh_owner,
            resource_owner=resource_owner,
            revision=self._advance(ChangeOp.CREATE, key),
            tags=tuple(tags),
        )
        self._conn.execute(
            INSERT_RESOURCE,
            {
                "kind": key.kind.value,
                "mesh": key.mesh,
                "parent": key.parent,
                "name": key.name,
                "uid": record.uid,
                "version": 1,
                "created_at": self._now,
                "updated_at": self._now,
                "mesh_owner": mesh_owner,
                "resource_owner": resource_owner,
                "revision": record.revision,
                "spec": _dumps(record.spec),
                "tags": _tags_json(tags),
            },
        )
        self.overlay.records[key] = record
        return record

    def _rewrite(self, record: Record) -> Record:
        self._conn.execute(
            UPDATE_RESOURCE,
            {
                **_key_params(record.key),
                "p_spec": _dumps(record.spec),
                "p_version": record.version,
                "p_updated_at": record.updated_at,
                "p_revision": record.revision,
                "p_tags": _tags_json(record.tags),
            },
        )
        self.overlay.records[record.key] = record
        return record

    def update(
        self, key: ResourceKey, spec: Mapping[str, Any], *, expected_version: int | None = None
    ) -> Record:
        current = self._existing(key)
        if expected_version is not None and current.version != expected_version:
            raise ConflictError(
                f"{key.kind.title} {key.name!r} was changed by another request while this one "
                f"ran (version {current.version}, this update read version {expected_version});"
                " read it again and retry"
            )
        return self._rewrite(
            Record(
                key=key,
                spec=dict(spec),
                uid=current.uid,
                version=current.version + 1,
                created_at=current.created_at,
                updated_at=self._now,
                mesh_owner=current.mesh_owner,
                resource_owner=current.resource_owner,
                revision=self._advance(ChangeOp.UPDATE, key),
                tags=current.tags,
            )
        )

    def set_tags(self, key: ResourceKey, tags: Sequence[Tag]) -> Record:
        # A change-feed entry: tags can steer the data plane (a mesh's meshplane.io/mtls).
        current = self._existing(key)
        revision = self._advance(ChangeOp.UPDATE, key)
        return self._rewrite(
            Record(**{**_fields(current), "tags": tuple(tags), "revision": revision})
        )

    def delete(self, key: ResourceKey) -> Record:
        current = self._existing(key)
        self._advance(ChangeOp.DELETE, key)
        self._conn.execute(DELETE_RESOURCE, _key_params(key))
        self.overlay.records[key] = None
        return Record(**{**_fields(current), "status": "DELETED"})

    def client_token(self, token: str) -> tuple[str, Any] | None:
        row = self._conn.execute(SELECT_TOKEN, {"token": token}).first()
        if row is None or row.created_at < self._now - TOKEN_TTL_SECONDS:
            return None
        return str(row.fingerprint), json.loads(row.answer)

    def remember_client_token(self, token: str, fingerprint: str, answer: Any) -> None:
        self._conn.execute(DELETE_TOKEN, {"token": token})
        self._conn.execute(
            INSERT_TOKEN,
            {
                "token": token,
                "fingerprint": fingerprint,
                "answer": _dumps(answer),
                "created_at": self._now,
            },
        )

    def _state_changed(self, what: str) -> None:
        self._conn.execute(INSERT_STATE_CHANGE, {"what": what, "at": self._now})

    def put_namespace(self, namespace: Namespace) -> None:
        self._conn.execute(DELETE_NAMESPACE, {"name": namespace.name})
        self._conn.execute(
            INSERT_NAMESPACE, {"name": namespace.name, "labels": _dumps(dict(namespace.labels))}
        )
        self.overlay.namespaces[namespace.name] = namespace
        self._state_changed("namespaces")

    def put_manifest(self, kind: str, namespace: str, name: str, body: Any, source: str) -> None:
        self.delete_manifest(kind, namespace, name)
        self._conn.execute(
            INSERT_MANIFEST,
            {
                "kind": kind,
                "namespace": namespace,
                "name": name,
                "body": _dumps(body),
                "source": source,
                "revision": self.revision,
            },
        )
        self.overlay.manifests[(kind, namespace, name)] = StoredManifest(
            kind, namespace, name, body, source, self.revision
        )

    def delete_manifest(self, kind: str, namespace: str, name: str) -> None:
        self._conn.execute(DELETE_MANIFEST, {"kind": kind, "namespace": namespace, "name": name})
        self.overlay.manifests[(kind, namespace, name)] = None
        self._state_changed("manifests")

    def put_api_token(self, token: ApiToken) -> None:
        self._conn.execute(DELETE_API_TOKEN, {"id": token.id})
        self._conn.execute(
            INSERT_API_TOKEN, {name: getattr(token, name) for name in ApiToken.__slots__}
        )
        self.overlay.api_tokens[token.id] = token
        self._state_changed("api_tokens")

    def put_secret(self, name: str, sealed: str) -> None:
        """Store a sealed value (``meshplane.store.vault``) under ``name``."""
        self._conn.execute(DELETE_SECRET, {"name": name})
        self._conn.execute(INSERT_SECRET, {"name": name, "sealed": sealed, "updated_at": self._now})
        self.overlay.secrets[name] = sealed
        self._state_changed("secrets")

    def delete_api_token(self, token_id: str) -> None:
        self._conn.execute(DELETE_API_TOKEN, {"id": token_id})
        self.overlay.api_tokens[token_id] = None
        self._state_changed("api_tokens")

    def audit(
        self,
        principal: str,
        operation: str,
        *,
        mesh: str,
        resource: str,
        version: int | None = None,
        via: str = "api",
    ) -> None:
        self._conn.execute(
            INSERT_AUDIT,
            {
                "at": self._now,
                "principal": principal,
                "operation": operation,
                "mesh": mesh,
                "resource": resource,
                "version": version,
                "revision": self.revision,
                "via": via,
            },
        )


def _fields(record: Record) -> dict[str, Any]:
    return {name: getattr(record, name) for name in Record.__slots__}


def record_from_row(m: Any) -> Record:
    return Record(
        key=ResourceKey(Kind(m["kind"]), m["mesh"], m["name"], m["parent"]),
        spec=json.loads(m["spec"]),
        uid=m["uid"],
        version=m["version"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        mesh_owner=m["mesh_owner"],
        resource_owner=m["resource_owner"],
        revision=m["revision"],
        tags=tuple(Tag(k, v) for k, v in json.loads(m["tags"])),
    )
