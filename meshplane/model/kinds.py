"""The seven App Mesh resource kinds and how each is named, nested and addressed.

Used by the store (keys), the service layer (rules per kind), the REST API (URIs and JSON
field names) and the CLI (kind names on the command line).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """An App Mesh resource kind; the value is the ARN path segment."""

    MESH = "mesh"
    VIRTUAL_NODE = "virtualNode"
    VIRTUAL_SERVICE = "virtualService"
    VIRTUAL_ROUTER = "virtualRouter"
    ROUTE = "route"
    VIRTUAL_GATEWAY = "virtualGateway"
    GATEWAY_ROUTE = "gatewayRoute"

    @property
    def name_field(self) -> str:
        """The JSON member holding this kind's name, e.g. ``virtualNodeName``."""
        return f"{self.value}Name"

    @property
    def parent(self) -> Kind | None:
        """The kind a resource of this kind lives under (besides its mesh)."""
        return _PARENTS.get(self)

    @property
    def plural(self) -> str:
        """The List* result key and URI collection segment, e.g. ``virtualNodes``."""
        return f"{self.value}s" if self is not Kind.MESH else "meshes"

    @property
    def title(self) -> str:  # type: ignore[override]
        """The kind as App Mesh operation names spell it, e.g. ``VirtualNode``."""
        return self.value[0].upper() + self.value[1:]


_PARENTS = {Kind.ROUTE: Kind.VIRTUAL_ROUTER, Kind.GATEWAY_ROUTE: Kind.VIRTUAL_GATEWAY}


@dataclass(frozen=True, order=True, slots=True)
class ResourceKey:
    """Identifies one resource: its kind, mesh, parent name ('' if none) and name."""

    kind: Kind
    mesh: str
    name: str
    parent: str = ""

    def arn_path(self) -> str:
        """``mesh/<mesh>/<kind>/<name>`` (with the parent segment for routes)."""
        if self.kind is Kind.MESH:
            return f"mesh/{self.mesh}"
        parent_kind = self.kind.parent
        if parent_kind is not None:
            parent = f"{parent_kind.value}/{self.parent}"
            return f"mesh/{self.mesh}/{parent}/{self.kind.value}/{self.name}"
        return f"mesh/{self.mesh}/{self.kind.value}/{self.name}"

    def __str__(self) -> str:
        return self.arn_path()
