"""Translation of a whole world of ``appmesh.k8s.aws/v1beta2`` manifests into App Mesh resources.

``translate`` does what the App Mesh controller and its webhooks do, without a cluster:
check each object against its CRD schema and webhook rules, place every namespaced object in
the mesh that selects its namespace, attach GatewayRoutes to their VirtualGateway, default
``awsName``, resolve references, split VirtualRouter routes into Route resources, and build
the App Mesh API spec of each resource — then have the resource model validate it and report
its problems at the manifest's own field paths.  Pure: no I/O, same input -> same output.

Called by the server's apply endpoint and the CLI (``meshplane apply``/``diff``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from meshplane.manifests import crds, webhooks
from meshplane.manifests.apicheck import api_problems
from meshplane.manifests.documents import APPMESH_GROUP, Manifest
from meshplane.manifests.errors import FieldProblem, ManifestError, format_path, shown
from meshplane.manifests.membership import (
    GatewaySelectors,
    Member,
    MeshRecord,
    Namespaces,
    designate_gateway,
    designate_mesh,
)
from meshplane.manifests.references import expand_backend_groups, resolver
from meshplane.manifests.schema import Conversion, convert, unknown_field
from meshplane.manifests.selectors import check_label_key, parse_labels
from meshplane.model.kinds import Kind, ResourceKey

SUPPORTED_VERSION = f"{APPMESH_GROUP}/v1beta2"
_KINDS = {
    "Mesh": Kind.MESH,
    "VirtualNode": Kind.VIRTUAL_NODE,
    "VirtualService": Kind.VIRTUAL_SERVICE,
    "VirtualRouter": Kind.VIRTUAL_ROUTER,
    "VirtualGateway": Kind.VIRTUAL_GATEWAY,
    "GatewayRoute": Kind.GATEWAY_ROUTE,
}
_ORDER = [
    Kind.MESH,
    Kind.VIRTUAL_NODE,
    Kind.VIRTUAL_ROUTER,
    Kind.ROUTE,
    Kind.VIRTUAL_SERVICE,
    Kind.VIRTUAL_GATEWAY,
    Kind.GATEWAY_ROUTE,
]
_MAX_NAME = 255
_TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")
_WEBHOOKS: dict[str, Callable[[Mapping[str, Any], Manifest], None]] = {
    "VirtualNode": lambda spec, m: webhooks.check_virtual_node(spec, m.namespace or "default"),
    "VirtualRouter": lambda spec, m: webhooks.check_virtual_router(spec),
    "VirtualGateway": lambda spec, m: webhooks.check_virtual_gateway(spec),
    "GatewayRoute": lambda spec, m: webhooks.check_gateway_route(spec),
}


@dataclass(frozen=True)
class DesiredResource:
    """One App Mesh resource as the manifests want it."""

    key: ResourceKey
    spec: Mapping[str, Any]
    """The App Mesh API JSON spec, exactly what CreateX/UpdateX take."""
    origin: Manifest
    mesh_owner: str | None = None
    """The mesh's ``spec.meshOwner`` (the ``meshOwner`` query parameter), if any."""


@dataclass(frozen=True)
class Translation:
    resources: list[DesiredResource]
    """In a safe creation order: meshes, nodes, routers, routes, services, gateways, gateway
    routes; sorted by key within each kind."""
    namespaces: dict[str, dict[str, str]]
    """The labels of every known namespace: the ``namespaces`` given, merged with the labels
    of the ``kind: Namespace`` documents."""
    skipped: list[tuple[Manifest, str]]
    owners: dict[ResourceKey, Manifest]
    warnings: list[str] = field(default_factory=list)
    unknown: list[tuple[Manifest, str]] = field(default_factory=list)
    """Each field no schema names (in manifests not translated strictly), with its manifest
    and a message line naming the closest known field. Left out of the resources, as App
    Mesh's controller ignored them."""


def translate(
    manifests: Sequence[Manifest],
    *,
    namespaces: Mapping[str, Mapping[str, str]],
    strict: bool | AbstractSet[tuple[str, str, str, str]] = False,
) -> Translation:
    """Translate every manifest; ``ManifestError`` lists all problems found (see module doc).

    An object given several times (same group, kind, namespace and name) counts once, the
    last one winning, as when ``kubectl apply`` meets it again.  Unknown fields are left out
    and listed in ``Translation.unknown``, as App Mesh did; they are problems instead in the
    manifests ``strict`` names (by ``Manifest.identity``), or in every manifest when it is True.
    """
    return _Translator(namespaces, strict).run(manifests)


