"""The store's in-memory read model, and the overlay a unit of work writes into.

``ReadModel`` holds every committed record, namespace, manifest, API token and sealed secret
of the store, indexed for the lookups the service layer makes, so reads never touch SQL (the
audit log and idempotency tokens are the exceptions: they are read from SQL).  The SQL store
loads the model at start, applies each batch it commits, and follows what other writers
sharing the database commit (the change feeds).  ``Overlay`` is a unit of work's pending
changes; reads inside a transaction look through overlays to the model.  Used by
``meshplane.store.sql`` only.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store.records import ApiToken, Namespace, Record, StoredManifest

Group = tuple[Kind, str, str]
ManifestKey = tuple[str, str, str]


@dataclass(slots=True)
class Overlay:
    """Pending changes of a unit of work (None means deleted)."""

    records: dict[ResourceKey, Record | None] = field(default_factory=dict)
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    manifests: dict[ManifestKey, StoredManifest | None] = field(default_factory=dict)
    api_tokens: dict[str, ApiToken | None] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def absorb(self, other: Overlay) -> None:
        self.records.update(other.records)
        self.namespaces.update(other.namespaces)
        self.manifests.update(other.manifests)
        self.api_tokens.update(other.api_tokens)
        self.secrets.update(other.secrets)


class ReadModel:
    """Committed state, indexed; safe to read from many threads while one thread writes."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._records: dict[ResourceKey, Record] = {}
        self._groups: dict[Group, dict[str, Record]] = {}
        self._order: dict[Group, list[str]] = {}  # the names of each group, sorted
        self._meshes: dict[str, dict[ResourceKey, Record]] = {}
        self._namespaces: dict[str, Namespace] = {}
        self._manifests: dict[ManifestKey, StoredManifest] = {}
        self._api_tokens: dict[str, ApiToken] = {}
        self._secrets: dict[str, str] = {}

    # reads ------------------------------------------------------------------------------

    def get(self, key: ResourceKey) -> Record | None:
        return self._records.get(key)

    def group(self, kind: Kind, mesh: str | None, parent: str | None) -> list[Record]:
        with self._lock:
            if mesh is not None and parent is not None:
                return list(self._groups.get((kind, mesh, parent), {}).values())
            return [
                record
                for (k, m, p), members in self._groups.items()
                if k is kind and (mesh is None or m == mesh) and (parent is None or p == parent)
                for record in members.values()
            ]

    def page(
        self, kind: Kind, mesh: str, parent: str, after: str | None, limit: int | None
    ) -> list[Record]:
        """Records of one group in name order, names > ``after``, at most ``limit``."""
        with self._lock:
            names = self._order.get((kind, mesh, parent), [])
            start = bisect.bisect_right(names, after) if after is not None else 0
            end = len(names) if limit is None else start + limit
            members = self._groups[(kind, mesh, parent)] if names else {}
            return [members[name] for name in names[start:end]]

    def mesh(self, mesh: str) -> list[Record]:
        with self._lock:
            return list(self._meshes.get(mesh, {}).values())

    def namespaces(self) -> dict[str, Namespace]:
        with self._lock:
            return dict(self._namespaces)

    def manifests(self) -> dict[ManifestKey, StoredManifest]:
        with self._lock:
            return dict(self._manifests)

    def api_token(self, token_id: str) -> ApiToken | None:
        return self._api_tokens.get(token_id)

    def api_tokens(self) -> dict[str, ApiToken]:
        with self._lock:
            return dict(self._api_tokens)

    def secret(self, name: str) -> str | None:
        return self._secrets.get(name)

    def secrets(self) -> dict[str, str]:
        with self._lock:
            return dict(self._secrets)

    # writes (the writer thread only) ----------------------------------------------------

    def apply(self, overlay: Overlay) -> None:
        with self._lock:
            for key, record in overlay.records.items():
                group = (key.kind, key.mesh, key.parent)
                if record is None:
                    if self._records.pop(key, None) is not None:
                        names = self._order[group]
                        del names[bisect.bisect_left(names, key.name)]
                    self._groups.get(group, {}).pop(key.name, None)
                    self._meshes.get(key.mesh, {}).pop(key, None)
                    if not self._groups.get(group, True):
                        del self._groups[group]
                        del self._order[group]
                    if not self._meshes.get(key.mesh, True):
                        del self._meshes[key.mesh]
                else:
                    if key not in self._records:
                        bisect.insort(self._order.setdefault(group, []), key.name)
                    self._records[key] = record
                    self._groups.setdefault(group, {})[key.name] = record
                    self._meshes.setdefault(key.mesh, {})[key] = record
            self._namespaces.update(overlay.namespaces)
            for mkey, manifest in overlay.manifests.items():
                if manifest is None:
                    self._manifests.pop(mkey, None)
                else:
                    self._manifests[mkey] = manifest
            self._secrets.update(overlay.secrets)
            for token_id, api_token in overlay.api_tokens.items():
                if api_token is None:
                    self._api_tokens.pop(token_id, None)
                else:
                    self._api_tokens[token_id] = api_token
