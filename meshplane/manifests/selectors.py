"""Kubernetes label selectors and labels: parsing with the API server's rules, and matching.

A ``LabelSelector`` is ``matchLabels`` plus ``matchExpressions`` (In, NotIn, Exists,
DoesNotExist), all of which must hold.  An empty selector (``{}``) matches everything; an
absent one (None) matches nothing — callers decide what None means, as the controller does
(a Mesh without namespaceSelector has no namespaces; a VirtualGateway without
gatewayRouteSelector takes every GatewayRoute of its namespaces).

Used by ``meshplane.manifests.schema`` (validation of selector fields) and
``meshplane.manifests.conversion`` (mesh and gateway membership).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from meshplane.manifests.errors import FieldProblem, Path, shown

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_NAME_RE = re.compile(f"^{_NAME}$")
_VALUE_RE = re.compile(f"^({_NAME})?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Requirement:
    """One condition on one label key."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present  # DoesNotExist


@dataclass(frozen=True)
class LabelSelector:
    """A parsed ``metav1.LabelSelector``: every requirement must hold."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def simple_labels(self) -> dict[str, str] | None:
        """The labels that satisfy it if it is made of ``matchLabels`` only, else None."""
        if any(r.operator != "In" or len(r.values) != 1 for r in self.requirements):
            return None
        return {r.key: r.values[0] for r in self.requirements}


def parse_selector(value: object, path: Path) -> LabelSelector:
    """Parse and validate a selector; ``FieldProblem`` names the offending field."""
    if not isinstance(value, dict):
        raise FieldProblem(path, "must be a mapping (a label selector)")
    unknown = sorted(set(value) - {"matchLabels", "matchExpressions"})
    if unknown:
        raise FieldProblem(
            (*path, unknown[0]), "unknown field (a selector has matchLabels and matchExpressions)"
        )
    requirements: list[Requirement] = []
    match_labels = value.get("matchLabels")
    if match_labels is not None:
        for key, label in parse_labels(match_labels, (*path, "matchLabels")).items():
            requirements.append(Requirement(key, "In", (label,)))
    expressions = value.get("matchExpressions")
    if expressions is not None:
        if not isinstance(expressions, list):
            raise FieldProblem((*path, "matchExpressions"), "must be a list")
        for index, expression in enumerate(expressions):
            requirements.append(_expression(expression, (*path, "matchExpressions", index)))
    return LabelSelector(tuple(requirements))


def parse_labels(value: object, path: Path) -> dict[str, str]:
    """Validate a label map (keys and values as the API server checks them)."""
    if not isinstance(value, dict):
        raise FieldProblem(path, "must be a mapping of label names to string values")
    labels: dict[str, str] = {}
    for key, label in value.items():
        check_label_key(key, path)
        if not isinstance(label, str):
            raise FieldProblem((*path, key), "must be a string (quote it)")
        if not _VALUE_RE.match(label):
            raise FieldProblem((*path, key), f"invalid label value {shown(label)}: {_VALUE_RULE}")
        labels[key] = label
    return labels


_VALUE_RULE = (
    "at most 63 characters, alphanumerics, '-', '_' or '.', starting and ending with an "
    "alphanumeric"
)


def check_label_key(key: str, path: Path) -> None:
    """Raise ``FieldProblem`` unless ``key`` is a valid ``[prefix/]name`` label key."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        raise FieldProblem(
            path, f"invalid label key {shown(key)}: the prefix must be a DNS subdomain"
        )
    if not _NAME_RE.match(name):
        raise FieldProblem(path, f"invalid label key {shown(key)}: the name must be {_VALUE_RULE}")


def _expression(value: object, path: Path) -> Requirement:
    if not isinstance(value, dict):
        raise FieldProblem(path, "must be a mapping with key, operator and values")
    unknown = sorted(set(value) - {"key", "operator", "values"})
    if unknown:
        raise FieldProblem((*path, unknown[0]), "unknown field (expected key, operator, values)")
    key = value.get("key")
    operator = value.get("operator")
    values = value.get("values")
    if not isinstance(key, str):
        raise FieldProblem((*path, "key"), "required, a string")
    check_label_key(key, (*path, "key"))
    if operator not in _OPERATORS:
        raise FieldProblem((*path, "operator"), f"must be one of {', '.join(_OPERATORS)}")
    assert isinstance(operator, str)
    if values is None:
        values = []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise FieldProblem((*path, "values"), "must be a list of strings")
    if operator in ("In", "NotIn") and not values:
        raise FieldProblem((*path, "values"), f"must not be empty for operator {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise FieldProblem((*path, "values"), f"must be empty for operator {operator}")
    for index, item in enumerate(values):
        if not _VALUE_RE.match(item):
            raise FieldProblem((*path, "values", index), f"invalid label value: {_VALUE_RULE}")
    return Requirement(key, operator, tuple(values))
