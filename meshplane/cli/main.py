"""The ``meshplane`` command: the group, ``serve``, and the registration of every command.

Entry point ``meshplane.cli.main:main`` (pyproject ``[project.scripts]``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from meshplane import __version__
from meshplane.cli import output
from meshplane.cli.audit_commands import audit
from meshplane.cli.common import DEFAULT_SERVER
from meshplane.cli.identity_commands import ca, proxy_token
from meshplane.cli.manifest_commands import apply, diff, label
from meshplane.cli.proxy_commands import envoy, proxy_config, proxy_log, proxy_status
from meshplane.cli.resource_commands import delete, describe, get
from meshplane.cli.token_commands import token
from meshplane.errors import MeshplaneError
from meshplane.server.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT, Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="meshplane")
@click.option(
    "--server",
    metavar="URL",
    help=f"The meshplane server to talk to [env MESHPLANE_SERVER; default {DEFAULT_SERVER}].",
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="API token (<id>.<secret>), needed when the server requires credentials "
    "[env MESHPLANE_TOKEN].",
)
@click.option(
    "--tls-ca",
    metavar="FILE",
    help="CA certificate(s) that signed an https server's certificate [env MESHPLANE_TLS_CA].",
)
@click.pass_context
def cli(ctx: click.Context, server: str | None, token: str | None, tls_ca: str | None) -> None:
    """meshplane: the AWS App Mesh API, manifests and Envoy conventions, self-hosted.

    \b
    Examples:
      meshplane serve                                  # control plane with embedded SQLite
      meshplane apply -f mesh.yaml                     # App Mesh Kubernetes manifests
      meshplane get virtualnodes --mesh webapp
      aws appmesh list-meshes --endpoint-url http://127.0.0.1:8765

    Exit codes: 0 success, 1 the server refused the request, 2 usage error,
    3 no server reachable, 4 `diff` found differences.
    """
    ctx.ensure_object(dict)
    ctx.obj["server"] = server
    ctx.obj["token"] = token
    ctx.obj["tls_ca"] = tls_ca


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Where the embedded SQLite "
    "database lives [env MESHPLANE_DATA_DIR; default ~/.local/share/meshplane].",
)
@click.option(
    "--database-url",
    metavar="URL",
    help="A SQLAlchemy database URL instead of the embedded store [env MESHPLANE_DATABASE_URL].",
)
@click.option(
    "--host", help="Address the API and xDS ports bind [env MESHPLANE_HOST; default 127.0.0.1]."
)
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    help=f"REST API port [env MESHPLANE_API_PORT; default {DEFAULT_API_PORT}].",
)
@click.option(
    "--xds-port",
    type=click.IntRange(1, 65535),
    help=f"xDS (gRPC ADS) port [env MESHPLANE_XDS_PORT; default {DEFAULT_XDS_PORT}].",
)
@click.option("--region", help="Region in ARNs [env MESHPLANE_REGION; default us-east-1].")
@click.option(
    "--account-id",
    help="Account ID in ARNs and owners [env MESHPLANE_ACCOUNT_ID; default 000000000000].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log level [env MESHPLANE_LOG_LEVEL; default info].",
)
@click.option(
    "--require-auth",
    is_flag=True,
    default=None,
    help="Require API credentials even on loopback (always required when --host is not a "
    "loopback address) [env MESHPLANE_REQUIRE_AUTH].",
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False),
    help="PEM certificate (chain) for the API and xDS ports [env MESHPLANE_TLS_CERT].",
)
@click.option(
    "--tls-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="PEM private key of --tls-cert [env MESHPLANE_TLS_KEY].",
)
@click.option(
    "--tls-issue",
    is_flag=True,
    default=None,
    help="TLS on the API and xDS ports with a certificate issued by meshplane's own "
    "control-plane CA (kept in <data dir>/tls; clients trust <data dir>/tls/ca.pem) "
    "[env MESHPLANE_TLS_ISSUE].",
)
@click.option(
    "--tls-name",
    "tls_names",
    multiple=True,
    metavar="NAME",
    help="Another DNS name or IP address for --tls-issue's certificate (repeatable; localhost, "
    "127.0.0.1 and the --host address are always in it) [env MESHPLANE_TLS_NAMES, "
    "comma-separated].",
)
@click.option(
    "--require-proxy-auth",
    is_flag=True,
    default=None,
    help="Proxies must present a proxy token ('meshplane proxy-token create') even on "
    "loopback (always required when --host is not a loopback address) "
    "[env MESHPLANE_REQUIRE_PROXY_AUTH].",
)
@click.option(
    "--trust-domain",
    help="SPIFFE trust domain of proxy identities [env MESHPLANE_TRUST_DOMAIN; "
    "default meshplane.local].",
)
@click.option(
    "--cert-lifetime",
    metavar="DURATION",
    help="Lifetime of proxy certificates, e.g. 24h, 90m [env MESHPLANE_CERT_LIFETIME; "
    "default 24h].",
)
@click.option(
    "--cert-rotate-after",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Fraction of its lifetime after which a proxy certificate is replaced "
    "[env MESHPLANE_CERT_ROTATE_AFTER; default 0.5].",
)
@click.option(
    "--ca-cert",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="An operator CA certificate (PEM) that signs proxy certificates of every mesh, "
    "instead of one generated CA per mesh [env MESHPLANE_CA_CERT].",
)
@click.option(
    "--ca-key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The EC private key (PEM) of --ca-cert [env MESHPLANE_CA_KEY].",
)
@click.option(
    "--ca-propagation",
    metavar="DURATION",
    help="After 'meshplane ca rotate', how long the new root is only trusted before it signs "
    "[env MESHPLANE_CA_PROPAGATION; default 30s].",
)
@click.option(
    "--ca-overlap",
    metavar="DURATION",
    help="How long the old root stays trusted once the new one signs "
    "[env MESHPLANE_CA_OVERLAP; default: --cert-lifetime].",
)
def serve(
    data_dir: Path | None,
    database_url: str | None,
    host: str | None,
    api_port: int | None,
    xds_port: int | None,
    region: str | None,
    account_id: str | None,
    log_level: str | None,
    require_auth: bool | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_issue: bool | None,
    tls_names: tuple[str, ...],
    require_proxy_auth: bool | None,
    trust_domain: str | None,
    cert_lifetime: str | None,
    cert_rotate_after: float | None,
    ca_cert: Path | None,
    ca_key: Path | None,
    ca_propagation: str | None,
    ca_overlap: str | None,
) -> None:
    """Run the control plane: the App Mesh REST API and the xDS server, in one process.

    Bound to loopback only (the default), the API is open to local callers; on any other
    address, or with --require-auth, every call needs an API token ('meshplane token').
    Likewise proxies need a proxy token ('meshplane proxy-token') off loopback or with
    --require-proxy-auth.  Each mesh gets a CA (under <data dir>/ca) that issues its proxies'
    SPIFFE certificates over SDS; the mesh tag meshplane.io/mtls=STRICT|PERMISSIVE turns on
    mTLS between all its proxies.
    Stops cleanly on SIGTERM or Ctrl-C.

    \b
    Examples:
      meshplane serve
      meshplane serve --data-dir /var/lib/meshplane --api-port 8765 --xds-port 18000
      meshplane token create --data-dir /var/lib/meshplane --mesh '*' --role admin
      meshplane serve --data-dir /var/lib/meshplane --host 0.0.0.0 \\
          --tls-cert /etc/meshplane/tls.crt --tls-key /etc/meshplane/tls.key
      meshplane serve --host 0.0.0.0 --tls-issue --tls-name cp.example.internal
    """
    from meshplane.server.run import serve as run_server

    try:
        settings = Settings.load(
            data_dir=data_dir,
            database_url=database_url,
            host=host,
            api_port=api_port,
            xds_port=xds_port,
            region=region,
            account_id=account_id,
            log_level=log_level,
            require_auth=require_auth,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_issue=tls_issue,
            tls_names=tls_names,
            require_proxy_auth=require_proxy_auth,
            trust_domain=trust_domain,
            cert_lifetime=cert_lifetime,
            cert_rotate_after=cert_rotate_after,
            ca_cert=ca_cert,
            ca_key=ca_key,
            ca_propagation=ca_propagation,
            ca_overlap=ca_overlap,
        )
    except ValueError as error:
        raise output.fail(str(error), output.EXIT_USAGE) from None
    if len(settings.account_id) != 12 or not settings.account_id.isdigit():
        raise output.fail(
            f"--account-id: {settings.account_id!r} is not a 12-digit account ID", output.EXIT_USAGE
        )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(run_server(settings))
    except MeshplaneError as error:
        raise output.fail(error.message) from None
    except KeyboardInterrupt:
        pass


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".meshplane/data"),
    show_default=True,
    help="Where the demo's control plane keeps its SQLite store.",
)
@click.option(
    "--api-port", type=click.IntRange(1, 65535), default=DEFAULT_API_PORT, show_default=True
)
@click.option(
    "--xds-port", type=click.IntRange(1, 65535), default=DEFAULT_XDS_PORT, show_default=True
)
@click.option(
    "--egress-port",
    type=click.IntRange(1, 65535),
    default=15001,
    show_default=True,
    help="The client sidecar's egress listener (127.0.0.1).",
)
@click.option(
    "--admin-port",
    type=click.IntRange(1, 65532),
    default=9901,
    show_default=True,
    help="First of the four admin ports (three sidecars, then the gateway).",
)
@click.option(
    "--gateway-port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="The gateway's listener (127.0.0.1): requests from outside the mesh.",
)
def demo(
    data_dir: Path,
    api_port: int,
    xds_port: int,
    egress_port: int,
    admin_port: int,
    gateway_port: int,
) -> None:
    """Run a working mesh on this machine: control plane, blue/green apps, their sidecars and
    an ingress gateway.

    Applies the blue/green example (a client calling a virtual service routed by a virtual
    router to blue and green virtual nodes, and a virtual gateway in front of it), starts
    real Envoy sidecars on 127.0.0.2-4 and the gateway's Envoy on 127.0.0.1:8080, and prints
    how to send requests and shift the weights. Ctrl-C stops everything.

    \b
    Examples:
      meshplane demo
      meshplane demo --api-port 9765 --egress-port 16001 --gateway-port 18080
    """
    from meshplane.demo import DemoPorts, run_demo

    settings = Settings.load(
        data_dir=data_dir, api_port=api_port, xds_port=xds_port, host="127.0.0.1"
    )
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(
            run_demo(
                settings,
                DemoPorts(egress=egress_port, admin_base=admin_port, gateway=gateway_port),
                lambda text: output.out.print(text, highlight=False),
            )
        )
    except MeshplaneError as error:
        raise output.fail(error.message) from None
    except KeyboardInterrupt:
        pass


for command in (
    apply,
    diff,
    get,
    describe,
    delete,
    label,
    envoy,
    proxy_status,
    proxy_config,
    proxy_log,
    token,
    audit,
    proxy_token,
    ca,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="meshplane")
