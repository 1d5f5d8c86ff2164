"""App Mesh ARNs: ``arn:aws:appmesh:<region>:<account>:mesh/<mesh>[/<kind>/<name>...]``.

Built for every API answer; parsed for the tag operations and for ``*ARN`` references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshplane.errors import BadRequestError
from meshplane.model.kinds import APP_MESH_KINDS, Kind, ResourceKey

_ARN = re.compile(r"^arn:aws[a-z-]*:appmesh(?:-preview)?:([^:]*):(\d{12}):(mesh/.+)$")
_KINDS = {kind.value: kind for kind in APP_MESH_KINDS}


@dataclass(frozen=True, slots=True)
class Partition:
    """Where resources live: the region and account that ARNs name."""

    region: str
    account_id: str

    def arn(self, key: ResourceKey, mesh_owner: str | None = None) -> str:
        account = mesh_owner or self.account_id
        return f"arn:aws:appmesh:{self.region}:{account}:{key.arn_path()}"


def parse_arn(arn: str, *, field: str = "resourceArn") -> ResourceKey:
    """The resource key named by an App Mesh ARN; BadRequestError if it is not one."""
    match = _ARN.match(arn)
    if match is None:
        raise BadRequestError(
            f"{field}: {arn!r} is not an App Mesh ARN "
            "(arn:aws:appmesh:<region>:<account>:mesh/<mesh>[/<kind>/<name>])"
        )
    return parse_resource_path(match.group(3), field=field)


def parse_resource_path(path: str, *, field: str = "resourceArn") -> ResourceKey:
    """Parse ``mesh/<m>[/<kind>/<name>[/<kind>/<name>]]`` (the ARN resource part)."""
    parts = path.split("/")
    problem = f"{field}: {path!r} does not name an App Mesh resource"
    if len(parts) < 2 or parts[0] != "mesh" or not parts[1]:
        raise BadRequestError(problem)
    mesh = parts[1].split("@", 1)[0]
    if len(parts) == 2:
        return ResourceKey(Kind.MESH, mesh, mesh)
    if len(parts) == 4 and parts[2] in _KINDS and parts[3]:
        kind = _KINDS[parts[2]]
        if kind.parent is None and kind is not Kind.MESH:
            return ResourceKey(kind, mesh, parts[3])
    if len(parts) == 6 and parts[2] in _KINDS and parts[4] in _KINDS and parts[3] and parts[5]:
        kind = _KINDS[parts[4]]
        if kind.parent is not None and kind.parent.value == parts[2]:
            return ResourceKey(kind, mesh, parts[5], parts[3])
    raise BadRequestError(problem)
