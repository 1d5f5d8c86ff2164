"""``meshplane apply``, ``delete -f``, ``diff`` and ``label namespace``.

The manifests travel as text to the server, which parses, translates and applies them in one
transaction (``meshplane.service.apply``); these commands only read files and print results.
"""

from __future__ import annotations

import difflib
from typing import Any

import click
import yaml

from meshplane.cli import output
from meshplane.cli.common import output_option, read_sources, run_client


def _resource_name(action: dict[str, Any]) -> str:
    if action["kind"] == "mesh":
        return f"mesh/{action['name']}"
    parent = f"{action['parent']}/" if action.get("parent") else ""
    return f"{action['kind']}/{action['mesh']}/{parent}{action['name']}"


def _print_outcome(outcome: dict[str, Any], *, verb_suffix: str = "") -> None:
    styles = {"created": "green", "configured": "yellow", "deleted": "red", "unchanged": "dim"}
    for ns in outcome["namespaces"]:
        output.out.print(f"namespace/{ns['name']} {ns['op']}{verb_suffix}", highlight=False)
    for action in outcome["actions"]:
        origin = f"  [dim]({action['origin']})[/]" if action.get("origin") else ""
        style = styles.get(action["op"], "")
        output.out.print(
            f"{_resource_name(action)} [{style}]{action['op']}{verb_suffix}[/]{origin}",
            highlight=False,
        )
    for warning in outcome.get("warnings", []):
        output.err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    for skipped in outcome["skipped"]:
        output.out.print(
            f"[dim]{skipped['manifest']} skipped: {skipped['reason']}[/]", highlight=False
        )


FILE_OPTION = click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    metavar="FILE|DIR|-",
    help="Manifest file, directory (read recursively) or '-' for stdin. Repeatable.",
)


STRICT_OPTION = click.option(
    "--strict",
    is_flag=True,
    help="Refuse fields the App Mesh CRDs do not name (by default they are ignored with a "
    "warning naming the closest known field, as App Mesh did).",
)


@click.command()
@FILE_OPTION
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@STRICT_OPTION
@output_option("table", "json", "yaml")
@click.pass_context
def apply(
    ctx: click.Context, paths: tuple[str, ...], dry_run: bool, strict: bool, fmt: str
) -> None:
    """Apply App Mesh Kubernetes manifests (appmesh.k8s.aws/v1beta2).

    All documents are applied in one transaction: if any is invalid, nothing changes.
    Re-applying unchanged manifests changes nothing (no version moves).  A field the CRDs
    do not name is ignored with a warning, as App Mesh's controller did; --strict (or the
    server's --strict-manifests) refuses it instead.

    \b
    Examples:
      meshplane apply -f mesh.yaml
      meshplane apply -f manifests/            # every .yaml/.yml/.json below it
      meshplane apply -f examples/walkthrough/ --strict
      kubectl kustomize overlay | meshplane apply -f -
    """
    documents = read_sources(paths)
    outcome = run_client(ctx, lambda c: c.apply(documents, dry_run=dry_run, strict=strict))
    if fmt != "table":
        output.dump(outcome, fmt)
        return
    _print_outcome(outcome, verb_suffix=" (dry run)" if dry_run else "")


@click.command()
@FILE_OPTION
@STRICT_OPTION
@output_option("table", "json", "yaml")
@click.pass_context
def diff(ctx: click.Context, paths: tuple[str, ...], strict: bool, fmt: str) -> None:
    """Show what `apply -f` would change, as a unified diff of App Mesh specs.

    Exit code 0: no differences; 4: there are differences; 1: the manifests are invalid.

    \b
    Examples:
      meshplane diff -f app.yaml
      meshplane diff -f manifests/ -o json
    """
    documents = read_sources(paths)
    outcome = run_client(ctx, lambda c: c.apply(documents, dry_run=True, strict=strict))
    for warning in outcome.get("warnings", []):
        output.err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    changed = [a for a in outcome["actions"] if a["op"] != "unchanged"]
    changed_ns = [n for n in outcome["namespaces"] if n["op"] != "unchanged"]
    if fmt != "table":
        output.dump({"actions": changed, "namespaces": changed_ns}, fmt)
    else:
        for action in changed:
            name = _resource_name(action)
            before = (
                yaml.safe_dump(action["before"], sort_keys=True).splitlines(True)
                if action["before"] is not None
                else []
            )
            after = (
                yaml.safe_dump(action["after"], sort_keys=True).splitlines(True)
                if action["after"] is not None
                else []
            )
            for line in difflib.unified_diff(before, after, f"a/{name}", f"b/{name}"):
                style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
                output.out.print(line.rstrip("\n"), style=style, highlight=False, markup=False)
        for ns in changed_ns:
            output.out.print(f"namespace/{ns['name']} labels -> {ns['labels']}", highlight=False)
        if not changed and not changed_ns:
            output.out.print("no differences", style="dim")
    if changed or changed_ns:
        raise click.exceptions.Exit(output.EXIT_DIFF)


def delete_manifests(ctx: click.Context, paths: tuple[str, ...], dry_run: bool, fmt: str) -> None:
    documents = read_sources(paths)
    outcome = run_client(ctx, lambda c: c.apply(documents, dry_run=dry_run, delete=True))
    if fmt != "table":
        output.dump(outcome, fmt)
        return
    _print_outcome(outcome, verb_suffix=" (dry run)" if dry_run else "")


@click.group()
def label() -> None:
    """Set labels on objects (namespaces join meshes through their labels)."""


@label.command("namespace")
@click.argument("name")
@click.argument("labels", nargs=-1, required=True, metavar="KEY=VALUE|KEY-...")
@output_option("table", "json", "yaml")
@click.pass_context
def label_namespace(ctx: click.Context, name: str, labels: tuple[str, ...], fmt: str) -> None:
    """Set (KEY=VALUE) or remove (KEY-) labels of a namespace.

    A namespace belongs to the mesh whose namespaceSelector matches its labels, exactly as
    with `kubectl label namespace` and the App Mesh controller.

    \b
    Examples:
      meshplane label namespace service-ns mesh=webapp
      meshplane label namespace service-ns appmesh.k8s.aws/sidecarInjectorWebhook=enabled
      meshplane label namespace service-ns mesh-
    """
    changes: dict[str, str | None] = {}
    for item in labels:
        if item.endswith("-") and "=" not in item:
            changes[item[:-1]] = None
        elif "=" in item:
            key, value = item.split("=", 1)
            if not key:
                raise click.BadParameter(f"{item!r}: the key is empty", param_hint="LABELS")
            changes[key] = value
        else:
            raise click.BadParameter(
                f"{item!r}: write KEY=VALUE to set or KEY- to remove", param_hint="LABELS"
            )
    outcome = run_client(ctx, lambda c: c.label_namespace(name, changes))
    if fmt != "table":
        output.dump(outcome, fmt)
        return
    output.out.print(f"namespace/{name} labeled", highlight=False)
    for action in outcome["actions"]:
        if action["op"] != "unchanged":
            output.out.print(f"  {_resource_name(action)} {action['op']}", highlight=False)
