"""A small schema language for the CRD specs, and the walker that checks and converts them.

A schema is a tree of ``Obj``, ``ListOf``, ``Scalar``, ``StringMap`` and ``Selector`` nodes.
``convert`` walks a spec along its schema: it sets unknown fields aside (``Conversion.unknown``,
each naming the closest known field: App Mesh's CRDs preserve unknown fields and its controller
ignores them, so the caller decides whether they are warnings or errors), rejects missing
required fields and wrong JSON types, renames members whose API spelling
differs (``certificateARN`` -> ``certificateArn``), leaves out fields the API does not take
(``podSelector``, ``awsName``…), turns ``*Ref``/``*ARN`` pairs into the API's name member
through a resolver, and records, for every API path it produces, the CRD path it came from,
so that API validation errors can be reported against the manifest.

The schemas themselves are in ``meshplane.manifests.crds``; the caller is
``meshplane.manifests.conversion``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from meshplane.manifests.documents import type_name
from meshplane.manifests.errors import FieldProblem, Path
from meshplane.manifests.selectors import parse_labels, parse_selector

_INT64 = 2**63


@dataclass(frozen=True)
class Scalar:
    type: Literal["string", "integer", "boolean"]


@dataclass(frozen=True)
class StringMap:
    """A map of label names to string values (``matchLabels``-like)."""


@dataclass(frozen=True)
class Selector:
    """A ``metav1.LabelSelector``."""


@dataclass(frozen=True)
class ListOf:
    item: Node


@dataclass(frozen=True)
class Ref:
    """A ``<kind>Ref`` / ``<kind>ARN`` pair that becomes one API name member."""

    target: str
    """The CRD kind referred to, e.g. ``VirtualService``."""
    ref_field: str
    arn_field: str
    api_field: str

    @property
    def arn_type(self) -> str:
        """The resource type segment in the target's ARN, e.g. ``virtualService``."""
        return self.target[0].lower() + self.target[1:]


@dataclass(frozen=True)
class Field:
    node: Node
    required: bool = False
    api: str | None = None
    """The API member name when it differs from the CRD one."""
    local: bool = False
    """Read by the translator, never sent to the API."""
    unsupported: str | None = None
    """Part of the CRD but not of the API: using it is an error with this explanation."""
    ignored: str | None = None
    """Not part of the CRD but known from published examples: dropped with this warning."""


@dataclass(frozen=True)
class Obj:
    fields: Mapping[str, Field]
    ref: Ref | None = None


Node = Scalar | StringMap | Selector | ListOf | Obj

STRING = Scalar("string")
INTEGER = Scalar("integer")
BOOLEAN = Scalar("boolean")


def obj(*, ref: Ref | None = None, **fields: Node | Field) -> Obj:
    """An object schema; bare nodes are optional fields."""
    return Obj({k: v if isinstance(v, Field) else Field(v) for k, v in fields.items()}, ref)


def req(node: Node) -> Field:
    return Field(node, required=True)


def local(node: Node, *, required: bool = False) -> Field:
    return Field(node, required=required, local=True)


def renamed(node: Node, api: str, *, required: bool = False) -> Field:
    return Field(node, required=required, api=api)


Resolver = Callable[[Ref, Any, Path, bool], str]
"""(ref, the ref mapping or ARN string, its CRD path, is it an ARN) -> the API name."""


@dataclass
class Conversion:
    """The result of converting one spec: API JSON, the path map, warnings and the unknown
    fields that were left out."""

    value: Any
    paths: dict[Path, Path] = field(default_factory=dict)
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    unknown: list[tuple[Path, str]] = field(default_factory=list)
    """(CRD path, "unknown field (did you mean ...?)") of each field the schema does not name."""

    def crd_path(self, api_path: Path) -> Path:
        """The CRD path an API path came from (longest recorded prefix, rest appended)."""
        for length in range(len(api_path), -1, -1):
            prefix = api_path[:length]
            if prefix in self.paths:
                return self.paths[prefix] + api_path[length:]
        return api_path


def convert(
    node: Node,
    value: object,
    crd_path: Path,
    api_path: Path,
    resolver: Resolver | None,
    *,
    strict: bool = False,
) -> Conversion:
    """Check ``value`` against ``node`` and build its API form (see the module docstring).

    With ``resolver`` None, references are checked for shape only and become ''.  With
    ``strict``, an unknown field is a problem instead of an entry of ``Conversion.unknown``.
    """
    result = Conversion(None)
    result.value = _Walker(result, resolver, strict).walk(node, value, crd_path, api_path)
    return result


