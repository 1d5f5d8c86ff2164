"""Parsing and dumping the seven App Mesh resource specs.

``parse_spec`` validates the JSON-decoded ``spec`` of a request and turns every failure into
one ``BadRequestError`` whose message names each failing member in App Mesh's JSON form
(``spec.listeners[0].portMapping.port: must be at most 65535 (got 70000)``); ``dump_spec``
gives back the JSON form.  Called by the service layer (Create*/Update*), the manifest
loader and the store (decoding stored specs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from meshplane.errors import BadRequestError
from meshplane.model.common import RuleError
from meshplane.model.gateway_route import GatewayRouteSpec
from meshplane.model.kinds import Kind
from meshplane.model.mesh import MeshSpec
from meshplane.model.route import RouteSpec
from meshplane.model.virtual_gateway import VirtualGatewaySpec
from meshplane.model.virtual_node import VirtualNodeSpec
from meshplane.model.virtual_service import VirtualRouterSpec, VirtualServiceSpec

Spec = (
    MeshSpec
    | VirtualNodeSpec
    | VirtualServiceSpec
    | VirtualRouterSpec
    | RouteSpec
    | VirtualGatewaySpec
    | GatewayRouteSpec
)

SPEC_TYPES: dict[Kind, type[BaseModel]] = {
    Kind.MESH: MeshSpec,
    Kind.VIRTUAL_NODE: VirtualNodeSpec,
    Kind.VIRTUAL_SERVICE: VirtualServiceSpec,
    Kind.VIRTUAL_ROUTER: VirtualRouterSpec,
    Kind.ROUTE: RouteSpec,
    Kind.VIRTUAL_GATEWAY: VirtualGatewaySpec,
    Kind.GATEWAY_ROUTE: GatewayRouteSpec,
}

_OPTIONAL_SPEC = frozenset({Kind.MESH})


def parse_spec(kind: Kind, data: object, *, field: str = "spec") -> Spec:
    """Validate a JSON-decoded spec of ``kind``; raise ``BadRequestError`` naming each problem."""
    model = SPEC_TYPES[kind]
    if data is None:
        if kind not in _OPTIONAL_SPEC:
            raise BadRequestError(f"{field}: is required")
        data = {}
    if not isinstance(data, Mapping):
        raise BadRequestError(f"{field}: must be a JSON object (got {_describe(data)})")
    try:
        spec: Spec = model.model_validate(data)  # type: ignore[assignment]
    except ValidationError as exc:
        raise BadRequestError(format_errors(exc, field)) from None
    return spec


def dump_spec(spec: Spec) -> dict[str, object]:
    """The JSON form of a spec, unset (None) members omitted."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def format_errors(exc: ValidationError, root: str) -> str:
    """One human line per problem, ``<path>: <message>``, joined with '; '."""
    lines: list[str] = []
    errors = exc.errors(include_url=False, include_input=True)
    failed_items = {tuple(e["loc"][:n]) for e in errors for n in range(len(e["loc"]))}
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "too_short" and loc in failed_items:
            continue  # pydantic counts only the valid items; the item errors say enough
        ctx = error.get("ctx") or {}
        cause = ctx.get("error")
        if error["type"] == "value_error" and isinstance(cause, RuleError):
            for sub, message in cause.problems:
                lines.append(f"{_path(root, loc, sub)}: {message}")
            continue
        lines.append(f"{_path(root, loc)}: {_message(error)}")
    return "; ".join(dict.fromkeys(lines))


def _path(root: str, loc: Sequence[int | str], sub: str = "") -> str:
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    if sub:
        path += sub if sub.startswith("[") else f".{sub}"
    return path


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: Any) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    got = f" (got {_describe(value)})"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known member of this object"
    if value is None and kind.endswith("_type"):
        return "is required (null given)"
    simple = {
        "int_type": "must be an integer",
        "string_type": "must be a string",
        "bool_type": "must be a boolean",
        "model_type": "must be a JSON object",
        "model_attributes_type": "must be a JSON object",
        "dict_type": "must be a JSON object",
        "tuple_type": "must be a list",
        "list_type": "must be a list",
    }
    if kind in simple:
        return simple[kind] + got
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}{got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}{got}"
    if kind == "string_too_short":
        n = ctx["min_length"]
        return "must not be empty" if n == 1 else f"must be at least {n} characters long"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters long (got {len(value)})"
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} item(s) (got {ctx['actual_length']})"
    if kind == "too_long":
        return f"must have at most {ctx['max_length']} item(s) (got {ctx['actual_length']})"
    if kind == "literal_error":
        return f"must be one of {ctx['expected'].replace(' or ', ', ')}{got}"
    if kind == "string_pattern_mismatch":
        return f"must match the pattern {ctx['pattern']}"
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ")
