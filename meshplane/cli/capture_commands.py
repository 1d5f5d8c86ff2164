"""``meshplane proxy-init enable|disable|status``: App Mesh's capture rules in this namespace.

The settings come as App Mesh's (``APPMESH_APP_PORTS``, ``APPMESH_ENVOY_INGRESS_PORT``, ...),
as the ECS ``proxyConfiguration`` of a task definition (``--proxy-configuration``), or as
flags; :func:`capture_options` and :func:`settings_from` are shared with
``meshplane envoy --capture``.  The rules themselves: :mod:`meshplane.proxy.capture`,
installed by :mod:`meshplane.proxy.iptables`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from meshplane.cli import output
from meshplane.cli.common import output_option
from meshplane.proxy import capture, iptables

F = TypeVar("F", bound=Callable[..., Any])


def capture_options(function: F) -> F:
    """The capture settings as flags (each also read from its App Mesh variable)."""
    return _capture_options(function, with_egress_port=True)


def captured_envoy_options(function: F) -> F:
    """The capture settings of ``meshplane envoy --capture`` (which has its own --egress-port)."""
    return _capture_options(function, with_egress_port=False)


def _capture_options(function: F, with_egress_port: bool) -> F:
    options = [
        click.option(
            "--app-ports",
            metavar="PORTS",
            help="Inbound ports of the application, captured to the ingress port "
            "(comma-separated) [env APPMESH_APP_PORTS; ECS AppPorts].",
        ),
        click.option(
            "--ingress-port",
            metavar="PORT",
            help="Envoy's ingress port [env APPMESH_ENVOY_INGRESS_PORT; ECS ProxyIngressPort; "
            "default 15000].",
        ),
        click.option(
            "--egress-port",
            "capture_egress_port",
            metavar="PORT",
            help="Envoy's egress port [env APPMESH_ENVOY_EGRESS_PORT; ECS ProxyEgressPort; "
            "default 15001].",
        ),
        click.option(
            "--ignore-uid",
            metavar="UID",
            help="Envoy's uid: its traffic is never captured [env APPMESH_IGNORE_UID; "
            "ECS IgnoredUID; default 1337].",
        ),
        click.option(
            "--ignore-gid",
            metavar="GID",
            help="Envoy's gid, likewise [env APPMESH_IGNORE_GID; ECS IgnoredGID].",
        ),
        click.option(
            "--ignored-ip",
            metavar="IPS",
            help="Destinations never captured: addresses or networks, comma-separated "
            "[env APPMESH_EGRESS_IGNORED_IP; ECS EgressIgnoredIPs].",
        ),
        click.option(
            "--ignored-port",
            metavar="PORTS",
            help="Destination ports never captured; 22 is always added "
            "[env APPMESH_EGRESS_IGNORED_PORTS; ECS EgressIgnoredPorts].",
        ),
        click.option(
            "--ipv6/--no-ipv6",
            default=None,
            help="Mirror the rules with ip6tables [env APPMESH_ENABLE_IPV6; default off].",
        ),
        click.option(
            "--app-uid",
            metavar="UID",
            help="The application's uid, checked against the ignored uid [env MESHPLANE_APP_UID].",
        ),
        click.option(
            "--proxy-configuration",
            "proxy_configuration",
            metavar="FILE",
            help="An ECS task definition (or its proxyConfiguration) as JSON; '-' reads stdin.",
        ),
    ]
    if not with_egress_port:
        del options[2]
    for option in reversed(options):
        function = option(function)
    return function


def settings_from(values: dict[str, Any]) -> capture.CaptureSettings:
    """Settings from the ECS file, the environment and the flags of :func:`capture_options`
    (removed from ``values``); exits with a usage error naming a bad or conflicting setting."""
    flags = {
        "app_ports": values.pop("app_ports", None),
        "ingress_port": values.pop("ingress_port", None),
        "egress_port": values.pop("capture_egress_port", None),
        "ignore_uid": values.pop("ignore_uid", None),
        "ignore_gid": values.pop("ignore_gid", None),
        "egress_ignored_ips": values.pop("ignored_ip", None),
        "egress_ignored_ports": values.pop("ignored_port", None),
        "app_uid": values.pop("app_uid", None),
    }
    ipv6 = values.pop("ipv6", None)
    if ipv6 is not None:
        flags["enable_ipv6"] = "1" if ipv6 else "0"
    path = values.pop("proxy_configuration", None)
    try:
        config = None
        if path:
            config = capture.parse_proxy_configuration(_read_bounded(path), path)
        return capture.load_settings(os.environ, flags, config)
    except capture.CaptureSettingsError as error:
        raise output.fail(f"{error.message} (nothing was installed)", output.EXIT_USAGE) from None


def _read_bounded(path: str) -> bytes:
    limit = capture.MAX_CONFIG_BYTES + 1
    try:
        if path == "-":
            return sys.stdin.buffer.read(limit)
        with open(path, "rb") as handle:
            return handle.read(limit)
    except OSError as error:
        raise output.fail(f"{path}: cannot read ({error.strerror})", output.EXIT_USAGE) from None


@click.group("proxy-init")
def proxy_init() -> None:
    """Transparent capture: App Mesh's iptables rules in this network namespace.

    Outbound TCP of the application goes to Envoy's egress port and inbound TCP to its
    application ports goes to Envoy's ingress port; Envoy (running as the ignored uid)
    recovers the original destination. Rules live in their own nat chains, APPMESH_INGRESS
    and APPMESH_EGRESS (ip6tables too with --ipv6). Needs root (CAP_NET_ADMIN).

    \b
    Examples:
      meshplane proxy-init enable --app-ports 8080
      APPMESH_APP_PORTS=8080,8443 APPMESH_EGRESS_IGNORED_IP=169.254.169.254 \\
          meshplane proxy-init enable
      meshplane proxy-init enable --proxy-configuration taskdef.json
      meshplane proxy-init status
      meshplane proxy-init disable

    Exit codes: 0 done, 1 iptables missing, not permitted or refusing, 2 bad settings.
    """


@proxy_init.command()
@capture_options
@output_option("table", "json", "yaml")
def enable(fmt: str, **values: Any) -> None:
    """Install the capture rules (enabling twice is enabling once).

    Settings conflicting with each other are refused before any rule is installed.

    \b
    Examples:
      meshplane proxy-init enable --app-ports 8080 --ignored-port 5432
      meshplane proxy-init enable --app-ports 8080 --ipv6 -o json
    """
    settings = settings_from(values)
    try:
        change = iptables.enable(settings)
    except iptables.CaptureError as error:
        raise output.fail(error.message) from None
    if fmt != "table":
        output.dump({"settings": settings.as_dict(), "actions": change.actions}, fmt)
        return
    for family, action in change.actions.items():
        output.out.print(f"{family}: capture rules {action}", highlight=False)
    _print_settings(settings)


@proxy_init.command()
@output_option("table", "json", "yaml")
def disable(fmt: str) -> None:
    """Remove every capture rule and chain (IPv4 and IPv6); fine when there are none.

    \b
    Examples:
      meshplane proxy-init disable
    """
    try:
        change = iptables.disable()
    except iptables.CaptureError as error:
        raise output.fail(error.message) from None
    if fmt != "table":
        output.dump({"actions": change.actions}, fmt)
        return
    for family, action in change.actions.items():
        said = "removed" if action == "removed" else "none installed, nothing to remove"
        output.out.print(f"{family}: capture rules {said}", highlight=False)


@proxy_init.command()
@output_option("table", "json", "yaml")
def status(fmt: str) -> None:
    """Show the capture rules installed in this network namespace.

    \b
    Examples:
      meshplane proxy-init status
      meshplane proxy-init status -o json
    """
    try:
        states = iptables.status()
    except iptables.CaptureError as error:
        raise output.fail(error.message) from None
    if fmt != "table":
        output.dump(
            {
                family: {
                    "enabled": state.installed,
                    "chains": {k: list(v) for k, v in state.chains.items()},
                    "jumps": list(state.jumps),
                }
                for family, state in states.items()
            },
            fmt,
        )
        return
    rows = []
    for family, state in states.items():
        for jump in state.jumps:
            rows.append((family, jump.split()[1], jump))
        for chain, rules in state.chains.items():
            rows.extend((family, chain, rule) for rule in rules)
    if not any(state.installed for state in states.values()):
        output.out.print("capture: disabled (no APPMESH rules in this namespace)")
        return
    output.out.print("capture: enabled")
    output.table(("FAMILY", "CHAIN", "RULE"), rows)


def _print_settings(settings: capture.CaptureSettings) -> None:
    rows = [(name, "" if value is None else value) for name, value in settings.as_dict().items()]
    output.table(("SETTING", "VALUE"), rows)
