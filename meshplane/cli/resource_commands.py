"""``meshplane get``, ``describe`` and ``delete`` of resources.

Two views of the same resources:
- App Mesh names (default, or ``--mesh``): what the App Mesh API and boto3 show;
- Kubernetes names (``-n NAMESPACE`` or ``-A``): the applied manifests, translated locally with
  ``meshplane.manifests.conversion`` to find the App Mesh resource each one produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from meshplane.cli import output
from meshplane.cli.common import output_option, run_client
from meshplane.cli.kinds import K8S_KINDS, KindParam
from meshplane.cli.manifest_commands import delete_manifests
from meshplane.cli.registry_commands import registry_describe, registry_get
from meshplane.client import Client
from meshplane.errors import BadRequestError, NotFoundError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.model.route_types import GATEWAY_ROUTE_TYPES, route_member

if TYPE_CHECKING:
    from meshplane.manifests import Manifest


def _key_of(item: dict[str, Any], kind: Kind) -> ResourceKey:
    parent = item[kind.parent.name_field] if kind.parent is not None else ""
    name = item["meshName"] if kind is Kind.MESH else item[kind.name_field]
    return ResourceKey(kind, item["meshName"], name, parent)


async def _k8s_view(client: Client, kind: Kind) -> list[tuple[Manifest, ResourceKey]]:
    """(manifest, App Mesh key) for every applied manifest that produced a ``kind``."""
    # imported here: the model and manifest machinery is needed only by the Kubernetes view
    from meshplane.manifests import Manifest, translate

    stored = await client.manifests()
    namespaces = {ns["name"]: ns["labels"] for ns in await client.namespaces()}
    manifests = [
        Manifest.stored(m["kind"], m["namespace"] or "", m["name"], m["body"], m["source"])
        for m in stored
    ]
    translation = translate(manifests, namespaces=namespaces)
    return [(origin, key) for key, origin in translation.owners.items() if key.kind is kind]


def _parent_column(kind: Kind) -> list[str]:
    return [kind.parent.value.upper()] if kind.parent is not None else []


@click.command()
@click.argument("kind", type=KindParam(), metavar="KIND")
@click.argument("name", required=False)
@click.option("--mesh", "-m", help="Only this mesh (App Mesh names).")
@click.option("-n", "--namespace", help="Kubernetes view: manifests in this namespace.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Kubernetes view: every namespace.")
@click.option("--service", "cm_service", help="Cloud Map instances: their service (name or id).")
@click.option(
    "--cloud-map-namespace", "cm_namespace", help="Cloud Map services and instances: the namespace."
)
@output_option("table", "wide", "json", "yaml")
@click.pass_context
def get(
    ctx: click.Context,
    kind: Kind,
    name: str | None,
    mesh: str | None,
    namespace: str | None,
    all_namespaces: bool,
    cm_service: str | None,
    cm_namespace: str | None,
    fmt: str,
) -> None:
    """List resources of KIND, or show one by NAME.

    KIND is one of: mesh, virtualnode (vn), virtualservice (vs), virtualrouter (vr),
    route (rt), virtualgateway (vg), gatewayroute (gr); plurals work too.  The Cloud Map
    registry: namespace (ns), service (svc), instance (inst, with --service).

    \b
    Examples:
      meshplane get meshes
      meshplane get vn --mesh webapp -o wide
      meshplane get virtualnode -n service-ns          # by Kubernetes name
      meshplane get vr -A -o yaml
      meshplane get vn service-v1_service-ns --mesh webapp -o json
      meshplane get namespaces
      meshplane get instances --service colors --cloud-map-namespace apps.local
    """
    if not kind.is_app_mesh:
        registry_get(ctx, kind, name, cm_service, cm_namespace, "table" if fmt == "wide" else fmt)
        return

    if mesh is not None and (namespace or all_namespaces):
        raise click.UsageError(
            "--mesh selects App Mesh names, -n/-A Kubernetes names: give one of them"
        )
    if namespace and all_namespaces:
        raise click.UsageError("give -n NAMESPACE or -A, not both")

    async def work(client: Client) -> tuple[list[str], list[list[Any]], list[dict[str, Any]]]:
        if namespace or all_namespaces:
            pairs = await _k8s_view(client, kind)
            pairs = [
                (m, k)
                for m, k in pairs
                if all_namespaces or (m.namespace or "") == (namespace or "")
                if name is None or m.name == name or k.name == name
            ]
            datas = []
            rows = []
            for manifest, key in sorted(
                pairs, key=lambda p: (p[0].namespace or "", p[0].name, p[1])
            ):
                try:
                    data = await client.describe(key)
                except NotFoundError:
                    data = None
                datas.append(data or {"missing": str(key)})
                meta = (data or {}).get("metadata", {})
                row: list[Any] = [manifest.namespace or "", manifest.name, key.name, key.mesh]
                if kind.parent is not None:
                    row.append(key.parent)
                row += [meta.get("version", "-"), output.age(meta.get("createdAt"))]
                if fmt == "wide":
                    row.append(meta.get("arn", "(not found)"))
                rows.append(row)
            columns = [
                "NAMESPACE",
                "NAME",
                "ARN NAME",
                "MESH",
                *_parent_column(kind),
                "VERSION",
                "AGE",
            ]
            if name is not None and not rows:
                where = f"namespace {namespace}" if namespace else "any namespace"
                raise NotFoundError(f"{K8S_KINDS[kind]} {name!r} not found in {where}")
            return columns + (["ARN"] if fmt == "wide" else []), rows, datas
        if mesh is not None and kind is not Kind.MESH:
            if kind.parent is not None:
                items = []
                for parent in await client.list_resources(kind.parent, mesh):
                    items += await client.list_resources(kind, mesh, parent[kind.parent.name_field])
            else:
                items = await client.list_resources(kind, mesh)
        else:
            items = await client.list_all(kind)
            if mesh is not None:
                items = [i for i in items if i["meshName"] == mesh]
        keys = [_key_of(i, kind) for i in items]
        if name is not None:
            keys = [k for k in keys if k.name == name]
            if not keys:
                raise NotFoundError(f"{kind.value} {name!r} not found")
        datas = [await client.describe(k) for k in keys]
        rows = []
        for key, data in zip(keys, datas, strict=True):
            meta = data["metadata"]
            row = [] if kind is Kind.MESH else [key.mesh]
            if kind.parent is not None:
                row.append(key.parent)
            row += [
                key.name,
                _summary(kind, data["spec"]),
                meta["version"],
                data["status"]["status"],
                output.age(meta["createdAt"]),
            ]
            if fmt == "wide":
                row.append(meta["arn"])
            rows.append(row)
        columns = ([] if kind is Kind.MESH else ["MESH"]) + _parent_column(kind)
        columns += ["NAME", _summary_title(kind), "VERSION", "STATUS", "AGE"]
        return columns + (["ARN"] if fmt == "wide" else []), rows, datas

    columns, rows, datas = run_client(ctx, work)
    if fmt in ("json", "yaml"):
        datas = [output.with_iso_times(d) for d in datas]
        output.dump(datas[0] if name is not None and len(datas) == 1 else datas, fmt)
    elif not rows:
        output.err.print(f"No {kind.plural} found.")
    else:
        output.table(columns, rows)


def _summary_title(kind: Kind) -> str:
    return {
        Kind.MESH: "EGRESS",
        Kind.VIRTUAL_NODE: "LISTENERS",
        Kind.VIRTUAL_SERVICE: "PROVIDER",
        Kind.VIRTUAL_ROUTER: "LISTENERS",
        Kind.ROUTE: "TYPE",
        Kind.VIRTUAL_GATEWAY: "LISTENERS",
        Kind.GATEWAY_ROUTE: "TARGET",
    }[kind]


def _summary(kind: Kind, spec: dict[str, Any]) -> str:
    if kind is Kind.MESH:
        return str((spec.get("egressFilter") or {}).get("type", "DROP_ALL"))
    if kind in (Kind.VIRTUAL_NODE, Kind.VIRTUAL_ROUTER, Kind.VIRTUAL_GATEWAY):
        listeners = spec.get("listeners") or []
        return (
            ",".join(
                f"{lst['portMapping']['protocol']}:{lst['portMapping']['port']}"
                for lst in listeners
            )
            or "-"
        )
    if kind is Kind.VIRTUAL_SERVICE:
        provider = spec.get("provider") or {}
        for ptype, field in (
            ("virtualNode", "virtualNodeName"),
            ("virtualRouter", "virtualRouterName"),
        ):
            if ptype in provider:
                return f"{ptype}/{provider[ptype][field]}"
        return "-"
    if kind is Kind.ROUTE:
        return route_member(spec) or "-"
    rtype = route_member(spec, GATEWAY_ROUTE_TYPES)
    if rtype is not None:
        target = spec[rtype]["action"]["target"]
        port = f":{target['port']}" if target.get("port") else ""
        return f"{target['virtualService']['virtualServiceName']}{port}"
    return "-"


async def _resolve(
    client: Client,
    kind: Kind,
    name: str,
    mesh: str | None,
    namespace: str | None,
    parent: str | None,
) -> ResourceKey:
    if namespace is not None:
        for manifest, key in await _k8s_view(client, kind):
            if (
                (manifest.namespace or "") == namespace
                and (manifest.name == name or key.name == name)
                and (kind is not Kind.ROUTE or key.name == name)
            ):
                return key
        raise NotFoundError(f"{K8S_KINDS[kind]} {name!r} not found in namespace {namespace}")
    if kind is Kind.MESH:
        return ResourceKey(Kind.MESH, name, name)
    if mesh is not None and (kind.parent is None or parent is not None):
        return ResourceKey(kind, mesh, name, parent or "")
    candidates = [
        _key_of(i, kind)
        for i in await client.list_all(kind)
        if (mesh is None or i["meshName"] == mesh)
    ]
    found = [k for k in candidates if k.name == name and (parent is None or k.parent == parent)]
    if not found:
        raise NotFoundError(f"{kind.value} {name!r} not found")
    if len(found) > 1:
        raise BadRequestError(
            f"{kind.value} {name!r} exists in several places ({', '.join(map(str, found))}); "
            "say which with --mesh (and --parent)"
        )
    return found[0]


@click.command()
@click.argument("kind", type=KindParam(), metavar="KIND")
@click.argument("name")
@click.option("--mesh", "-m", help="The mesh (needed when the name is in several meshes).")
@click.option("--parent", help="The virtual router or gateway of a route.")
@click.option("-n", "--namespace", help="NAME is a Kubernetes name in this namespace.")
@output_option("yaml", "json")
@click.option("--service", "cm_service", help="Cloud Map instance: its service (name or id).")
@click.option(
    "--cloud-map-namespace", "cm_namespace", help="Cloud Map service or instance: the namespace."
)
@click.pass_context
def describe(
    ctx: click.Context,
    kind: Kind,
    name: str,
    mesh: str | None,
    parent: str | None,
    namespace: str | None,
    cm_service: str | None,
    cm_namespace: str | None,
    fmt: str,
) -> None:
    """Show one resource in full: names, metadata (ARN, version, times in ISO 8601), spec
    and status; a virtual router's routes and a virtual gateway's gateway routes too.

    \b
    Examples:
      meshplane describe mesh webapp
      meshplane describe virtualnode service-v1 -n service-ns
      meshplane describe route app-route --mesh webapp --parent app-router_consumer -o json
      meshplane describe instance blue-1 --service colors
    """
    if not kind.is_app_mesh:
        registry_describe(ctx, kind, name, cm_service, cm_namespace, fmt)
        return

    async def work(client: Client) -> dict[str, Any]:
        key = await _resolve(client, kind, name, mesh, namespace, parent)
        data = await client.describe(key)
        child = _CHILDREN.get(kind)
        if child is not None:
            items = await client.list_resources(child, key.mesh, key.name)
            data[child.plural] = sorted(item[child.name_field] for item in items)
        return data

    output.dump(output.with_iso_times(run_client(ctx, work)), fmt)


_CHILDREN = {Kind.VIRTUAL_ROUTER: Kind.ROUTE, Kind.VIRTUAL_GATEWAY: Kind.GATEWAY_ROUTE}
"""The kind listed under a parent's description (by App Mesh name, as list-routes shows)."""


