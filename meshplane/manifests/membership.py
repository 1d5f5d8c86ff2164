"""Which mesh each namespaced object belongs to, and which gateway each GatewayRoute joins.

As the controller's mutating webhooks decide it (pkg/mesh/membership_designator.go,
pkg/virtualgateway/membership_designator.go): an object belongs to the one Mesh whose
namespaceSelector matches the labels of the object's namespace; a GatewayRoute belongs to the
one VirtualGateway whose namespaceSelector matches the route's namespace and whose
gatewayRouteSelector (absent: any) matches the route's labels — unless the route names its
gateway in ``spec.virtualGatewayRef``.  Namespaces carry the ``kubernetes.io/metadata.name``
label Kubernetes puts on every namespace.

Called by ``meshplane.manifests.conversion``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshplane.manifests.documents import Manifest
from meshplane.manifests.errors import FieldProblem
from meshplane.manifests.selectors import NAMESPACE_NAME_LABEL, LabelSelector, parse_selector


@dataclass(frozen=True)
class MeshRecord:
    """A Mesh manifest with what its members need: App Mesh name, selector, owner."""

    manifest: Manifest
    spec: Mapping[str, Any]
    aws_name: str
    selector: LabelSelector | None
    owner: str | None

    @classmethod
    def of(cls, manifest: Manifest, spec: Mapping[str, Any]) -> MeshRecord:
        selector = spec.get("namespaceSelector")
        return cls(
            manifest,
            spec,
            spec.get("awsName") or manifest.name,
            None if selector is None else parse_selector(selector, ("spec", "namespaceSelector")),
            spec.get("meshOwner"),
        )


@dataclass(frozen=True)
class Member:
    """A namespaced App Mesh object placed in its mesh, with its App Mesh name."""

    manifest: Manifest
    spec: Mapping[str, Any]
    aws_name: str
    mesh: MeshRecord

    @property
    def namespace(self) -> str:
        return self.manifest.namespace or "default"


class Namespaces:
    """The labels of every namespace, as the selectors see them."""

    def __init__(self, labels: Mapping[str, Mapping[str, str]]) -> None:
        self._labels = labels

    def labels(self, namespace: str) -> dict[str, str]:
        return {**self._labels.get(namespace, {}), NAMESPACE_NAME_LABEL: namespace}


def designate_mesh(
    manifest: Manifest,
    spec: Mapping[str, Any],
    meshes: Sequence[MeshRecord],
    namespaces: Namespaces,
) -> MeshRecord:
    """The one mesh ``manifest`` belongs to; ``FieldProblem`` when none or several match."""
    namespace = manifest.namespace or "default"
    labels = namespaces.labels(namespace)
    found = [m for m in meshes if m.selector is not None and m.selector.matches(labels)]
    if not found:
        raise FieldProblem(
            (),
            f"namespace {namespace} is not part of any mesh: label it (meshplane label namespace "
            f"{namespace} {_suggested_labels(meshes)})",
        )
    if len(found) > 1:
        names = ", ".join(m.manifest.name for m in found)
        raise FieldProblem(
            (),
            f"namespace {namespace} is selected by several meshes ({names}): the "
            "namespaceSelectors of meshes must not overlap",
        )
    mesh = found[0]
    ref = spec.get("meshRef")
    if ref is not None and ref["name"] != mesh.manifest.name:
        raise FieldProblem(
            ("spec", "meshRef", "name"),
            f"names mesh {ref['name']}, but namespace {namespace} belongs to mesh "
            f"{mesh.manifest.name}",
        )
    return mesh


def _suggested_labels(meshes: Sequence[MeshRecord]) -> str:
    simple = [m.selector.simple_labels() for m in meshes if m.selector is not None]
    if len(simple) == 1 and simple[0]:
        return " ".join(f"{key}={value}" for key, value in sorted(simple[0].items()))
    return "mesh=..."


@dataclass(frozen=True)
class GatewaySelectors:
    """The parts of a VirtualGateway that pick its GatewayRoutes."""

    gateway: Member
    namespaces: LabelSelector | None
    routes: LabelSelector | None

    @classmethod
    def of(cls, gateway: Member) -> GatewaySelectors:
        spec = gateway.spec
        ns, routes = spec.get("namespaceSelector"), spec.get("gatewayRouteSelector")
        return cls(
            gateway,
            None if ns is None else parse_selector(ns, ("spec", "namespaceSelector")),
            None if routes is None else parse_selector(routes, ("spec", "gatewayRouteSelector")),
        )

    def selects(self, namespace_labels: Mapping[str, str], route_labels: Mapping[str, str]) -> bool:
        if self.namespaces is None or not self.namespaces.matches(namespace_labels):
            return False
        return self.routes is None or self.routes.matches(route_labels)


def designate_gateway(
    route: Member,
    route_labels: Mapping[str, str],
    gateways: Mapping[tuple[str, str], GatewaySelectors],
    namespaces: Namespaces,
) -> Member:
    """The VirtualGateway a GatewayRoute belongs to (``gateways`` by namespace and name)."""
    ref = route.spec.get("virtualGatewayRef")
    if ref is not None:
        namespace = ref.get("namespace") or route.namespace
        selected = gateways.get((namespace, ref["name"]))
        if selected is None:
            raise FieldProblem(
                ("spec", "virtualGatewayRef"),
                f"refers to VirtualGateway {namespace}/{ref['name']}, which is not among the "
                "manifests",
            )
        gateway = selected.gateway
    else:
        labels = namespaces.labels(route.namespace)
        found = [g.gateway for _, g in sorted(gateways.items()) if g.selects(labels, route_labels)]
        if not found:
            raise FieldProblem(
                (),
                f"no VirtualGateway selects this GatewayRoute: a gateway's namespaceSelector "
                f"must match namespace {route.namespace} and its gatewayRouteSelector (if any) "
                "the route's labels; or set spec.virtualGatewayRef",
            )
        if len(found) > 1:
            names = ", ".join(f"{g.namespace}/{g.manifest.name}" for g in found)
            raise FieldProblem(
                (),
                f"several VirtualGateways select this GatewayRoute ({names}): make their "
                "selectors exclusive or set spec.virtualGatewayRef",
            )
        gateway = found[0]
    if gateway.mesh is not route.mesh:
        raise FieldProblem(
            ("spec", "virtualGatewayRef") if ref is not None else (),
            f"VirtualGateway {gateway.namespace}/{gateway.manifest.name} is in mesh "
            f"{gateway.mesh.manifest.name}, but this GatewayRoute is in mesh "
            f"{route.mesh.manifest.name}",
        )
    return gateway


__all__ = [
    "GatewaySelectors",
    "Member",
    "MeshRecord",
    "Namespaces",
    "designate_gateway",
    "designate_mesh",
]
