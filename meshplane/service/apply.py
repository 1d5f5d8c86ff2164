"""``meshplane apply`` / ``delete -f`` / ``diff`` on the server: manifests to App Mesh resources.

The server keeps every applied manifest.  Applying new documents recomputes the App Mesh
resources of the whole manifest world (``meshplane.manifests.conversion``) and reconciles the
store with it in ONE transaction: resources are created or updated in dependency order, and
resources that a manifest no longer produces are deleted in reverse order.  Any error rolls
the whole apply back; a dry run (``diff``) does all the work and then rolls back.

Access: every resource an apply creates, changes or deletes needs the editor role on its mesh
(admin for the mesh resource itself; viewer in a dry run), checked inside the transaction, so
a refused apply keeps nothing.  Drift in a mesh the caller may not write (a resource changed
through the API since its manifest was applied) is left alone rather than refused, and what
the outcome shows is limited to the meshes the caller may view.  Each change is audited.
Called by ``meshplane.api.extensions``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshplane.errors import MeshplaneError
from meshplane.manifests import Manifest, Translation, translate
from meshplane.manifests.conversion import check_namespace_labels, namespace_labels
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.service.access import Principal, Role
from meshplane.service.resources import (
    Caller,
    canonical_spec,
    create_in,
    delete_in,
    update_in,
    write_role,
)
from meshplane.store.protocols import ManifestStore, Transaction
from meshplane.store.records import Namespace, StoredManifest

_DELETE_ORDER = [
    Kind.GATEWAY_ROUTE,
    Kind.VIRTUAL_GATEWAY,
    Kind.VIRTUAL_SERVICE,
    Kind.ROUTE,
    Kind.VIRTUAL_ROUTER,
    Kind.VIRTUAL_NODE,
    Kind.MESH,
]


@dataclass(frozen=True, slots=True)
class Action:
    """One change apply made (or, in a dry run, would make)."""

    op: str  # created | configured | unchanged | deleted
    key: ResourceKey
    origin: str
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "kind": self.key.kind.value,
            "mesh": self.key.mesh,
            "parent": self.key.parent or None,
            "name": self.key.name,
            "origin": self.origin,
            "before": self.before,
            "after": self.after,
        }


@dataclass(slots=True)
class Outcome:
    actions: list[Action] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "actions": [a.as_json() for a in self.actions],
            "namespaces": self.namespaces,
            "skipped": self.skipped,
            "warnings": self.warnings,
        }


class _DryRun(Exception):
    """Raised at the end of a dry run to roll the transaction back."""


def manifest_from_store(stored: StoredManifest) -> Manifest:
    return Manifest.stored(stored.kind, stored.namespace, stored.name, stored.body, stored.source)


class ManifestService:
    """Applies and deletes Kubernetes manifests against the store."""

    def __init__(self, store: ManifestStore) -> None:
        self.store = store

    def apply(
        self,
        manifests: Sequence[Manifest],
        *,
        caller: Caller,
        dry_run: bool,
        strict: bool = False,
    ) -> Outcome:
        """Apply ``manifests`` (see the module text).  Fields their schema does not name are
        ignored with a warning, as App Mesh did; with ``strict`` they are errors."""
        caller = dataclasses.replace(caller, via="apply")
        return self._run(manifests, caller=caller, dry_run=dry_run, remove=False, strict=strict)

    def delete(self, manifests: Sequence[Manifest], *, caller: Caller, dry_run: bool) -> Outcome:
        caller = dataclasses.replace(caller, via="delete")
        return self._run(manifests, caller=caller, dry_run=dry_run, remove=True)

    @staticmethod
    def require(principal: Principal, *, dry_run: bool, action: str) -> None:
        """The coarse check, made before the manifests are even parsed: a dry run needs the
        viewer role on some mesh, a change the editor role (each resource is checked too)."""
        if dry_run:
            principal.require_anywhere(Role.VIEWER, "compare manifests")
        else:
            principal.require_anywhere(Role.EDITOR, action)

    def visible_manifests(self, principal: Principal) -> list[StoredManifest]:
        """The applied manifests whose resources are all in meshes ``principal`` may view
        (every applied manifest for a viewer of every mesh)."""
        stored = self.store.manifests()
        meshes = principal.meshes(Role.VIEWER)
        if meshes is None:
            return stored
        manifests = [manifest_from_store(m) for m in stored]
        labels = {ns.name: dict(ns.labels) for ns in self.store.namespaces()}
        try:
            translation = translate(manifests, namespaces=labels)
        except MeshplaneError:
            return []
        produced: dict[tuple[str, ...], set[str]] = {}
        for key, origin in translation.owners.items():
            produced.setdefault(origin.identity, set()).add(key.mesh)
        visible = []
        for stored_manifest, manifest in zip(stored, manifests, strict=True):
            found = produced.get(manifest.identity)
            if found and found <= meshes:
                visible.append(stored_manifest)
        return visible

    def label_namespace(
        self, name: str, labels: Mapping[str, str | None], *, caller: Caller
    ) -> Outcome:
        """Set (or with a None value, remove) labels of a namespace, creating it if needed,
        and move the namespace's applied resources to the mesh its labels now select."""
        caller = dataclasses.replace(caller, via="label")
        check_namespace_labels(name, labels)
        return self._run([], caller=caller, dry_run=False, remove=False, relabel=(name, labels))

    def _run(
        self,
        manifests: Sequence[Manifest],
        *,
        caller: Caller,
        dry_run: bool,
        remove: bool,
        relabel: tuple[str, Mapping[str, str | None]] | None = None,
        strict: bool = False,
    ) -> Outcome:
        self.require(caller.principal, dry_run=dry_run, action=f"{caller.via} manifests")
        outcome = Outcome(dry_run=dry_run)

        def work(tx: Transaction) -> None:
            before = {ns.name: dict(ns.labels) for ns in tx.namespaces()}
            if relabel is not None:
                name, changes = relabel
                current = {ns.name: dict(ns.labels) for ns in tx.namespaces()}.get(name, {})
                for key, value in changes.items():
                    if value is None:
                        current.pop(key, None)
                    else:
                        current[key] = value
                outcome.namespaces.append({"name": name, "labels": current, "op": "labeled"})
                tx.put_namespace(Namespace(name, current))
                _audit_other(tx, caller, "LabelNamespace", f"namespace/{name}")
            self._reconcile(tx, manifests, caller, outcome, remove, before, strict)
            if dry_run:
                raise _DryRun

        with contextlib.suppress(_DryRun):
            self.store.transact(work)
        return outcome

    def _reconcile(
        self,
        tx: Transaction,
        manifests: Sequence[Manifest],
        caller: Caller,
        outcome: Outcome,
        remove: bool,
        old_labels: dict[str, dict[str, str]],
        strict: bool,
    ) -> None:
        stored = [manifest_from_store(m) for m in tx.manifests()]
        labels = {ns.name: dict(ns.labels) for ns in tx.namespaces()}
        world = {m.identity: m for m in stored}
        for manifest in manifests:
            if manifest.group == "" and manifest.kind == "Namespace":
                if not remove:
                    new = namespace_labels(manifest)
                    op = "unchanged" if labels.get(manifest.name) == new else "configured"
                    if manifest.name not in labels:
                        op = "created"
                    labels[manifest.name] = new
                    outcome.namespaces.append({"name": manifest.name, "labels": new, "op": op})
                continue
            if remove:
                world.pop(manifest.identity, None)
            else:
                world[manifest.identity] = manifest
        new_world = list(world.values())
        given = {m.identity for m in manifests}
        translation = translate(new_world, namespaces=labels, strict=given if strict else False)
        try:
            old: Translation | None = translate(stored, namespaces=old_labels)
        except MeshplaneError:
            old = None
        refs = tuple(m.ref() for m in manifests)
        outcome.warnings.extend(w for w in translation.warnings if w.startswith(refs))
        if not remove:
            outcome.warnings.extend(
                f"{line}; ignored, as App Mesh does (--strict refuses it)"
                for manifest, line in translation.unknown
                if manifest.identity in given
            )
        for manifest, reason in translation.skipped:
            if manifest in manifests:
                outcome.skipped.append({"manifest": manifest.ref(), "reason": reason})
        self._write(tx, translation, old, caller, outcome)
        current = {ns.name: dict(ns.labels) for ns in tx.namespaces()}
        for name, ns_labels in labels.items():
            if current.get(name) != ns_labels:
                tx.put_namespace(Namespace(name, ns_labels))
                _audit_other(tx, caller, "PutNamespace", f"namespace/{name}")
        self._store_manifests(tx, stored, new_world, translation, caller)

    def _write(
        self,
        tx: Transaction,
        new: Translation,
        old: Translation | None,
        caller: Caller,
        outcome: Outcome,
    ) -> None:
        principal = caller.principal
        dry_run = outcome.dry_run
        wanted = {d.key for d in new.resources}
        before = {d.key: d for d in old.resources} if old is not None else {}

        def allowed(key: ResourceKey, verb: str) -> None:
            role = Role.VIEWER if dry_run else write_role(key.kind)
            principal.require(key.mesh, role, f"{verb} {key}")

        for desired in new.resources:
            key = desired.key
            origin = desired.origin.ref()
            try:
                spec = canonical_spec(key.kind, desired.spec)
                current = tx.get(key)
                if current is not None and dict(current.spec) == spec:
                    if principal.can(key.mesh, Role.VIEWER):
                        outcome.actions.append(Action("unchanged", key, origin, spec, spec))
                    continue
                if not principal.can(key.mesh, Role.VIEWER if dry_run else write_role(key.kind)):
                    previous = before.get(key)
                    if previous is not None and _same_spec(previous.spec, spec, key.kind):
                        continue  # drift this apply did not cause, in a mesh it may not write
                if current is None:
                    allowed(key, "create")
                    create_in(tx, key, spec, caller=caller)
                    outcome.actions.append(Action("created", key, origin, None, spec))
                else:
                    allowed(key, "update")
                    update_in(tx, key, spec, caller=caller)
                    outcome.actions.append(
                        Action("configured", key, origin, dict(current.spec), spec)
                    )
            except MeshplaneError as error:
                raise type(error)(f"{origin}: {error.message}") from None
        gone = sorted(set(before) - wanted, key=lambda k: (_DELETE_ORDER.index(k.kind), k))
        for key in gone:
            current = tx.get(key)
            if current is None:
                continue
            try:
                allowed(key, "delete")
                delete_in(tx, key, caller=caller)
            except MeshplaneError as error:
                raise type(error)(f"deleting {key}: {error.message}") from None
            outcome.actions.append(Action("deleted", key, "", dict(current.spec), None))

    @staticmethod
    def _store_manifests(
        tx: Transaction,
        stored: Sequence[Manifest],
        world: Sequence[Manifest],
        translation: Translation,
        caller: Caller,
    ) -> None:
        skipped = {m.identity for m, _ in translation.skipped}
        keep = {m.identity: m for m in world if m.identity not in skipped}
        for manifest in stored:
            if manifest.identity not in keep:
                tx.delete_manifest(manifest.kind, manifest.namespace or "", manifest.name)
                _audit_other(tx, caller, "DeleteManifest", _manifest_resource(manifest))
        before = {m.identity: m for m in stored}
        for identity, manifest in keep.items():
            previous = before.get(identity)
            if previous is not None and dict(previous.body) == dict(manifest.body):
                continue
            tx.put_manifest(
                manifest.kind,
                manifest.namespace or "",
                manifest.name,
                dict(manifest.body),
                f"{manifest.source}#{manifest.index}",
            )
            _audit_other(tx, caller, "PutManifest", _manifest_resource(manifest))


def _same_spec(a: Mapping[str, Any], b: Mapping[str, Any], kind: Kind) -> bool:
    try:
        return canonical_spec(kind, a) == b
    except MeshplaneError:
        return False


def _manifest_resource(manifest: Manifest) -> str:
    return f"manifest/{manifest.kind}/{manifest.namespace or ''}/{manifest.name}"


def _audit_other(tx: Transaction, caller: Caller, operation: str, resource: str) -> None:
    """Audit a change that belongs to no mesh (namespaces, stored manifests)."""
    tx.audit(caller.principal.id, operation, mesh="", resource=resource, via=caller.via)