def default_aws_name(manifest: Manifest) -> str:
    """The controller's default App Mesh name of a namespaced object."""
    separator = "." if manifest.kind == "VirtualService" else "_"
    return f"{manifest.name}{separator}{manifest.namespace}"


class _Problems:
    def __init__(self) -> None:
        self.errors: list[ManifestError] = []

    @contextmanager
    def about(self, manifest: Manifest) -> Iterator[None]:
        """Record, instead of raising, what goes wrong with ``manifest`` in the block."""
        try:
            yield
        except FieldProblem as problem:
            self.errors.append(manifest.error(problem.path, problem.message))
        except ManifestError as error:
            self.errors.append(error)

    def raise_if_any(self) -> None:
        if self.errors:
            raise ManifestError.combine(self.errors)


class _Translator:
    def __init__(
        self,
        namespaces: Mapping[str, Mapping[str, str]],
        strict: bool | AbstractSet[tuple[str, str, str, str]],
    ) -> None:
        self.strict = strict
        self.problems = _Problems()
        self.labels = {name: dict(labels) for name, labels in namespaces.items()}
        self.skipped: list[tuple[Manifest, str]] = []
        self.objects: list[tuple[Manifest, Mapping[str, Any]]] = []
        self.resources: dict[ResourceKey, DesiredResource] = {}
        self.warnings: list[str] = []
        self.unknown: list[tuple[Manifest, str]] = []
        self.gateway_of: dict[tuple[str, str, str], str] = {}

    def run(self, manifests: Sequence[Manifest]) -> Translation:
        for manifest in _latest(manifests):
            with self.problems.about(manifest):
                self.classify(manifest)
        self.problems.raise_if_any()
        meshes = self.meshes()
        self.problems.raise_if_any()
        namespaces = Namespaces(self.labels)
        index = self.place(meshes, namespaces)
        self.problems.raise_if_any()
        self.attach_gateway_routes(index, namespaces)
        self.problems.raise_if_any()
        for mesh in meshes:
            self.build_mesh(mesh)
        for member in index.values():
            if member.manifest.kind != "BackendGroup":
                self.build_member(member, index)
        self.problems.raise_if_any()
        ordered = sorted(self.resources.values(), key=lambda r: (_ORDER.index(r.key.kind), r.key))
        return Translation(
            resources=ordered,
            namespaces={name: self.labels[name] for name in sorted(self.labels)},
            skipped=self.skipped,
            owners={r.key: r.origin for r in ordered},
            warnings=self.warnings,
            unknown=self.unknown,
        )

    def classify(self, manifest: Manifest) -> None:
        """Check one manifest on its own; keep App Mesh objects and namespace labels."""
        if manifest.api_version.split("/")[0] == APPMESH_GROUP:
            if manifest.api_version != SUPPORTED_VERSION:
                raise FieldProblem(
                    ("apiVersion",),
                    f"{manifest.api_version} is not supported: meshplane reads "
                    f"{SUPPORTED_VERSION} manifests",
                )
            schema = crds.SPECS.get(manifest.kind)
            if schema is None:
                raise FieldProblem(
                    ("kind",),
                    f"{SUPPORTED_VERSION} has no kind {manifest.kind} (it has "
                    f"{', '.join(crds.SPECS)})",
                )
            strict = self.strict is True or manifest.identity in (self.strict or ())
            unknown = [
                ((name,), unknown_field(name, _TOP_LEVEL))
                for name in manifest.body
                if name not in _TOP_LEVEL
            ]
            if strict and unknown:
                raise FieldProblem(*unknown[0])
            _check_names(manifest)
            self.labels_of(manifest)
            spec = manifest.body.get("spec")
            spec = {} if spec is None else spec
            conversion = convert(schema, spec, ("spec",), ("spec",), None, strict=strict)
            for path, message in conversion.warnings:
                self.warnings.append(manifest.error(path, message).message)
            for path, message in [*unknown, *conversion.unknown]:
                self.unknown.append((manifest, manifest.error(path, message).message))
            check = _WEBHOOKS.get(manifest.kind)
            if check is not None:
                check(spec, manifest)
            self.objects.append((manifest, spec))
        elif manifest.api_version == "v1" and manifest.kind == "Namespace":
            labels = _namespace_labels(manifest)
            self.labels[manifest.name] = {**self.labels.get(manifest.name, {}), **labels}
        else:
            reason = f"not an App Mesh resource ({manifest.api_version}/{manifest.kind})"
            self.skipped.append((manifest, reason))

    @staticmethod
    def labels_of(manifest: Manifest) -> dict[str, str]:
        return _labels_of(manifest)

    def meshes(self) -> list[MeshRecord]:
        records: list[MeshRecord] = []
        by_name: dict[str, MeshRecord] = {}
        for manifest, spec in self.objects:
            if manifest.kind != "Mesh":
                continue
            with self.problems.about(manifest):
                record = MeshRecord.of(manifest, spec)
                owner = record.owner
                if owner is not None and len(owner) != 12:
                    raise FieldProblem(("spec", "meshOwner"), "must be a 12-digit account ID")
                other = by_name.get(record.aws_name)
                if other is not None:
                    raise FieldProblem(
                        (),
                        f"App Mesh mesh name {record.aws_name} is already taken by "
                        f"{other.manifest.ref()}",
                    )
                by_name[record.aws_name] = record
                records.append(record)
        return sorted(records, key=lambda r: r.manifest.name)

    def place(
        self, meshes: list[MeshRecord], namespaces: Namespaces
    ) -> dict[tuple[str, str, str], Member]:
        index: dict[tuple[str, str, str], Member] = {}
        for manifest, spec in self.objects:
            if manifest.kind == "Mesh":
                continue
            with self.problems.about(manifest):
                mesh = designate_mesh(manifest, spec, meshes, namespaces)
                aws_name = spec.get("awsName") or default_aws_name(manifest)
                namespace = manifest.namespace or "default"
                index[(manifest.kind, namespace, manifest.name)] = Member(
                    manifest, spec, aws_name, mesh
                )
        return dict(sorted(index.items()))

    def attach_gateway_routes(
        self, index: dict[tuple[str, str, str], Member], namespaces: Namespaces
    ) -> None:
        """Find the VirtualGateway of each GatewayRoute (``gateway_of``: its App Mesh name)."""
        gateways = {
            (ns, name): GatewaySelectors.of(member)
            for (kind, ns, name), member in index.items()
            if kind == "VirtualGateway"
        }
        for key, member in index.items():
            if key[0] != "GatewayRoute":
                continue
            with self.problems.about(member.manifest):
                labels = self.labels_of(member.manifest)
                gateway = designate_gateway(member, labels, gateways, namespaces)
                self.gateway_of[key] = gateway.aws_name

    def build_mesh(self, mesh: MeshRecord) -> None:
        with self.problems.about(mesh.manifest):
            conversion = convert(crds.MESH, mesh.spec, ("spec",), ("spec",), None)
            key = ResourceKey(Kind.MESH, mesh.aws_name, mesh.aws_name)
            self.add(key, conversion, mesh.manifest, mesh.owner)

    def build_member(self, member: Member, index: dict[tuple[str, str, str], Member]) -> None:
        manifest = member.manifest
        kind = _KINDS[manifest.kind]
        mesh = member.mesh.aws_name
        resolve = resolver(member, index)
        with self.problems.about(manifest):
            conversion = convert(
                crds.SPECS[manifest.kind], member.spec, ("spec",), ("spec",), resolve
            )
            parent = ""
            if kind is Kind.GATEWAY_ROUTE:
                parent = self.gateway_of[(manifest.kind, member.namespace, manifest.name)]
            if kind is Kind.VIRTUAL_NODE:
                expand_backend_groups(member, index, conversion.value, conversion)
                for name in ("listeners", "backends"):
                    if conversion.value.get(name) == []:
                        del conversion.value[name]
            key = ResourceKey(kind, mesh, member.aws_name, parent)
            self.add(key, conversion, manifest, member.mesh.owner)
        if kind is not Kind.VIRTUAL_ROUTER:
            return
        for number, route in enumerate(member.spec.get("routes") or ()):
            with self.problems.about(manifest):
                where = ("spec", "routes", number)
                conversion = convert(crds.ROUTE, route, where, ("spec",), resolve)
                key = ResourceKey(Kind.ROUTE, mesh, route["name"], member.aws_name)
                self.add(key, conversion, manifest, member.mesh.owner, (*where, "name"))

    def add(
        self,
        key: ResourceKey,
        conversion: Conversion,
        manifest: Manifest,
        owner: str | None,
        name_path: tuple[str | int, ...] | None = None,
    ) -> None:
        if key.kind is not Kind.VIRTUAL_SERVICE and not 1 <= len(key.name) <= _MAX_NAME:
            path = name_path or _name_path(manifest)
            hint = "; set a shorter spec.awsName" if path[0] == "metadata" else ""
            raise FieldProblem(
                path,
                f"the App Mesh name {shown(key.name)} must have 1 to {_MAX_NAME} characters{hint}",
            )
        problems = api_problems(key.kind, conversion.value)
        if problems:
            errors = []
            for api_path, message in problems:
                crd_path = conversion.crd_path(api_path)
                if _renamed(conversion, api_path):
                    message = f"{message} (App Mesh API field {format_path(api_path)})"
                errors.append(manifest.error(crd_path, message))
            raise ManifestError.combine(errors)
        other = self.resources.get(key)
        if other is not None:
            raise FieldProblem(
                (),
                f"{key.kind.title} {key} is also produced by {other.origin.ref()}: "
                "give one of them another spec.awsName",
            )
        self.resources[key] = DesiredResource(key, conversion.value, manifest, owner)


