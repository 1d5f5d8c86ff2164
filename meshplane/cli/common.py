"""Shared plumbing of the CLI commands: the server, token and CA options, running the async
client, errors.

Used by every command module of ``meshplane.cli``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import click

from meshplane.cli import output
from meshplane.client import Client, ServerUnreachable, connect
from meshplane.errors import MeshplaneError
from meshplane.manifests import ManifestError, ManifestLimits, files_under, read_file
from meshplane.server.settings import DEFAULT_API_PORT, DEFAULT_HOST

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_SERVER = f"http://{DEFAULT_HOST}:{DEFAULT_API_PORT}"


def server_url(ctx: click.Context) -> str:
    obj = ctx.find_root().obj or {}
    url = obj.get("server") or os.environ.get("MESHPLANE_SERVER") or DEFAULT_SERVER
    return str(url).rstrip("/")


def _root_option(ctx: click.Context, name: str, variable: str) -> str | None:
    obj = ctx.find_root().obj or {}
    value = obj.get(name) or os.environ.get(variable)
    return str(value) if value else None


def run_client(ctx: click.Context, work: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``work`` against the server; turn meshplane errors into messages and exit codes."""

    async def main() -> T:
        async with connect(
            server_url(ctx),
            token=_root_option(ctx, "token", "MESHPLANE_TOKEN"),
            ca_file=_root_option(ctx, "tls_ca", "MESHPLANE_TLS_CA"),
        ) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except ServerUnreachable as error:
        raise output.fail(error.message, output.EXIT_UNREACHABLE) from None
    except MeshplaneError as error:
        raise output.fail(f"{error.message} ({error.code})") from None


def output_option(*choices: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    option: Callable[[Callable[P, T]], Callable[P, T]] = click.option(
        "-o",
        "--output",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format: a table for people, json or yaml for scripts.",
    )
    return option


def read_sources(paths: tuple[str, ...]) -> list[tuple[str, str]]:
    """(source, text) for -f arguments: files, directories (recursively) and '-' (stdin).
    Regular files only, each at most ``MAX_FILE`` bytes: a FIFO, a device or a socket named
    on the command line is refused without being read; one inside a directory is skipped,
    and said so on stderr."""
    result: list[tuple[str, str]] = []
    for path in paths:
        if path == "-":
            text = sys.stdin.read(MAX_FILE + 1)
            if len(text) > MAX_FILE:
                raise output.fail(f"-: standard input is larger than {MAX_FILE} bytes")
            result.append(("-", text))
        elif os.path.isdir(path):
            found, skipped = files_under(path)
            for file, reason in skipped:
                output.err.print(f"{file} skipped: {reason}", highlight=False, markup=False)
            if not found:
                raise output.fail(f"{path}: no .yaml, .yml or .json files in this directory")
            for file in found:
                result.append((file, _read(file)))
        else:
            result.append((path, _read(path)))
    return result


MAX_FILE = ManifestLimits().max_file_size


def _read(path: str) -> str:
    try:
        return read_file(path, MAX_FILE)
    except ManifestError as error:
        raise output.fail(error.message) from None