@click.command()
@click.argument("kind", type=KindParam(), required=False, metavar="[KIND]")
@click.argument("names", nargs=-1)
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    metavar="FILE|DIR|-",
    help="Delete what these manifests created (and forget the manifests).",
)
@click.option("--mesh", "-m", help="The mesh of NAMES.")
@click.option("--parent", help="The virtual router or gateway of routes.")
@click.option("-n", "--namespace", help="NAMES are Kubernetes names in this namespace.")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@output_option("table", "json", "yaml")
@click.pass_context
def delete(
    ctx: click.Context,
    kind: Kind | None,
    names: Sequence[str],
    paths: tuple[str, ...],
    mesh: str | None,
    parent: str | None,
    namespace: str | None,
    dry_run: bool,
    fmt: str,
) -> None:
    """Delete resources by name, or everything some manifests created (-f).

    A resource still in use (a node that provides a service, a mesh that is not empty, ...)
    is refused with ResourceInUseException and nothing changes.

    \b
    Examples:
      meshplane delete -f app.yaml
      meshplane delete virtualnode blue --mesh demo
      meshplane delete route r1 --mesh demo --parent router
    """
    if kind is not None and not kind.is_app_mesh:
        raise click.UsageError(
            "Cloud Map namespaces, services and instances are deleted through the Cloud Map "
            "API: aws servicediscovery delete-namespace / delete-service / deregister-instance"
        )
    if paths:
        if kind is not None or names:
            raise click.UsageError("give either -f FILE or KIND NAME..., not both")
        delete_manifests(ctx, paths, dry_run, fmt)
        return
    if kind is None or not names:
        raise click.UsageError("say what to delete: KIND NAME... or -f FILE")
    if dry_run:
        raise click.UsageError("--dry-run works with -f only")

    async def work(client: Client) -> list[dict[str, Any]]:
        deleted = []
        for name in names:
            key = await _resolve(client, kind, name, mesh, namespace, parent)
            deleted.append(await client.delete(key))
        return deleted

    deleted = run_client(ctx, work)
    if fmt != "table":
        output.dump(deleted, fmt)
        return
    for data in deleted:
        output.out.print(f"{data['metadata']['arn']} [red]deleted[/]", highlight=False)