def namespace_labels(manifest: Manifest) -> dict[str, str]:
    """The labels of a ``v1`` ``Namespace`` manifest, checked as the API server checks them
    (the name a DNS label; label keys and values in label syntax), or ``ManifestError``
    naming the manifest, the field and the rule.  Used by the apply service, which keeps
    namespaces apart from the App Mesh objects it translates."""
    try:
        return _namespace_labels(manifest)
    except FieldProblem as problem:
        raise manifest.error(problem.path, problem.message) from None


def check_namespace_labels(name: str, labels: Mapping[str, str | None]) -> None:
    """``BadRequestError`` (a ``ManifestError``) unless ``name`` is a namespace name and
    ``labels`` (``None`` values remove a label) are valid label keys and values."""
    try:
        _check_namespace_name(name)
        parse_labels({k: v for k, v in labels.items() if v is not None}, ("labels",))
        for key in labels:
            check_label_key(key, ("labels",))
    except FieldProblem as problem:
        raise ManifestError(f"namespace/{shown(name)}: {problem}") from None


def _namespace_labels(manifest: Manifest) -> dict[str, str]:
    _check_namespace_name(manifest.name)
    return _labels_of(manifest)


def _check_namespace_name(name: str) -> None:
    if not _DNS_LABEL.match(name):
        raise FieldProblem(("metadata", "name"), f"{shown(name)} {_DNS_LABEL_RULE}")


