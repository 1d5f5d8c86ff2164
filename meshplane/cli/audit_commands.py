"""``meshplane audit``: who changed what, and when (``GET /meshplane/v1/audit``)."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import click

from meshplane.cli import output
from meshplane.cli.common import output_option, run_client

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: float) -> float:
    """``30m``, ``2h``, ``7d`` ago, an ISO 8601 time (local time if no zone), or epoch seconds."""
    found = _DURATION.match(value.strip())
    if found:
        return now - float(found[1]) * _UNITS[found[2]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected a duration (30m, 2h, 7d), an ISO 8601 time or epoch seconds"
        ) from None


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


@click.command()
@click.option("--mesh", "-m", help="Only changes in this mesh.")
@click.option("--since", metavar="WHEN", help="Only changes since: 30m, 2h, 7d, an ISO time.")
@click.option("--limit", type=click.IntRange(1), help="At most this many entries (oldest first).")
@output_option("table", "json", "yaml")
@click.pass_context
def audit(
    ctx: click.Context, mesh: str | None, since: str | None, limit: int | None, fmt: str
) -> None:
    """Show the audit log: every change, who made it (token id or anonymous@loopback), when,
    how (api, apply, delete, label, offline) and the resulting version.

    Only changes in meshes you may view are shown.

    \b
    Examples:
      meshplane audit
      meshplane audit --mesh webapp --since 2h
      meshplane audit --since 2026-10-01T00:00 -o json
    """
    start = parse_since(since, time.time()) if since is not None else None
    entries: list[dict[str, Any]] = run_client(
        ctx, lambda client: client.audit(mesh=mesh, since=start, limit=limit)
    )
    if fmt != "table":
        output.dump(entries, fmt)
        return
    output.table(
        ["TIME", "PRINCIPAL", "OPERATION", "RESOURCE", "VERSION", "VIA"],
        [
            [
                _time(e["at"]),
                e["principal"],
                e["operation"],
                e["resource"],
                "-" if e["version"] is None else e["version"],
                e["via"],
            ]
            for e in entries
        ],
    )
