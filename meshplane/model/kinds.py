"""The seven App Mesh resource kinds and how each is named, nested and addressed; and the
kinds meshplane stores beside them (the Cloud Map registry, virtual IPs).

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
    # Not App Mesh resources: the Cloud Map registry (mesh '' — outside every mesh; a
    # service's parent is its namespace id, an instance's its service id) and the virtual IP
    # of each virtual service (in its mesh, named after the service).
    CLOUD_MAP_NAMESPACE = "cloudMapNamespace"
    CLOUD_MAP_SERVICE = "cloudMapService"
    CLOUD_MAP_INSTANCE = "cloudMapInstance"
    CLOUD_MAP_OPERATION = "cloudMapOperation"
    VIRTUAL_IP = "virtualIp"

    @property
    def is_app_mesh(self) -> bool:
        """Whether this is one of the seven App Mesh resource kinds."""
        return self in APP_MESH_KINDS

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


APP_MESH_KINDS = (
    Kind.MESH,
    Kind.VIRTUAL_NODE,
    Kind.VIRTUAL_SERVICE,
    Kind.VIRTUAL_ROUTER,
    Kind.ROUTE,
    Kind.VIRTUAL_GATEWAY,
    Kind.GATEWAY_ROUTE,
)
REGISTRY_MESH = ""
"""The ``mesh`` of the Cloud Map registry's records (the registry is outside every mesh)."""

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
