"""The Cloud Map registry and the mesh DNS server on the command line.

``meshplane get namespaces|services|instances`` and ``describe`` of those kinds are answered
here (called by :mod:`meshplane.cli.resource_commands` for the registry's kinds) through the
Cloud Map API; ``meshplane dns lookup NAME`` prints what the mesh DNS server answers and why
(``GET /meshplane/v1/dns/lookup``).
"""

from __future__ import annotations

from typing import Any

import click

from meshplane.cli import output
from meshplane.cli.common import output_option, run_client
from meshplane.client import Client
from meshplane.model.kinds import Kind


async def _all(client: Client, operation: str, key: str, body: dict[str, Any]) -> list[Any]:
    items: list[Any] = []
    token = None
    while True:
        page = await client.cloud_map(
            operation, {**body, **({"NextToken": token} if token else {})}
        )
        items += page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return items


async def _service_id(client: Client, name: str | None, namespace: str | None) -> str:
    """A service id from an id (``srv-...``) or a name (in ``namespace``, when several)."""
    if name is None:
        raise click.UsageError("instances belong to a service: give --service NAME or ID")
    if name.startswith("srv-"):
        return name
    filters = []
    if namespace is not None:
        ns_id = await _namespace_id(client, namespace)
        filters = [{"Name": "NAMESPACE_ID", "Values": [ns_id], "Condition": "EQ"}]
    found = [
        s
        for s in await _all(
            client, "ListServices", "Services", {"Filters": filters} if filters else {}
        )
        if s["Name"] == name
    ]
    if len(found) != 1:
        where = f" in namespace {namespace}" if namespace else ""
        raise click.UsageError(
            f"{len(found)} services named {name!r}{where}; give its id or --cloud-map-namespace"
        )
    return str(found[0]["Id"])


async def _namespace_id(client: Client, name: str) -> str:
    if name.startswith("ns-"):
        return name
    for ns in await _all(client, "ListNamespaces", "Namespaces", {}):
        if name in (ns["Name"], ns.get("Properties", {}).get("HttpProperties", {}).get("HttpName")):
            return str(ns["Id"])
    raise click.UsageError(f"no Cloud Map namespace named {name!r}")


def registry_get(
    ctx: click.Context,
    kind: Kind,
    name: str | None,
    service: str | None,
    namespace: str | None,
    fmt: str,
) -> None:
    """``get`` for the registry's kinds."""

    async def work(client: Client) -> tuple[list[str], list[list[Any]], list[Any]]:
        if kind is Kind.CLOUD_MAP_NAMESPACE:
            items = await _all(client, "ListNamespaces", "Namespaces", {})
            items = [n for n in items if name is None or name in (n["Id"], n["Name"])]
            rows = [
                [
                    n["Name"],
                    n["Id"],
                    n["Type"],
                    n.get("ServiceCount", 0),
                    output.age(n.get("CreateDate")),
                ]
                for n in items
            ]
            return ["NAME", "ID", "TYPE", "SERVICES", "AGE"], rows, items
        if kind is Kind.CLOUD_MAP_SERVICE:
            body: dict[str, Any] = {}
            if namespace is not None:
                ns_id = await _namespace_id(client, namespace)
                body = {"Filters": [{"Name": "NAMESPACE_ID", "Values": [ns_id], "Condition": "EQ"}]}
            items = await _all(client, "ListServices", "Services", body)
            items = [s for s in items if name is None or name in (s["Id"], s["Name"])]
            details = [
                (await client.cloud_map("GetService", {"Id": s["Id"]}))["Service"] for s in items
            ]
            rows = [
                [
                    s["Name"],
                    s["Id"],
                    s["NamespaceId"],
                    s["Type"],
                    s.get("InstanceCount", 0),
                    ",".join(r["Type"] for r in s.get("DnsConfig", {}).get("DnsRecords", []))
                    or "-",
                ]
                for s in details
            ]
            return ["NAME", "ID", "NAMESPACE", "TYPE", "INSTANCES", "DNS"], rows, details
        srv = await _service_id(client, service, namespace)
        items = await _all(client, "ListInstances", "Instances", {"ServiceId": srv})
        items = [i for i in items if name is None or i["Id"] == name]
        health = (
            (await client.cloud_map("GetInstancesHealthStatus", {"ServiceId": srv}))
            if items
            else {}
        )
        status = health.get("Status", {})
        for item in items:
            item["HealthStatus"] = status.get(item["Id"], "UNKNOWN")
        rows = [
            [
                i["Id"],
                i["Attributes"].get("AWS_INSTANCE_IPV4")
                or i["Attributes"].get("AWS_INSTANCE_IPV6")
                or "-",
                i["Attributes"].get("AWS_INSTANCE_PORT", "-"),
                i["HealthStatus"],
                ",".join(
                    f"{k}={v}"
                    for k, v in sorted(i["Attributes"].items())
                    if not k.startswith("AWS_")
                ),
            ]
            for i in items
        ]
        return ["ID", "ADDRESS", "PORT", "HEALTH", "ATTRIBUTES"], rows, items

    columns, rows, items = run_client(ctx, work)
    if fmt in ("json", "yaml"):
        output.dump(items if name is None else (items[0] if items else None), fmt)
        return
    if name is not None and not items:
        raise output.fail(f"no {kind.value.removeprefix('cloudMap').lower()} {name!r} found")
    output.table(columns, rows)


