"""The ``dns`` settings of ``meshplane serve``: the mesh DNS server's port and address, where
it forwards the names that are not the mesh's, the range of virtual IPs, and how often the
Cloud Map instances of services with ``HealthCheckConfig`` are checked.

Declarations only (:class:`~meshplane.server.setting.Setting`), with the checks of their
values; part of :data:`meshplane.server.settings.SETTINGS`, whose ``Settings.load`` builds
:class:`~meshplane.server.settings_sections.DnsSettings` from them.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

from meshplane.server.setting import Kind, Setting

DEFAULT_DNS_PORT = 15053
DEFAULT_VIP_RANGE = "240.240.0.0/16"
DEFAULT_HEALTH_CHECK_INTERVAL = timedelta(seconds=30)


def _health_check_interval(value: timedelta) -> str | None:
    if not timedelta(seconds=1) <= value <= timedelta(hours=1):
        return f"{value.total_seconds():g}s is not between 1s and 1h"
    return None


def _dns_port(value: Any) -> str | None:
    text = str(value).strip()
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        return f"{value!r} is not a port (0-65535; 0 turns DNS off)"
    return None


def _vip_range(value: str) -> str | None:
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as error:
        return f"{value!r} is not a network in CIDR form ({error})"
    if network.num_addresses < 4:
        return f"{value!r} is too small (at least a /30)"
    return None


def _upstreams(value: tuple[str, ...]) -> str | None:
    if "off" in value and len(value) > 1:
        return "'off' turns forwarding off: give it alone"
    return None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "dns_port",
        "--dns-port",
        "MESHPLANE_DNS_PORT",
        Kind.TEXT,
        "Port of the mesh DNS server (UDP and TCP); 0 turns it off.",
        "dns",
        default=str(DEFAULT_DNS_PORT),
        metavar="PORT",
        check=_dns_port,
    ),
    Setting(
        "dns_host",
        "--dns-host",
        "MESHPLANE_DNS_HOST",
        Kind.TEXT,
        "Address the mesh DNS server binds.",
        "dns",
        default_text="the `--host`",
    ),
    Setting(
        "dns_upstreams",
        "--dns-upstream",
        "MESHPLANE_DNS_UPSTREAM",
        Kind.NAMES,
        "Resolver (`HOST[:PORT]`) for the names that are not the mesh's, repeatable; `off` "
        "answers them REFUSED.",
        "dns",
        default=(),
        default_text="the nameservers of `/etc/resolv.conf`",
        metavar="HOST[:PORT]",
        check=_upstreams,
    ),
    Setting(
        "vip_range",
        "--vip-range",
        "MESHPLANE_VIP_RANGE",
        Kind.TEXT,
        "Range of the stable virtual IPs given to virtual services (kept in the store).",
        "dns",
        default=DEFAULT_VIP_RANGE,
        metavar="CIDR",
        check=_vip_range,
    ),
    Setting(
        "health_check_interval",
        "--health-check-interval",
        "MESHPLANE_HEALTH_CHECK_INTERVAL",
        Kind.DURATION,
        "How often each instance of a Cloud Map service with HealthCheckConfig is checked "
        "(HTTP, HTTPS or TCP, as Route 53 does).",
        "dns",
        default=DEFAULT_HEALTH_CHECK_INTERVAL,
        metavar="DURATION",
        check=_health_check_interval,
    ),
)
