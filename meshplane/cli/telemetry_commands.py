"""``meshplane stat`` and ``meshplane top``: the mesh's golden signals in the terminal.

Both read ``GET /meshplane/v1/telemetry`` (what every proxy streams to the control plane).
``stat`` prints one table (or ``-o json|yaml``) of the signals per virtual node (what its
application answered), per virtual service route (what its clients sent through it) or per
edge; ``top`` keeps a table of the busiest edges on screen, refreshed every few seconds (rich's
live display), like ``linkerd viz top``.  A proxy that stopped reporting shows ``stale``,
never zero.  Registered by :mod:`meshplane.cli.main`.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from meshplane.cli import output
from meshplane.cli.common import output_option, run_client
from meshplane.client import Client

_VIEWS = ("node", "route", "edge")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}/s"


def _source(signal: dict[str, Any]) -> str:
    prefix = "gateway/" if signal["sourceKind"] == "virtualGateway" else ""
    return f"{prefix}{signal['source']}"


def _destination(signal: dict[str, Any]) -> str:
    if signal["kind"] == "edge":
        return f"node/{signal['destinationNode']}"
    route = f" {signal['router']}/{signal['route']}" if signal.get("router") else ""
    return f"{signal['destinationService']}{route}"


def select(
    data: dict[str, Any],
    view: str,
    node: str | None = None,
    service: str | None = None,
    route: str | None = None,
) -> list[dict[str, Any]]:
    """The signals ``stat`` shows: nodes (inbound), routes (service edges) or node edges."""
    if view == "node":
        found = [s for s in data["nodes"] if node is None or s["source"] == node]
    else:
        kind = "route" if view == "route" else "edge"
        found = [s for s in data["edges"] if s["kind"] == kind]
        if node is not None:
            found = [s for s in found if node in (s["source"], s["destinationNode"])]
    if service is not None:
        found = [s for s in found if s.get("destinationService") == service]
    if route is not None:
        found = [
            s for s in found if route in (s.get("route"), f"{s.get('router')}/{s.get('route')}")
        ]
    return found


def _row(signal: dict[str, Any], view: str) -> list[str]:
    latency = signal["latencyMs"]
    head = [signal["source"]] if view == "node" else [_source(signal), _destination(signal)]
    if not signal["reporting"]:
        return [*head, "stale", "-", "-", "-", "-", "-"]
    return [
        *head,
        _rate(signal["rate"]),
        _pct(signal["errorRate"]),
        _ms(latency["p50"]),
        _ms(latency["p90"]),
        _ms(latency["p99"]),
        "yes" if signal["mtls"] else "no",
    ]


def _columns(view: str) -> list[str]:
    head = ["NODE"] if view == "node" else ["SOURCE", "DESTINATION"]
    return [*head, "RPS", "ERRORS", "P50", "P90", "P99", "MTLS"]


@click.command("stat")
@click.argument("view", type=click.Choice(_VIEWS), default="node")
@click.option("--mesh", required=True, help="The mesh.")
@click.option("--node", help="Only this virtual node (or gateway) as source or destination.")
@click.option("--service", help="Only this virtual service.")
@click.option("--route", help="Only this route (ROUTE or ROUTER/ROUTE).")
@click.option(
    "--window",
    "seconds",
    type=click.FloatRange(1, 900),
    default=60,
    show_default=True,
    help="Seconds of traffic the signals cover.",
)
@output_option("table", "json", "yaml")
@click.pass_context
def stat(
    ctx: click.Context,
    view: str,
    mesh: str,
    node: str | None,
    service: str | None,
    route: str | None,
    seconds: float,
    fmt: str,
) -> None:
    """Golden signals (request rate, error rate, p50/p90/p99 latency, mTLS) of a mesh.

    VIEW is node (what each virtual node's application answered; the default), route (what
    clients sent to each virtual service route) or edge (what each proxy sent to each virtual
    node).  A proxy that stopped reporting shows as stale.  Exit code 0, 1 when the server
    refused, 3 when it cannot be reached.

    \b
    Examples:
      meshplane stat --mesh demo
      meshplane stat route --mesh demo --service color.demo.local
      meshplane stat edge --mesh demo --node client --window 30 -o json
    """
    data = run_client(ctx, lambda c: c.telemetry(mesh, seconds))
    found = select(data, view, node, service, route)
    if fmt in ("json", "yaml"):
        output.dump(found, fmt)
        return
    if not found:
        output.err.print(f"No telemetry for mesh {mesh!r} yet (proxies flush every few seconds).")
        return
    output.table(_columns(view), [_row(s, view) for s in found])


def _top_table(data: dict[str, Any], limit: int) -> Table:
    edges = [s for s in data["edges"] if s["kind"] == "route"] or data["edges"]
    edges.sort(key=lambda s: (s["rate"] is None, -(s["rate"] or 0)))
    table = Table(title=f"mesh {data['mesh']} — busiest edges, last {data['seconds']:g}s")
    for column in _columns("route"):
        table.add_column(column, no_wrap=True)
    for signal in edges[:limit]:
        table.add_row(*_row(signal, "route"))
    stale = [p["name"] for p in data["proxies"] if not p["reporting"]]
    if stale:
        table.caption = "not reporting: " + ", ".join(sorted(set(stale)))
    return table


@click.command("top")
@click.option("--mesh", required=True, help="The mesh.")
@click.option(
    "--interval",
    type=click.FloatRange(0.5, 60),
    default=2,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option(
    "--window",
    "seconds",
    type=click.FloatRange(1, 900),
    default=10,
    show_default=True,
    help="Seconds of traffic each refresh covers.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option(
    "--iterations", type=click.IntRange(1), help="Stop after this many refreshes (default: Ctrl-C)."
)
@click.pass_context
def top(
    ctx: click.Context,
    mesh: str,
    interval: float,
    seconds: float,
    limit: int,
    iterations: int | None,
) -> None:
    """A live table of a mesh's busiest edges (rate, errors, latency), refreshed in place.

    \b
    Examples:
      meshplane top --mesh demo
      meshplane top --mesh demo --window 30 --interval 5
    """
    count = 0
    with Live(console=output.out, auto_refresh=False) as live:
        try:
            while iterations is None or count < iterations:
                data = run_client(ctx, lambda c: c.telemetry(mesh, seconds))
                live.update(_top_table(data, limit), refresh=True)
                count += 1
                if iterations is None or count < iterations:
                    time.sleep(interval)
        except KeyboardInterrupt:
            pass


@click.command("tap")
@click.option("--mesh", required=True, help="The mesh.")
@click.option("--node", help="Only the proxy of this virtual node (or gateway).")
@click.option("--service", help="Only requests to this virtual service (by Host).")
@click.option("--path-prefix", help="Only requests whose path starts with this.")
@click.option("--status", help="Only responses of this class (5xx) or code (503).")
@click.option("--max", "limit", type=click.IntRange(1), help="Stop after this many requests.")
@output_option("table", "json")
@click.pass_context
def tap(
    ctx: click.Context,
    mesh: str,
    node: str | None,
    service: str | None,
    path_prefix: str | None,
    status: str | None,
    limit: int | None,
    fmt: str,
) -> None:
    """Stream the mesh's requests as they happen (method, authority, path, status, duration,
    source, destination, trace id), from the proxies' access logs.

    While a tap runs, the proxies it covers (every proxy of the mesh, or --node's) send their
    access log to the control plane; when the last tap ends they stop (no cost when nobody
    taps).  -o json prints one JSON object a line.  Ctrl-C stops.  Exit code 0, 1 when the
    server refused, 3 when it cannot be reached.

    \b
    Examples:
      meshplane tap --mesh demo
      meshplane tap --mesh demo --node client --status 5xx
      meshplane tap --mesh demo --path-prefix /api --max 10 -o json
    """
    params = {
        key: value
        for key, value in (
            ("mesh", mesh),
            ("node", node),
            ("service", service),
            ("pathPrefix", path_prefix),
            ("status", status),
        )
        if value is not None
    }

    async def follow(client: Client) -> None:
        seen = 0
        if fmt == "table":
            output.out.print(
                "TIME          PROXY                  METHOD  AUTHORITY / PATH  STATUS  MS  TRACE",
                highlight=False,
            )
        async for entry in client.tap(params):
            if fmt == "json":
                click.echo(json.dumps(entry, separators=(",", ":")))
            else:
                when = time.strftime("%H:%M:%S", time.localtime(entry["time"] or time.time()))
                click.echo(
                    f"{when}  {entry['proxy']:<22} {entry['method'] or '-':<7} "
                    f"{entry['authority']}{entry['path']}  {entry['status']}  "
                    f"{entry['durationMs'] if entry['durationMs'] is not None else '-'}  "
                    f"{entry['traceId'] or entry['requestId'] or '-'}"
                )
            seen += 1
            if limit is not None and seen >= limit:
                return

    with contextlib.suppress(KeyboardInterrupt):
        run_client(ctx, follow)
