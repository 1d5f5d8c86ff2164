"""Who may do what: principals, their per-mesh roles, and the checks made before any change.

A principal (the caller of a request: an API token, or the anonymous caller of an open,
loopback-only server) holds grants; a grant is a role on one mesh or on every mesh (``'*'``).
Roles are ordered, each including the ones below it:

- viewer: describe and list;
- editor: create, update and delete the resources in the mesh;
- admin: everything in the mesh: the mesh resource itself, tags, and the mesh's API tokens.

The service layer (``meshplane.service.resources``, ``apply``, ``tokens``) calls ``require``
before it reads or writes, so a refused call changes nothing; the API filters what it lists
with ``can``/``meshes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from meshplane.errors import ForbiddenError

ALL_MESHES = "*"


class Role(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def includes(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANKS = {Role.VIEWER: 1, Role.EDITOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class Grant:
    mesh: str  # a mesh name, or '*' for every mesh
    role: Role


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request, as the audit log names it, and what it may do."""

    id: str
    grants: tuple[Grant, ...] = ()

    def role_on(self, mesh: str) -> Role | None:
        """The highest role this principal has on ``mesh`` ('*': its role on every mesh)."""
        held = [g.role for g in self.grants if g.mesh in (mesh, ALL_MESHES)]
        return max(held, key=lambda role: role.rank) if held else None

    def can(self, mesh: str, role: Role) -> bool:
        held = self.role_on(mesh)
        return held is not None and held.includes(role)

    def can_anywhere(self, role: Role) -> bool:
        """Whether this principal has ``role`` on at least one mesh."""
        return any(grant.role.includes(role) for grant in self.grants)

    def meshes(self, role: Role) -> frozenset[str] | None:
        """The meshes on which this principal has ``role``; None means every mesh."""
        if self.can(ALL_MESHES, role):
            return None
        return frozenset(g.mesh for g in self.grants if g.role.includes(role))

    def require(self, mesh: str, role: Role, action: str) -> None:
        """Raise ForbiddenError unless this principal has ``role`` on ``mesh``."""
        if self.can(mesh, role):
            return
        where = "every mesh ('*')" if mesh == ALL_MESHES else f"mesh {mesh!r}"
        raise ForbiddenError(f"{self.id} may not {action}: that needs the {role} role on {where}")

    def require_anywhere(self, role: Role, action: str) -> None:
        if not self.can_anywhere(role):
            raise ForbiddenError(
                f"{self.id} may not {action}: that needs the {role} role on a mesh"
            )


ANONYMOUS = Principal("anonymous@loopback", (Grant(ALL_MESHES, Role.ADMIN),))
"""The caller without credentials of a server that does not require them (loopback only)."""