def _labels_of(manifest: Manifest) -> dict[str, str]:
    metadata = manifest.body.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    return {} if labels is None else parse_labels(labels, ("metadata", "labels"))


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_LABEL_RULE = (
    "is not a valid name: at most 63 lowercase letters, digits or '-', starting and ending "
    "with a letter or digit"
)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_names(manifest: Manifest) -> None:
    """Kubernetes' rules for object names (DNS subdomains) and namespaces (DNS labels)."""
    name = manifest.name
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise FieldProblem(
            ("metadata", "name"),
            f"{shown(name)} is not a valid name: at most 253 lowercase letters, digits, '-' or "
            "'.', starting and ending with a letter or digit",
        )
    namespace = manifest.namespace
    if namespace is not None and not _DNS_LABEL.match(namespace):
        raise FieldProblem(("metadata", "namespace"), f"{shown(namespace)} {_DNS_LABEL_RULE}")


def _name_path(manifest: Manifest) -> tuple[str, str]:
    """Where the App Mesh name of ``manifest`` comes from."""
    spec = manifest.body.get("spec")
    if isinstance(spec, dict) and spec.get("awsName"):
        return ("spec", "awsName")
    return ("metadata", "name")


def _renamed(conversion: Conversion, api_path: tuple[str | int, ...]) -> bool:
    """Whether a member on ``api_path`` is spelled differently in the CRD."""
    return any(
        isinstance(api_path[n - 1], str)
        and conversion.crd_path(api_path[:n])[-1] != api_path[n - 1]
        for n in range(2, len(api_path) + 1)
    )


def _latest(manifests: Sequence[Manifest]) -> list[Manifest]:
    """One manifest per object identity, the last given winning (in the order of the last)."""
    latest: dict[tuple[str, str, str, str], Manifest] = {}
    for manifest in manifests:
        latest.pop(manifest.identity, None)
        latest[manifest.identity] = manifest
    return list(latest.values())
