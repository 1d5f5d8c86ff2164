"""How the CLI prints: rich tables and messages for people, JSON/YAML for scripts.

Used by every command module of ``meshplane.cli``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "wide", "json", "yaml")

# exit codes (documented in the README)
EXIT_OK = 0
EXIT_ERROR = 1  # the server refused the request (bad input, not found, conflict, in use)
EXIT_USAGE = 2  # click's own usage errors
EXIT_UNREACHABLE = 3  # no server at --server
EXIT_DIFF = 4  # `diff`: there are differences (like `kubectl diff`'s 1, kept distinct)
EXIT_LOCAL = 5  # a local problem: a file cannot be read, a port or data directory is in use

# Piped output is not folded at 80 columns: scripts and logs get whole lines.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 400)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 400)


def dump(data: Any, fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    grid = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    with out.capture() as captured:
        out.print(grid)
    # rich pads every cell to its column's width: no line ends in spaces (before any colour
    # reset), so that copied output and `diff`s of it stay clean
    text = "".join(_TRAILING.sub(r"\1\2", line) for line in captured.get().splitlines(True))
    sys.stdout.write(text)
    sys.stdout.flush()


_TRAILING = re.compile(r" +((?:\x1b\[[0-9;]*m)*)(\n?)$")


def age(epoch: float | None) -> str:
    if not epoch:
        return "-"
    seconds = max(0, int(time.time() - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def age_iso(value: str | None) -> str:
    if not value:
        return "-"
    from datetime import datetime

    return age(datetime.fromisoformat(value).timestamp())


_TIME_FIELDS = ("createdAt", "lastUpdatedAt")


def iso_time(epoch: float) -> str:
    """``2026-11-25T10:02:11.123000+00:00``: ISO 8601 with the zone, as the AWS CLI shows."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()


def with_iso_times(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its metadata's epoch timestamps in ISO 8601 (a copy; the rest as is)."""
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        return data
    times = {
        k: iso_time(v)
        for k, v in metadata.items()
        if k in _TIME_FIELDS and isinstance(v, int | float) and not isinstance(v, bool)
    }
    return {**data, "metadata": {**metadata, **times}}


def fail(message: str, code: int = EXIT_ERROR) -> click.exceptions.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return click.exceptions.Exit(code)
