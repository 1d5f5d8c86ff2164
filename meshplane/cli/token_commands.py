"""``meshplane token create|list|revoke``: the API tokens that authenticate callers.

Through the API by default (with ``--token``: an admin token of the mesh), or offline with
``--data-dir``: straight into the data directory's store while the server is stopped, which is
how the first admin token of a server that requires credentials is made (a new data
directory is created if there is none).  With ``--database-url`` (and the fleet's KEK) too,
straight into a fleet's PostgreSQL database, while its replicas run or not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from meshplane.cli import output
from meshplane.cli.common import output_option, run_client
from meshplane.cli.settings_options import settings_options
from meshplane.client import Client
from meshplane.errors import MeshplaneError

if TYPE_CHECKING:
    from meshplane.server.offline import OfflineTokens

ROLES = ("viewer", "editor", "admin")

T = TypeVar("T")

F = TypeVar("F", bound=Callable[..., Any])


def offline_options(command: F) -> F:
    """``--data-dir`` (work offline) and the database settings of ``serve`` it works on."""
    command = settings_options("database_url", "kek_file")(command)
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="Work offline on this server data directory (the server must be stopped; with "
        "--database-url, on that fleet's database).",
    )(command)


def _run(
    ctx: click.Context,
    data_dir: Path | None,
    online: Callable[[Client], Any],
    offline: Callable[[OfflineTokens], T],
    store: dict[str, Any],
) -> Any:
    if data_dir is None:
        return run_client(ctx, online)
    from meshplane.server.offline import DataDirLocked, offline_tokens

    try:
        with offline_tokens(data_dir, **store) as tokens:
            return offline(tokens)
    except DataDirLocked as error:
        raise output.fail(
            f"{error.message}; or work through the API with an admin token (--token)",
            output.EXIT_LOCAL,
        ) from None
    except MeshplaneError as error:
        raise output.fail(f"{error.message} ({error.code})") from None


@click.group()
def token() -> None:
    """Create, list and revoke API tokens.

    A token grants one role on one mesh, or on every mesh with --mesh '*': viewer (describe,
    list), editor (create, update, delete resources) or admin (also the mesh itself, tags and
    the mesh's tokens). Send it with --token / MESHPLANE_TOKEN, as 'Authorization: Bearer', or
    use its id and secret as AWS access key id and secret access key (boto3, AWS CLI).
    """


@token.command("create")
@click.option("--mesh", "-m", required=True, help="The mesh, or '*' for every mesh.")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What it may do.")
@click.option("--description", "-d", help="What the token is for (shown by 'token list').")
@offline_options
@output_option("table", "json", "yaml")
@click.pass_context
def create(
    ctx: click.Context,
    /,
    mesh: str,
    role: str,
    description: str | None,
    data_dir: Path | None,
    fmt: str,
    **store: Any,
) -> None:
    """Create a token; its secret is shown this once.

    \b
    Examples:
      meshplane token create --data-dir /var/lib/meshplane --mesh '*' --role admin
      MESHPLANE_KEK=... meshplane token create --data-dir /tmp/x \\
          --database-url postgresql://meshplane@db/meshplane --mesh '*' --role admin
      meshplane token create --mesh webapp --role editor -d "CI deploys"
      meshplane token create -m webapp --role viewer -o json | jq -r .token
    """

    result = _run(
        ctx,
        data_dir,
        lambda c: c.create_token(mesh, role, description),
        lambda tokens: tokens.create(mesh, role, description),
        store,
    )
    if fmt != "table":
        output.dump(result, fmt)
        return
    where = "every mesh" if result["mesh"] == "*" else f"mesh {result['mesh']}"
    output.out.print(f"token {result['id']} created: {result['role']} on {where}", highlight=False)
    output.table(
        ["", "VALUE", "USE"],
        [
            ["bearer token", result["token"], "--token, MESHPLANE_TOKEN, Authorization: Bearer"],
            ["access key id", result["id"], "boto3 / AWS CLI (SigV4)"],
            ["secret access key", result["secret"], "boto3 / AWS CLI (SigV4)"],
        ],
    )
    output.err.print("The secret is shown only now; keep it safe.", highlight=False)


@token.command("list")
@click.option("--mesh", "-m", help="Only the tokens of this mesh ('*': the global tokens).")
@offline_options
@output_option("table", "json", "yaml")
@click.pass_context
def list_tokens(
    ctx: click.Context, /, mesh: str | None, data_dir: Path | None, fmt: str, **store: Any
) -> None:
    """List the tokens of the meshes you administer (never their secrets).

    \b
    Examples:
      meshplane token list
      meshplane token list --mesh webapp -o json
    """

    tokens = _run(ctx, data_dir, lambda c: c.tokens(mesh), lambda tokens: tokens.list(mesh), store)
    if fmt != "table":
        output.dump(tokens, fmt)
        return
    output.table(
        ["ID", "MESH", "ROLE", "DESCRIPTION", "CREATED BY", "AGE"],
        [
            [
                t["id"],
                t["mesh"],
                t["role"],
                t["description"],
                t["createdBy"],
                output.age(t["createdAt"]),
            ]
            for t in tokens
        ],
    )


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@offline_options
@click.pass_context
def revoke(ctx: click.Context, /, token_id: str, data_dir: Path | None, **store: Any) -> None:
    """Revoke a token: it stops working at once.

    \b
    Examples:
      meshplane token revoke MPTQ4ZJX2L5N7RCWE3KA
    """

    revoked = _run(
        ctx,
        data_dir,
        lambda c: c.revoke_token(token_id),
        lambda tokens: tokens.revoke(token_id),
        store,
    )
    output.out.print(f"token {revoked['id']} revoked", highlight=False)
