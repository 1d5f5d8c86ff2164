"""Which mesh resource an Envoy proxy is: parsing the Envoy node id.

An Envoy connects with ``node.id`` set the App Mesh way (``APPMESH_RESOURCE_ARN``):
``mesh/<mesh>/virtualNode/<name>``, ``mesh/<mesh>/virtualGateway/<name>`` or the full ARN
``arn:aws:appmesh:<region>:<account>:mesh/<mesh>/virtualNode/<name>``.  The mesh segment may
carry an owner (``<mesh>@<account>``).  Every form normalizes to one node key,
``mesh/<mesh>/<kind>/<name>``, under which the snapshot cache stores a proxy's snapshot, so
all replicas of a gateway share one snapshot.

Called by the ADS server (first request of every stream), the snapshot cache (keys) and by
producers (the control loop) that compute snapshots per identity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshplane.errors import BadRequestError
from meshplane.model.kinds import Kind

_PROXY_KINDS = {
    Kind.VIRTUAL_NODE.value: Kind.VIRTUAL_NODE,
    Kind.VIRTUAL_GATEWAY.value: Kind.VIRTUAL_GATEWAY,
}
_ARN = re.compile(r"^arn:[^:]+:appmesh:[^:]*:(?P<account>[^:]*):(?P<path>.+)$")
_NAME = re.compile(r"^[^/\s@]{1,255}$")


class InvalidNodeIdError(BadRequestError):
    """An Envoy node id that names no virtual node or virtual gateway."""


@dataclass(frozen=True, slots=True, order=True)
class ProxyIdentity:
    """The mesh resource a proxy runs as: a virtual node (sidecar) or a virtual gateway."""

    mesh: str
    kind: Kind
    name: str
    mesh_owner: str = ""

    @property
    def key(self) -> str:
        """The node key: ``mesh/<mesh>/<kind>/<name>`` (owner left out)."""
        return f"mesh/{self.mesh}/{self.kind.value}/{self.name}"

    def __str__(self) -> str:
        return self.key


def parse_node_id(node_id: str) -> ProxyIdentity:
    """Parse an Envoy node id in any accepted form; raise :class:`InvalidNodeIdError` else."""
    if not node_id:
        raise InvalidNodeIdError(
            "the Envoy node id is empty; set it to mesh/<mesh>/virtualNode/<name>"
        )
    path, owner = node_id, ""
    arn = _ARN.match(node_id)
    if arn is not None:
        path, owner = arn.group("path"), arn.group("account")
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "mesh" or parts[2] not in _PROXY_KINDS:
        raise InvalidNodeIdError(
            f"node id {node_id!r} is not mesh/<mesh>/virtualNode/<name>, "
            "mesh/<mesh>/virtualGateway/<name> or the ARN of one"
        )
    mesh, name = parts[1], parts[3]
    if "@" in mesh:
        mesh, _, owner = mesh.partition("@")
    if not _NAME.match(mesh) or not _NAME.match(name) or "@" in owner:
        raise InvalidNodeIdError(f"node id {node_id!r} has an invalid mesh or resource name")
    return ProxyIdentity(mesh=mesh, kind=_PROXY_KINDS[parts[2]], name=name, mesh_owner=owner)


def node_key(node: str | ProxyIdentity) -> str:
    """The node key of a node id or identity (see :attr:`ProxyIdentity.key`)."""
    identity = node if isinstance(node, ProxyIdentity) else parse_node_id(node)
    return identity.key
