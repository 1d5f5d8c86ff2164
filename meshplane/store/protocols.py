"""The store seam, by concern: what every backend (SQLite, PostgreSQL) provides.

Callers see only these Protocols, each the narrowest one they need:

- :class:`ResourceStore`: resources, namespaces and the revisioned change feed (the service
  layer, the control loop);
- :class:`TokenStore`: API tokens (the token service, API authentication);
- :class:`AuditLog`: the audit log (the admin API);
- :class:`SecretStore`: the sealed identity state (``meshplane.store.vault``);
- :class:`ManifestStore`: the manifests applied, beside the resources they became (manifest
  apply);
- :class:`Store`: all of them, and ``close`` (what ``open_store`` returns; the server holds it).

Reads happen on the store directly; every write happens inside ``store.transact(work)``: the
store calls ``work(tx)`` with a :class:`Transaction`, commits atomically (or, if ``work``
raises, keeps nothing of it and re-raises), advances the store revision once per changed
resource, appends to the change feed, and returns ``work``'s result once the change is
durable.  One transaction spans every concern (a change and its audit entry commit together).

A new backend implements :class:`Store` and passes the conformance suite ``tests/test_store.py``
(add it to ``BACKENDS`` and the ``database_url`` fixture in ``tests/support/stores.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store.records import (
    ApiToken,
    AuditEntry,
    Change,
    Namespace,
    Record,
    StoredManifest,
    Tag,
)

T = TypeVar("T")


class ResourceReader(Protocol):
    """Reads of resources and namespaces (on the store, or inside a transaction)."""

    def get(self, key: ResourceKey) -> Record | None: ...

    def list_kind(
        self,
        kind: Kind,
        mesh: str | None = None,
        parent: str | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Records of ``kind`` (in ``mesh``/``parent`` if given), ordered by name, names > after."""
        ...

    def mesh_records(self, mesh: str) -> list[Record]:
        """Every record of a mesh, the mesh itself included."""
        ...

    def namespaces(self) -> list[Namespace]: ...


class ManifestReader(Protocol):
    def manifests(self) -> list[StoredManifest]: ...


class TokenReader(Protocol):
    def api_token(self, token_id: str) -> ApiToken | None: ...

    def api_tokens(self) -> list[ApiToken]:
        """Every API token, ordered by id."""
        ...


class SecretReader(Protocol):
    def secret(self, name: str) -> str | None:
        """A sealed value of the identity state (``meshplane.store.vault``), or None."""
        ...

    def secret_names(self) -> list[str]:
        """The names of every sealed value, sorted."""
        ...


class Reader(ResourceReader, ManifestReader, TokenReader, SecretReader, Protocol):
    """Every read a transaction offers."""


class Transaction(Reader, Protocol):
    """A unit of work; reads see its own writes."""

    # resources
    def create(
        self,
        key: ResourceKey,
        spec: Mapping[str, Any],
        *,
        mesh_owner: str,
        resource_owner: str,
        tags: Sequence[Tag] = (),
    ) -> Record: ...

    def update(
        self, key: ResourceKey, spec: Mapping[str, Any], *, expected_version: int | None = None
    ) -> Record:
        """Replace the spec; ConflictError if ``expected_version`` is given and is not the
        version the resource has now (another writer changed it since it was read)."""
        ...

    def set_tags(self, key: ResourceKey, tags: Sequence[Tag]) -> Record: ...

    def delete(self, key: ResourceKey) -> Record: ...

    def client_token(self, token: str) -> tuple[str, Any] | None:
        """The (request fingerprint, stored answer) recorded for an idempotency token."""
        ...

    def remember_client_token(self, token: str, fingerprint: str, answer: Any) -> None: ...

    def put_namespace(self, namespace: Namespace) -> None: ...

    # manifests
    def put_manifest(
        self, kind: str, namespace: str, name: str, body: Any, source: str
    ) -> None: ...

    def delete_manifest(self, kind: str, namespace: str, name: str) -> None: ...

    # tokens
    def put_api_token(self, token: ApiToken) -> None: ...

    def delete_api_token(self, token_id: str) -> None: ...

    # secrets
    def put_secret(self, name: str, sealed: str) -> None: ...

    # audit
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
        """Record who made a change of this unit of work; kept only if the change is."""
        ...


class Transactional(Protocol):
    def transact(self, work: Callable[[Transaction], T]) -> T: ...


class ResourceStore(ResourceReader, Transactional, Protocol):
    """Resources and namespaces, with a revisioned change feed."""

    @property
    def revision(self) -> int:
        """The revision of the last committed change (0 for an empty store)."""
        ...

    def changes_since(self, revision: int, limit: int = 10_000) -> list[Change]:
        """Changes after ``revision``, oldest first, none past :attr:`revision` (a change
        never shows before reads show its record)."""
        ...

    async def wait_for_revision(self, revision: int, timeout: float | None = None) -> int:
        """Wait until the store revision exceeds ``revision``; return the current revision."""
        ...


class TokenStore(TokenReader, Transactional, Protocol):
    """API tokens (their secrets sealed by the token service)."""


class SecretStore(SecretReader, Transactional, Protocol):
    """The sealed identity state (``meshplane.store.vault``: mesh CAs, token keys, ...)."""

    def add_secret_listener(self, listener: Callable[[set[str]], None]) -> None:
        """Call ``listener(names)`` when another writer sharing the database changed the
        sealed values ``names``."""
        ...


class ManifestStore(ManifestReader, ResourceReader, Transactional, Protocol):
    """Applied manifests, read beside the resources and namespaces they became."""


class AuditLog(Protocol):
    def audit_log(
        self,
        *,
        meshes: Collection[str] | None = None,
        since: float | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Audit entries in order (``seq > after``), only of ``meshes`` if given."""
        ...


class Store(ResourceStore, TokenStore, ManifestStore, SecretStore, AuditLog, Protocol):
    """A whole backend."""

    postgres: bool
    """Whether the database is PostgreSQL, which several replicas share."""

    def close(self) -> None: ...
