"""Proof that the spec models cover botocore's App Mesh model member for member.

Walks every structure reachable from the seven *Spec shapes alongside the pydantic models:
same member names, same required set, unions marked as unions, same enum values, scalar
types, and every numeric / length limit enforced just outside and accepted just inside.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, get_args, get_origin

import pytest
from botocore.model import ListShape, Shape, StructureShape
from pydantic import BaseModel

from meshplane.errors import BadRequestError
from meshplane.model import SPEC_TYPES, Kind, dump_spec, parse_spec
from meshplane.model.common import UnionModel
from meshplane.model.kinds import APP_MESH_KINDS
from tests.support.model import (
    ROOTS,
    enum_values,
    is_union,
    limits,
    member_paths,
    minimal,
    render_path,
    shape,
    with_value,
)

_SCALARS = {"string": str, "integer": int, "long": int, "boolean": bool}


def _unwrap(annotation: Any) -> Any:
    """Strip ``X | None`` and ``Annotated[...]`` down to the core type."""
    while True:
        origin = get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            assert len(args) == 1, annotation
            annotation = args[0]
        elif origin is Annotated:
            annotation = get_args(annotation)[0]
        else:
            return annotation


def _check_member(member: Shape, annotation: Any, where: str, seen: set[str]) -> None:
    core = _unwrap(annotation)
    if isinstance(member, ListShape):
        assert get_origin(core) is tuple, f"{where}: expected a list, model has {core}"
        item, ellipsis = get_args(core)
        assert ellipsis is Ellipsis
        _check_member(member.member, item, f"{where}[]", seen)
    elif isinstance(member, StructureShape):
        assert isinstance(core, type), f"{where}: {core}"
        assert issubclass(core, BaseModel), f"{where}: {core}"
        _check_structure(member, core, seen)
    elif enum_values(member):
        assert get_origin(core) is Literal, f"{where}: expected an enum, model has {core}"
        assert list(get_args(core)) == enum_values(member), where
    else:
        assert core is _SCALARS[member.type_name], f"{where}: {core} for {member.type_name}"


def _check_structure(s: StructureShape, model: type[BaseModel], seen: set[str]) -> None:
    key = f"{s.name}:{model.__name__}"
    if key in seen:
        return
    seen.add(key)
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    assert set(fields) == set(s.members), f"{s.name} vs {model.__name__}"
    required = {name for name, info in fields.items() if info.is_required()}
    assert required == set(s.required_members), f"{s.name}: required members differ"
    assert issubclass(model, UnionModel) == is_union(s), f"{s.name}: union flag differs"
    for name, member in s.members.items():
        info = fields[name]
        annotation = info.annotation
        if info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]
        _check_member(member, annotation, f"{s.name}.{name}", seen)


@pytest.mark.parametrize("kind", APP_MESH_KINDS)
def test_models_have_every_member_of_botocore(kind: Kind) -> None:
    seen: set[str] = set()
    root = shape(ROOTS[kind])
    assert isinstance(root, StructureShape)
    _check_structure(root, SPEC_TYPES[kind], seen)
    assert seen


def test_every_spec_structure_is_covered() -> None:
    """All 119 structures reachable from the seven spec shapes are compared with a model."""
    reachable: set[str] = set()
    for root in ROOTS.values():
        reachable.add(root)
        for _, member in member_paths(shape(root)):
            target = member.member if isinstance(member, ListShape) else member
            if isinstance(target, StructureShape):
                reachable.add(target.name)
    seen: set[str] = set()
    for kind, root in ROOTS.items():
        root_shape = shape(root)
        assert isinstance(root_shape, StructureShape)
        _check_structure(root_shape, SPEC_TYPES[kind], seen)
    assert len(reachable) == 119
    assert {key.split(":")[0] for key in seen} == reachable


def _limit_cases() -> list[tuple[Kind, tuple[str, ...], Shape]]:
    cases = []
    for kind, root in ROOTS.items():
        for path, member in member_paths(shape(root)):
            target = member.member if isinstance(member, ListShape) else member
            if limits(member) != (None, None) or limits(target) != (None, None):
                cases.append((kind, path, member))
    return cases


_CASES = _limit_cases()


def _values(s: Shape, n: int) -> Any:
    if s.type_name in ("integer", "long"):
        return n
    if s.name == "HttpGatewayRoutePrefix":
        return "/" * n
    return "a" * n


# Members whose values are further limited to a documented set, so a long value is refused.
_VALUE_SETS = {"HttpRetryPolicyEvent"}


def _probe(kind: Kind, doc: Any, path: tuple[str, ...], value: Any, inside: bool) -> None:
    probe = with_value(doc, path, value)
    if inside:
        parse_spec(kind, probe)
        return
    with pytest.raises(BadRequestError) as info:
        parse_spec(kind, probe)
    assert render_path(path, probe) in info.value.message


@pytest.mark.parametrize(
    ("kind", "path", "member"), _CASES, ids=[f"{k.value}:{'.'.join(p)}" for k, p, _ in _CASES]
)
def test_limits_are_enforced(kind: Kind, path: tuple[str, ...], member: Shape) -> None:
    doc = minimal(shape(ROOTS[kind]), path)
    if isinstance(member, ListShape):
        low, high = limits(member)
        item = minimal(member.member)
        if low is not None:
            _probe(kind, doc, path, [item] * low, inside=True)
            if low > 0:
                _probe(kind, doc, path, [item] * (low - 1), inside=False)
        if high is not None:
            _probe(kind, doc, path, [item] * high, inside=True)
            _probe(kind, doc, path, [item] * (high + 1), inside=False)
        wrap: Any = lambda v: [v]  # noqa: E731
        member = member.member
    else:
        wrap = lambda v: v  # noqa: E731
    low, high = limits(member)
    check_inside = member.name not in _VALUE_SETS
    if low is not None:
        if check_inside:
            _probe(kind, doc, path, wrap(_values(member, low)), inside=True)
        if member.type_name != "string" or low > 0:
            _probe(kind, doc, path, wrap(_values(member, low - 1)), inside=False)
    if high is not None:
        if check_inside:
            _probe(kind, doc, path, wrap(_values(member, high)), inside=True)
        _probe(kind, doc, path, wrap(_values(member, high + 1)), inside=False)


@pytest.mark.parametrize("kind", APP_MESH_KINDS)
def test_enum_members_refuse_other_values(kind: Kind) -> None:
    for path, member in member_paths(shape(ROOTS[kind])):
        target = member.member if isinstance(member, ListShape) else member
        if not enum_values(target):
            continue
        doc = minimal(shape(ROOTS[kind]), path)
        bogus: Any = ["bogus"] if isinstance(member, ListShape) else "bogus"
        _probe(kind, doc, path, bogus, inside=False)


@pytest.mark.parametrize("kind", APP_MESH_KINDS)
def test_every_member_path_parses_and_round_trips(kind: Kind) -> None:
    root = shape(ROOTS[kind])
    for path, _ in member_paths(root):
        doc = minimal(root, path)
        dumped = dump_spec(parse_spec(kind, doc))
        if kind is Kind.MESH and "egressFilter" not in doc:
            doc = {"egressFilter": {"type": "DROP_ALL"}, **doc}
        _strip_defaults(dumped, doc)
        assert dumped == doc, path


def _strip_defaults(dumped: Any, doc: Any) -> None:
    """Drop ``enforce: true`` that the model filled in where the input had none."""
    if isinstance(dumped, dict):
        if dumped.get("enforce") is True and "enforce" not in doc:
            del dumped["enforce"]
        for key, value in dumped.items():
            _strip_defaults(value, doc.get(key) if isinstance(doc, dict) else None)
    elif isinstance(dumped, list) and isinstance(doc, list):
        for a, b in zip(dumped, doc, strict=True):
            _strip_defaults(a, b)