class _Walker:
    def __init__(self, result: Conversion, resolver: Resolver | None, strict: bool) -> None:
        self.result = result
        self.resolver = resolver
        self.strict = strict

    def walk(self, node: Node, value: object, crd: Path, api: Path | None) -> Any:
        if api is not None:
            self.result.paths.setdefault(api, crd)
        if isinstance(node, Scalar):
            return _scalar(node, value, crd)
        if isinstance(node, StringMap):
            return parse_labels(value, crd)
        if isinstance(node, Selector):
            parse_selector(value, crd)
            return value
        if isinstance(node, ListOf):
            if not isinstance(value, list):
                raise FieldProblem(crd, f"must be a list, not {type_name(value)}")
            return [
                self.walk(node.item, item, (*crd, i), None if api is None else (*api, i))
                for i, item in enumerate(value)
            ]
        return self.walk_object(node, value, crd, api)

    def walk_object(self, node: Obj, value: object, crd: Path, api: Path | None) -> Any:
        if not isinstance(value, dict):
            raise FieldProblem(crd, f"must be a mapping, not {type_name(value)}")
        strangers = [name for name in value if name not in node.fields]
        for name in strangers:
            if self.strict:
                raise FieldProblem((*crd, name), unknown_field(name, node.fields))
            self.result.unknown.append(((*crd, name), unknown_field(name, node.fields)))
        out: dict[str, Any] = {}
        for name, spec in node.fields.items():
            if node.ref is not None and name == node.ref.ref_field:
                self.reference(node.ref, value, crd, api, out)
            sub = value.get(name)
            if sub is None:
                if spec.required:
                    raise FieldProblem((*crd, name), _required(name, strangers))
                continue
            if spec.unsupported is not None:
                raise FieldProblem((*crd, name), spec.unsupported)
            if spec.ignored is not None:
                self.result.warnings.append(((*crd, name), spec.ignored))
                continue
            api_name = spec.api or name
            sub_api = None if api is None or spec.local else (*api, api_name)
            converted = self.walk(spec.node, sub, (*crd, name), sub_api)
            if sub_api is not None:
                out[api_name] = converted
        return out

    def reference(
        self, ref: Ref, value: dict[str, Any], crd: Path, api: Path | None, out: dict[str, Any]
    ) -> None:
        given = [f for f in (ref.ref_field, ref.arn_field) if value.get(f) is not None]
        if not given:
            raise FieldProblem(crd, f"one of {ref.ref_field} or {ref.arn_field} is required")
        if len(given) > 1:
            raise FieldProblem(crd, f"only one of {ref.ref_field} or {ref.arn_field} may be set")
        where = (*crd, given[0])
        name = ""
        if self.resolver is not None:
            name = self.resolver(ref, value[given[0]], where, given[0] == ref.arn_field)
        if api is not None:
            self.result.paths[(*api, ref.api_field)] = where
            out[ref.api_field] = name


def _scalar(node: Scalar, value: object, path: Path) -> object:
    if node.type == "string":
        if not isinstance(value, str):
            raise FieldProblem(path, f"must be a string, not {type_name(value)}")
    elif node.type == "boolean":
        if not isinstance(value, bool):
            raise FieldProblem(path, f"must be true or false, not {type_name(value)}")
    elif not isinstance(value, int) or isinstance(value, bool):
        raise FieldProblem(path, f"must be an integer, not {type_name(value)}")
    elif not -_INT64 <= value < _INT64:
        raise FieldProblem(path, "must be a 64-bit integer")
    return value


def _required(name: str, strangers: list[str]) -> str:
    """``required``, naming an unknown field of the same object that looks like a typo of it."""
    close = difflib.get_close_matches(name, [str(s) for s in strangers], n=1)
    return f"required (is {close[0]} a misspelling of {name}?)" if close else "required"


def unknown_field(name: object, known: Iterable[str]) -> str:
    """``unknown field (did you mean weight?)``, or the known fields when none is close."""
    names = list(known)
    close = difflib.get_close_matches(str(name), names, n=1)
    if close:
        return f"unknown field (did you mean {close[0]}?)"
    return f"unknown field (known here: {', '.join(names)})" if names else "unknown field"
