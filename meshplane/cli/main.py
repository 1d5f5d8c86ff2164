"""The ``meshplane`` command: the group, ``serve``, and the registration of every command.

Entry point ``meshplane.cli.main:main`` (pyproject ``[project.scripts]``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import click

from meshplane import __version__
from meshplane.cli import output
from meshplane.cli.audit_commands import audit
from meshplane.cli.authority_commands import ca, proxy_token
from meshplane.cli.capture_commands import proxy_init
from meshplane.cli.common import GLOBAL_OPTIONS, accept_global_options, global_option
from meshplane.cli.db_commands import db
from meshplane.cli.fleet_commands import status
from meshplane.cli.manifest_commands import apply, diff, label
from meshplane.cli.proxy_commands import envoy, proxy_config, proxy_log, proxy_status
from meshplane.cli.registry_commands import dns
from meshplane.cli.resource_commands import delete, describe, get
from meshplane.cli.settings_options import settings_options
from meshplane.cli.telemetry_commands import stat, tap, top
from meshplane.cli.token_commands import token
from meshplane.errors import LocalError, MeshplaneError
from meshplane.server.settings import Settings
from meshplane.server.settings_server import DEFAULT_API_PORT, DEFAULT_XDS_PORT


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="meshplane")
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(output.FORMATS),
    help="Output format of the subcommand (where it has that format); also taken after it.",
)
@click.pass_context
def cli(ctx: click.Context, fmt: str | None) -> None:
    """meshplane: the AWS App Mesh API, manifests and Envoy conventions, self-hosted.

    \b
    Examples:
      meshplane serve                                  # control plane with embedded SQLite
      meshplane apply -f mesh.yaml                     # App Mesh Kubernetes manifests
      meshplane get virtualnodes --mesh webapp
      aws appmesh list-meshes --endpoint-url http://127.0.0.1:8765

    Global options (--server, --token, --tls-ca, -o) go before or after the command.

    \b
    Exit codes:
      0  success
      1  the server refused the request (bad input, not found, conflict, in use)
      2  usage error (a bad flag or argument)
      3  no server reachable at --server
      4  `diff` found differences
      5  a local problem: a file that cannot be read, a port or data directory in use
    """
    ctx.ensure_object(dict)["output"] = fmt


@cli.command()
@settings_options()
def serve(**values: Any) -> None:
    """Run the control plane: the App Mesh REST API and the xDS server, in one process.

    Bound to loopback only (the default), the API is open to local callers; on any other
    address, or with --require-auth, every call needs an API token ('meshplane token').
    Likewise proxies need a proxy token ('meshplane proxy-token') off loopback or with
    --require-proxy-auth.  Each mesh gets a CA (under <data dir>/ca) that issues its proxies'
    SPIFFE certificates over SDS; the mesh tag meshplane.io/mtls=STRICT|PERMISSIVE turns on
    mTLS between all its proxies.
    It also serves the AWS Cloud Map API on the API port (POST /, for boto3 and
    'aws servicediscovery') and a mesh DNS server (--dns-port): virtual service names
    answer with stable virtual IPs (--vip-range), Cloud Map DNS namespaces with their
    healthy instances, other names are forwarded (--dns-upstream).
    Stops cleanly on SIGTERM or Ctrl-C.

    \b
    Examples:
      meshplane serve
      meshplane serve --data-dir /var/lib/meshplane --api-port 8765 --xds-port 18000
      meshplane token create --data-dir /var/lib/meshplane --mesh '*' --role admin
      meshplane serve --data-dir /var/lib/meshplane --host 0.0.0.0 \\
          --tls-cert /etc/meshplane/tls.crt --tls-key /etc/meshplane/tls.key
      meshplane serve --host 0.0.0.0 --tls-issue --tls-name cp.example.internal
      meshplane serve --dns-port 5353 --dns-upstream 127.0.0.53 --vip-range 240.241.0.0/16
    """
    from meshplane.server import serve as run_server

    try:
        settings = Settings.load(**values)
    except ValueError as error:
        raise output.fail(str(error), output.EXIT_USAGE) from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(run_server(settings))
    except LocalError as error:
        raise output.fail(error.message, output.EXIT_LOCAL) from None
    except MeshplaneError as error:
        raise output.fail(error.message) from None
    except KeyboardInterrupt:
        pass


@cli.command()
@settings_options(
    "data_dir",
    "api_port",
    "xds_port",
    defaults={
        "data_dir": (
            Path(".meshplane/data"),
            "Where the demo's control plane keeps its SQLite store.",
        ),
        "api_port": (DEFAULT_API_PORT, None),
        "xds_port": (DEFAULT_XDS_PORT, None),
    },
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
@click.option(
    "--hosts",
    is_flag=True,
    help="Run it across three hosts (network namespaces <prefix>client, <prefix>blue, "
    "<prefix>green on a bridge, 198.18.0.0/15) with transparent capture: the applications "
    "call color.demo.local by name. Needs root.",
)
@click.option(
    "--hosts-prefix",
    default="mp-",
    show_default=True,
    help="Prefix of the hosts' network namespaces (with --hosts).",
)
def demo(
    data_dir: Path,
    api_port: int,
    xds_port: int,
    egress_port: int,
    admin_port: int,
    gateway_port: int,
    hosts: bool,
    hosts_prefix: str,
) -> None:
    """Run a working mesh on this machine: control plane, blue/green apps, their sidecars and
    an ingress gateway.

    Applies the blue/green example (a client calling a virtual service routed by a virtual
    router to blue and green virtual nodes, and a virtual gateway in front of it), starts
    real Envoy sidecars on 127.0.0.2-4 and the gateway's Envoy on 127.0.0.1:8080, and prints
    how to send requests and shift the weights. Ctrl-C stops everything.

    With --hosts (root only), the client, blue and green each run on their own host with
    'meshplane envoy --capture', and 'ip netns exec mp-client curl
    http://color.demo.local:8080/' calls the service by name, unchanged.

    \b
    Examples:
      meshplane demo
      meshplane demo --api-port 9765 --egress-port 16001 --gateway-port 18080
      sudo .venv/bin/meshplane demo --hosts
    """
    from meshplane.demo import DemoPorts, run_demo

    if hosts:
        _demo_hosts(data_dir, api_port, xds_port, hosts_prefix)
        return

    settings = Settings.load(
        data_dir=data_dir,
        api_port=api_port,
        xds_port=xds_port,
        host="127.0.0.1",
        dns_port="0",
        log_level="warning",
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
    except LocalError as error:
        raise output.fail(error.message, output.EXIT_LOCAL) from None
    except MeshplaneError as error:
        raise output.fail(error.message) from None
    except KeyboardInterrupt:
        pass


def _demo_hosts(data_dir: Path, api_port: int, xds_port: int, prefix: str) -> None:
    from meshplane.demo_hosts import check_root, run_demo_hosts

    try:
        check_root()
    except MeshplaneError as error:
        raise output.fail(error.message) from None
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(
            run_demo_hosts(
                data_dir,
                api_port,
                xds_port,
                prefix,
                lambda text: output.out.print(text, highlight=False),
            )
        )
    except MeshplaneError as error:
        raise output.fail(error.message) from None
    except KeyboardInterrupt:
        pass


cli.params[:0] = [global_option(*option, root=True) for option in GLOBAL_OPTIONS]
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
    proxy_init,
    token,
    audit,
    proxy_token,
    ca,
    stat,
    tap,
    top,
    dns,
    db,
    status,
):
    accept_global_options(command)
    cli.add_command(command)


def main() -> None:
    cli(prog_name="meshplane")
