"""``meshplane proxy-token create|revoke`` and ``meshplane ca show|rotate``: proxy credentials
and the mesh certificate authorities, through the API (``meshplane.api.authority``).
"""

from __future__ import annotations

import click

from meshplane.cli import output
from meshplane.cli.common import output_option, run_client
from meshplane.errors import MeshplaneError


def _seconds(value: str) -> int:
    from meshplane.server.setting import parse_duration

    try:
        return int(parse_duration(value).total_seconds())
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--ttl") from None


_resource_option = click.option(
    "--resource",
    required=True,
    metavar="ID",
    help="mesh/<mesh>/virtualNode/<name>, mesh/<mesh>/virtualGateway/<name> or the ARN.",
)


@click.group("proxy-token")
def proxy_token() -> None:
    """Bootstrap credentials for proxies: a token scoped to one virtual node or gateway.

    The xDS server gives a proxy presenting it the configuration and secrets of that resource
    only, and refuses it for any other (PERMISSION_DENIED).  Run the proxy with
    'meshplane envoy --token <token>' or MESHPLANE_XDS_TOKEN.
    """


@proxy_token.command("create")
@_resource_option
@click.option("--ttl", default="24h", show_default=True, help="Lifetime: 3600, 90m, 24h, 30d.")
@output_option("token", "json", "yaml")
@click.pass_context
def create(ctx: click.Context, resource: str, ttl: str, fmt: str) -> None:
    """Create a proxy token (needs the editor role on the mesh).

    \b
    Examples:
      meshplane proxy-token create --resource mesh/demo/virtualNode/blue
      MESHPLANE_XDS_TOKEN=$(meshplane proxy-token create --resource mesh/demo/virtualNode/blue) \\
          meshplane envoy --resource mesh/demo/virtualNode/blue
    """
    seconds = _seconds(ttl)
    result = run_client(ctx, lambda c: c.create_proxy_token(resource, seconds))
    if fmt == "token":
        output.out.print(result["token"], highlight=False, soft_wrap=True)
        output.err.print(
            f"proxy token {result['tokenId']} for {result['resource']},"
            f" expires {result['expiresAt']}",
            highlight=False,
        )
        return
    output.dump(result, fmt)


@proxy_token.command("revoke")
@_resource_option
@click.option(
    "--token-id",
    metavar="ID",
    help="Revoke only this token (the tokenId that create printed with -o json); without it, "
    "every token issued for the resource until now.",
)
@output_option("table", "json", "yaml")
@click.pass_context
def revoke(ctx: click.Context, resource: str, token_id: str | None, fmt: str) -> None:
    """Revoke proxy tokens (needs the editor role on the mesh).

    A revoked token is refused from then on, and the proxies streaming with it are
    disconnected at once; a proxy holding another, valid token reconnects.

    \b
    Examples:
      meshplane proxy-token revoke --resource mesh/demo/virtualNode/blue
      meshplane proxy-token revoke --resource mesh/demo/virtualNode/blue --token-id 3f9c2a1b0d4e5f67
    """
    result = run_client(ctx, lambda c: c.revoke_proxy_tokens(resource, token_id))
    if fmt != "table":
        output.dump(result, fmt)
        return
    what = f"proxy token {token_id}" if token_id else "every proxy token"
    output.out.print(
        f"revoked {what} of {result['resource']}"
        + ("" if token_id else f" issued until {result['issuedUntil']}")
        + f"; {result['streamsClosed']} open stream(s) closed",
        highlight=False,
        soft_wrap=True,
    )


@click.group("ca")
def ca() -> None:
    """The certificate authority of a mesh: its trust bundle, and CA rotation."""


@ca.command("show")
@click.option("--mesh", required=True)
@output_option("pem", "json", "yaml")
@click.pass_context
def show(ctx: click.Context, mesh: str, fmt: str) -> None:
    """Print the mesh's trust bundle (PEM), or its roots with -o json.

    \b
    Examples:
      meshplane ca show --mesh demo > demo-ca.pem
      meshplane ca show --mesh demo -o yaml
    """
    result = run_client(ctx, lambda c: c.mesh_ca(mesh))
    if fmt == "pem":
        output.out.print(result["trustBundle"].rstrip("\n"), highlight=False, soft_wrap=True)
        return
    output.dump(result, fmt)


@ca.command("rotate")
@click.option("--mesh", required=True)
@output_option("yaml", "json")
@click.pass_context
def rotate(ctx: click.Context, mesh: str, fmt: str) -> None:
    """Rotate the mesh CA: proxies trust the new root at once, certificates are signed by it
    after a short propagation delay, and the old root stays trusted for an overlap (the
    certificate lifetime by default), so no connection breaks.

    \b
    Examples:
      meshplane ca rotate --mesh demo
    """
    try:
        result = run_client(ctx, lambda c: c.mesh_ca(mesh, rotate=True))
    except MeshplaneError as error:
        raise output.fail(error.message) from None
    output.dump(result, fmt)
