"""Immutable records the store hands out: resources as stored, and change-feed entries.

Produced by the store backends, read by the service layer (API answers), the manifest apply
path and the xDS control loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from meshplane.model.kinds import Kind, ResourceKey


class ChangeOp(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Tag:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Record:
    """One stored resource. ``spec`` is the validated App Mesh JSON spec."""

    key: ResourceKey
    spec: Mapping[str, Any]
    uid: str
    version: int
    created_at: float
    updated_at: float
    mesh_owner: str
    resource_owner: str
    revision: int
    tags: tuple[Tag, ...] = ()
    status: str = "ACTIVE"

    @property
    def kind(self) -> Kind:
        return self.key.kind


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change feed: what happened to which resource at which revision."""

    revision: int
    op: ChangeOp
    key: ResourceKey


@dataclass(frozen=True, slots=True)
class Namespace:
    """A Kubernetes-style namespace known to meshplane (its labels select meshes)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """A Kubernetes manifest applied through ``meshplane apply``, kept to resolve references."""

    kind: str
    namespace: str
    name: str
    body: Mapping[str, Any]
    source: str
    revision: int


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A credential for the REST API: a role on one mesh (or on every mesh, ``mesh == '*'``).

    The secret itself is never stored: ``secret_hash`` (sha256) checks the bearer form, and
    ``sealed_secret`` (encrypted with the server's key) lets the server verify SigV4
    signatures, which need the raw secret.
    """

    id: str
    mesh: str
    role: str
    secret_hash: str
    sealed_secret: str
    description: str
    created_at: float
    created_by: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change, as the audit log keeps it: who, when, what, and the resulting version."""

    seq: int
    at: float
    principal: str
    operation: str
    mesh: str  # '' for changes outside any mesh (namespace labels), '*' for global tokens
    resource: str  # ``mesh/m/virtualNode/n``, ``namespace/ns``, ``token/ID``
    version: int | None
    revision: int
    via: str  # api | apply | delete | label | token