def registry_describe(
    ctx: click.Context, kind: Kind, name: str, service: str | None, namespace: str | None, fmt: str
) -> None:
    """``describe`` for the registry's kinds."""

    async def work(client: Client) -> dict[str, Any]:
        if kind is Kind.CLOUD_MAP_NAMESPACE:
            ns_id = await _namespace_id(client, name)
            namespace_shape: dict[str, Any] = (
                await client.cloud_map("GetNamespace", {"Id": ns_id})
            )["Namespace"]
            return namespace_shape
        if kind is Kind.CLOUD_MAP_SERVICE:
            srv = await _service_id(client, name, namespace)
            found = (await client.cloud_map("GetService", {"Id": srv}))["Service"]
            found["Attributes"] = (
                await client.cloud_map("GetServiceAttributes", {"ServiceId": srv})
            )["ServiceAttributes"]["Attributes"]
            return found  # type: ignore[no-any-return]
        srv = await _service_id(client, service, namespace)
        found = (await client.cloud_map("GetInstance", {"ServiceId": srv, "InstanceId": name}))[
            "Instance"
        ]
        status = await client.cloud_map(
            "GetInstancesHealthStatus", {"ServiceId": srv, "Instances": [name]}
        )
        found["HealthStatus"] = status["Status"].get(name, "UNKNOWN")
        return found  # type: ignore[no-any-return]

    output.dump(run_client(ctx, work), "yaml" if fmt == "table" else fmt)


@click.group()
def dns() -> None:
    """The mesh DNS server: what it answers for a name, and why.

    \b
    Examples:
      meshplane dns lookup orders.webapp.local
      meshplane dns lookup web.example.local --type SRV -o json
    """


@dns.command()
@click.argument("name")
@click.option(
    "--type", "rdtype", default="A", show_default=True,
    type=click.Choice(["A", "AAAA", "SRV", "CNAME", "ANY"], case_sensitive=False),
    help="The record type asked for.",
)  # fmt: skip
@output_option("table", "json", "yaml")
@click.pass_context
def lookup(ctx: click.Context, name: str, rdtype: str, fmt: str) -> None:
    """Print what the mesh DNS server answers for NAME, and why (a virtual service's VIP, a
    Cloud Map service's instances, or forwarded upstream).

    Exit code 0 when the server answers the name itself (NOERROR), 1 when the name is not
    the mesh's (NXDOMAIN, or forwarded).

    \b
    Examples:
      meshplane dns lookup orders.webapp.local
      meshplane dns lookup web.example.local --type SRV
      meshplane dns lookup example.org -o json
    """
    answer: dict[str, Any] = run_client(ctx, lambda client: client.dns_lookup(name, rdtype.upper()))
    if fmt != "table":
        output.dump(answer, fmt)
    else:
        rcode = (
            "forwarded upstream (or REFUSED)" if answer["rcode"] == "FORWARD" else answer["rcode"]
        )
        output.out.print(f"{answer['name']} {answer['type']}: {rcode}", highlight=False)
        output.out.print(f"why: {answer['reason']}", highlight=False)
        if answer["answers"]:
            output.table(
                ["TYPE", "TTL", "DATA"],
                [[a["type"], a["ttl"], a["data"]] for a in answer["answers"]],
            )
    if answer["rcode"] != "NOERROR":
        raise click.exceptions.Exit(output.EXIT_ERROR)
