"""Shared plumbing of the CLI commands: the global options (``--server``, ``--token``,
``--tls-ca``, ``-o``) taken before or after the subcommand, running the async client, errors.

Used by every command module of ``meshplane.cli``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import click

from meshplane.cli import output
from meshplane.client import Client, ServerUnreachable, connect
from meshplane.errors import LocalError, MeshplaneError
from meshplane.manifests import ManifestError, ManifestLimits, files_under, read_file
from meshplane.server.settings_server import DEFAULT_API_PORT, DEFAULT_HOST

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_SERVER = f"http://{DEFAULT_HOST}:{DEFAULT_API_PORT}"

GLOBAL_OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    (
        "--server",
        "server",
        "URL",
        f"The meshplane server to talk to [env MESHPLANE_SERVER; default {DEFAULT_SERVER}].",
    ),
    (
        "--token",
        "token",
        "TOKEN",
        "API token (<id>.<secret>), needed when the server requires credentials "
        "[env MESHPLANE_TOKEN].",
    ),
    (
        "--tls-ca",
        "tls_ca",
        "FILE",
        "CA certificate(s) that signed an https server's certificate [env MESHPLANE_TLS_CA].",
    ),
)
"""(flag, name, metavar, help) of the options every command takes before or after its name."""


def global_option(flag: str, name: str, metavar: str, help: str, *, root: bool) -> click.Option:
    """One of ``GLOBAL_OPTIONS``; on a subcommand it overrides what the group was given."""

    def remember(ctx: click.Context, _: click.Parameter, value: str | None) -> str | None:
        if value is not None or root:
            ctx.find_root().ensure_object(dict)[name] = value
        return value

    return click.Option(
        [flag, name], metavar=metavar, help=help, expose_value=False, callback=remember
    )


def accept_global_options(command: click.Command) -> None:
    """Let ``command`` (every subcommand of a group) take the global options after its name,
    as kubectl and the AWS CLI do; an option the command has for itself is left alone."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_global_options(sub)
        return
    taken = {flag for param in command.params for flag in param.opts}
    for flag, name, metavar, help in GLOBAL_OPTIONS:
        if flag not in taken:
            command.params.append(global_option(flag, name, metavar, help, root=False))


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
    except LocalError as error:
        raise output.fail(error.message, output.EXIT_LOCAL) from None
    except MeshplaneError as error:
        raise output.fail(f"{error.message} ({error.code})") from None


def output_option(*choices: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """``-o/--output``; given before the subcommand (``meshplane -o json get vn``) it counts
    too, when the command has that format."""

    def resolve(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
        if value is not None:
            return value
        given = (ctx.find_root().obj or {}).get("output")
        if given is None:
            return choices[0]
        if given not in choices:
            raise click.BadParameter(
                f"{given!r}: this command prints {', '.join(choices)}", ctx, param
            )
        return str(given)

    option: Callable[[Callable[P, T]], Callable[P, T]] = click.option(
        "-o",
        "--output",
        "fmt",
        type=click.Choice(choices),
        default=None,
        callback=resolve,
        help=f"Output format: a table for people, json or yaml for scripts [default: "
        f"{choices[0]}].",
    )
    return option


class ExistingFile(click.Path):
    """A file argument that must exist: a missing or unreadable one is a local problem (exit
    5), not a usage error."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(dir_okay=False, exists=True, readable=True, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as error:
            hint = param.get_error_hint(ctx) if param is not None and ctx is not None else ""
            raise output.fail(f"{hint}: {error.message}", output.EXIT_LOCAL) from None


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
                raise output.fail(
                    f"-: standard input is larger than {MAX_FILE} bytes", output.EXIT_LOCAL
                )
            result.append(("-", text))
        elif os.path.isdir(path):
            found, skipped = files_under(path)
            for file, reason in skipped:
                output.err.print(f"{file} skipped: {reason}", highlight=False, markup=False)
            if not found:
                raise output.fail(
                    f"{path}: no .yaml, .yml or .json files in this directory", output.EXIT_LOCAL
                )
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
        raise output.fail(error.message, output.EXIT_LOCAL) from None
