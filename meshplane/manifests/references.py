"""Resolving references between manifests into App Mesh names.

A ``<kind>Ref`` {name, namespace (default: the referring object's)} names another manifest
and becomes that object's App Mesh name (its ``awsName``); it must be among the manifests and
in the same mesh.  A ``<kind>ARN`` is parsed for the name, as the controller does
(pkg/conversions/arns_conversion.go), and may point outside the manifests.  BackendGroups
referred to by a VirtualNode are expanded into backends (name ``*``: every VirtualService of
the namespace), after the node's own backends and without duplicates
(pkg/virtualnode/resource_manager.go).

Called by ``meshplane.manifests.conversion``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from meshplane.manifests.errors import FieldProblem, Path, shown
from meshplane.manifests.membership import Member
from meshplane.manifests.schema import Conversion, Ref, Resolver

Index = Mapping[tuple[str, str, str], Member]
"""Every placed object by (kind, namespace, name)."""

_ARN_RESOURCE = re.compile(r"mesh/([^/]+)/([^/]+)/([^/]+)")


def resolver(member: Member, index: Index) -> Resolver:
    """Turns the references found in ``member``'s spec into App Mesh names."""

    def resolve(ref: Ref, value: Any, path: Path, is_arn: bool) -> str:
        if is_arn:
            return name_from_arn(value, ref.arn_type, path)
        return target(ref.target, value, member, index, path).aws_name

    return resolve


def target(kind: str, ref: Mapping[str, Any], member: Member, index: Index, path: Path) -> Member:
    """The object a {name, namespace} reference of ``member`` names, in ``member``'s mesh."""
    namespace = ref.get("namespace") or member.namespace
    name = ref["name"]
    found = index.get((kind, namespace, name))
    if found is None:
        raise FieldProblem(
            path, f"refers to {kind} {namespace}/{name}, which is not among the manifests"
        )
    if found.mesh is not member.mesh:
        raise FieldProblem(
            path,
            f"refers to {kind} {namespace}/{name} of mesh {found.mesh.manifest.name}, but this "
            f"object is in mesh {member.mesh.manifest.name}",
        )
    return found


def name_from_arn(arn: str, resource_type: str, path: Path) -> str:
    """``arn:aws:appmesh:<region>:<account>:mesh/<mesh>/<type>/<name>`` -> ``<name>``."""
    sections = arn.split(":", 5)
    if len(sections) != 6 or sections[0] != "arn":
        raise FieldProblem(path, f"invalid ARN {shown(arn)}")
    match = _ARN_RESOURCE.fullmatch(sections[5])
    if match is None:
        raise FieldProblem(
            path,
            f"invalid App Mesh resource {shown(sections[5])} in ARN (expected "
            f"mesh/<mesh>/{resource_type}/<name>)",
        )
    if match.group(2) != resource_type:
        raise FieldProblem(path, f"expected a {resource_type} ARN, got a {match.group(2)} ARN")
    return match.group(3)


def expand_backend_groups(
    member: Member, index: Index, api_spec: dict[str, Any], conversion: Conversion
) -> None:
    """Append the virtual services of the node's backendGroups to ``api_spec['backends']``."""
    groups = member.spec.get("backendGroups") or ()
    if not groups:
        return
    listed: set[tuple[str, str]] = set()
    for backend in member.spec.get("backends") or ():
        ref = backend["virtualService"].get("virtualServiceRef")
        if ref is not None:
            listed.add((ref.get("namespace") or member.namespace, ref["name"]))
    backends: list[Any] = api_spec.setdefault("backends", [])
    for number, group_ref in enumerate(groups):
        path: Path = ("spec", "backendGroups", number)
        for service in _group_services(member, index, group_ref, path):
            identity = (service.namespace, service.manifest.name)
            if identity in listed:
                continue
            listed.add(identity)
            conversion.paths[("spec", "backends", len(backends))] = path
            backends.append({"virtualService": {"virtualServiceName": service.aws_name}})
    if not backends:
        del api_spec["backends"]


def _group_services(
    member: Member, index: Index, group_ref: Mapping[str, Any], path: Path
) -> list[Member]:
    namespace = group_ref.get("namespace") or member.namespace
    if group_ref["name"] == "*":
        names = sorted(
            name for kind, ns, name in index if kind == "VirtualService" and ns == namespace
        )
        return [
            target("VirtualService", {"name": name, "namespace": namespace}, member, index, path)
            for name in names
        ]
    group = target("BackendGroup", group_ref, member, index, path)
    services = []
    for number, ref in enumerate(group.spec.get("virtualservices") or ()):
        # Refs in a group default to the group's namespace (the controller uses the node's).
        qualified = {"name": ref["name"], "namespace": ref.get("namespace") or group.namespace}
        where = (
            f"spec.virtualservices[{number}] of BackendGroup {group.namespace}/{group_ref['name']}"
        )
        try:
            services.append(target("VirtualService", qualified, member, index, path))
        except FieldProblem as problem:
            raise FieldProblem(path, f"{where} {problem.message}") from None
    return services
