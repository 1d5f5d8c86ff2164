"""The App Mesh REST operations: their HTTP methods, URI templates and names.

One table drives both request dispatch (``meshplane.api.app``) and the OpenAPI document
(``meshplane.api.openapi``).  Paths are matched on the raw, still-encoded path split at '/',
so a name holding an encoded '/' can never be mistaken for a path separator.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

from meshplane.model.kinds import APP_MESH_KINDS, Kind

PREFIX = "/v20190125"


class Action(StrEnum):
    CREATE = "Create"
    DESCRIBE = "Describe"
    UPDATE = "Update"
    DELETE = "Delete"
    LIST = "List"
    TAG = "TagResource"
    UNTAG = "UntagResource"
    LIST_TAGS = "ListTagsForResource"


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    method: str
    template: str
    action: Action
    kind: Kind | None = None

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.template.strip("/").split("/"))


def _collection(kind: Kind) -> str:
    if kind is Kind.MESH:
        return f"{PREFIX}/meshes"
    parent = kind.parent
    if parent is not None:  # note the singular parent segment App Mesh uses
        return f"{PREFIX}/meshes/{{meshName}}/{parent.value}/{{{parent.name_field}}}/{kind.plural}"
    return f"{PREFIX}/meshes/{{meshName}}/{kind.plural}"


def _item(kind: Kind) -> str:
    name = "meshName" if kind is Kind.MESH else kind.name_field
    return f"{_collection(kind)}/{{{name}}}"


def _operations() -> Iterator[Operation]:
    for kind in APP_MESH_KINDS:
        title = kind.title
        yield Operation(f"Create{title}", "PUT", _collection(kind), Action.CREATE, kind)
        yield Operation(
            f"List{title}s" if kind is not Kind.MESH else "ListMeshes",
            "GET",
            _collection(kind),
            Action.LIST,
            kind,
        )
        yield Operation(f"Describe{title}", "GET", _item(kind), Action.DESCRIBE, kind)
        yield Operation(f"Update{title}", "PUT", _item(kind), Action.UPDATE, kind)
        yield Operation(f"Delete{title}", "DELETE", _item(kind), Action.DELETE, kind)
    yield Operation("TagResource", "PUT", f"{PREFIX}/tag", Action.TAG)
    yield Operation("UntagResource", "PUT", f"{PREFIX}/untag", Action.UNTAG)
    yield Operation("ListTagsForResource", "GET", f"{PREFIX}/tags", Action.LIST_TAGS)


OPERATIONS: tuple[Operation, ...] = tuple(_operations())


def match(method: str, raw_path: str) -> tuple[Operation, dict[str, str]] | None:
    """The operation for a request and its decoded URI labels, or None."""
    parts = raw_path.strip("/").split("/")
    for op in OPERATIONS:
        if op.method != method or len(op.segments) != len(parts):
            continue
        labels: dict[str, str] = {}
        for want, got in zip(op.segments, parts, strict=True):
            if want.startswith("{"):
                labels[want[1:-1]] = unquote(got)
            elif want != got:
                break
        else:
            return op, labels
    return None


def allowed_methods(raw_path: str) -> list[str]:
    return sorted({op.method for op in OPERATIONS if match(op.method, raw_path)})
