"""Transparent capture settings and the iptables rules they make (App Mesh's proxy-init).

:class:`CaptureSettings` holds App Mesh's knobs — the ``APPMESH_*`` variables of the proxy
route manager and the EC2 ``envoy-networking.sh`` script, which the ECS ``proxyConfiguration``
properties (``IgnoredUID``, ``AppPorts``, ``ProxyIngressPort``, ...) map to one for one.
:func:`load_settings` reads them from a task definition's ``proxyConfiguration``, then the
environment, then flags (each later source wins), and refuses conflicting or malformed values
before anything is installed, naming the setting as the user gave it.

:func:`chain_rules` turns settings into the rules of one address family, exactly App Mesh's
(nat table, chains ``APPMESH_INGRESS`` and ``APPMESH_EGRESS``), written the way
``iptables -S`` prints them so installed rules compare equal to wanted ones.  Unlike the ECS
CNI plugin, ports beyond 15 are never dropped: they go into further ``multiport`` rules.

Pure (no I/O); :mod:`meshplane.proxy.iptables` installs what this module describes.  Called by
``meshplane proxy-init``, ``meshplane envoy --capture`` and tests.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from meshplane.errors import BadRequestError

Family = Literal["ipv4", "ipv6"]
INGRESS_CHAIN = "APPMESH_INGRESS"
EGRESS_CHAIN = "APPMESH_EGRESS"
CREATED_MARK_CHAIN = "APPMESH_CREATED_NAT"
"""An empty chain enable leaves when it had to create the nat table: disable then removes
the table again, so the namespace is exactly as before."""
ALWAYS_IGNORED_PORTS = (22,)
"""App Mesh always appends 22 (ssh) to the ignored egress ports."""
MULTIPORT_LIMIT = 15
"""Ports one ``-m multiport`` match takes; more ports make more rules (never dropped)."""
MAX_CONFIG_BYTES = 1 << 20


class CaptureSettingsError(BadRequestError):
    """A capture setting is malformed or conflicts with another; nothing was installed."""


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """App Mesh's capture settings (defaults as App Mesh's)."""

    app_ports: tuple[int, ...] = ()
    """Inbound TCP to these ports goes to Envoy's ingress port (empty: no ingress rules)."""
    ingress_port: int = 15000
    egress_port: int = 15001
    ignore_uid: int | None = 1337
    """Envoy's uid: its own outbound traffic is never captured."""
    ignore_gid: int | None = None
    egress_ignored_ips: tuple[str, ...] = ()
    """Addresses or networks outbound traffic to which is never captured."""
    egress_ignored_ports: tuple[int, ...] = ()
    """Ports outbound traffic to which is never captured (22 is always added)."""
    enable_ipv6: bool = False
    app_uid: int | None = None
    """The application's uid, when known: it must differ from the ignored uid."""
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    """Where each field came from (``--app-ports``, ``APPMESH_APP_PORTS``, ``AppPorts``)."""

    @property
    def ignored_ports(self) -> tuple[int, ...]:
        """The ignored egress ports with 22 added, in order, without repeats."""
        return tuple(dict.fromkeys((*self.egress_ignored_ports, *ALWAYS_IGNORED_PORTS)))

    def families(self) -> tuple[Family, ...]:
        return ("ipv4", "ipv6") if self.enable_ipv6 else ("ipv4",)

    def as_dict(self) -> dict[str, Any]:
        """The settings under App Mesh's variable names (for ``status`` and logs)."""
        return {
            "APPMESH_APP_PORTS": ",".join(map(str, self.app_ports)),
            "APPMESH_ENVOY_INGRESS_PORT": self.ingress_port,
            "APPMESH_ENVOY_EGRESS_PORT": self.egress_port,
            "APPMESH_IGNORE_UID": self.ignore_uid,
            "APPMESH_IGNORE_GID": self.ignore_gid,
            "APPMESH_EGRESS_IGNORED_IP": ",".join(self.egress_ignored_ips),
            "APPMESH_EGRESS_IGNORED_PORTS": ",".join(map(str, self.ignored_ports)),
            "APPMESH_ENABLE_IPV6": int(self.enable_ipv6),
        }


@dataclass(frozen=True, slots=True)
class _Setting:
    field: str
    env: str
    ecs: str | None
    flag: str
    kind: Literal["ports", "port", "id", "ips", "bool"]


SETTINGS = (
    _Setting("app_ports", "APPMESH_APP_PORTS", "AppPorts", "--app-ports", "ports"),
    _Setting(
        "ingress_port", "APPMESH_ENVOY_INGRESS_PORT", "ProxyIngressPort", "--ingress-port", "port"
    ),
    _Setting(
        "egress_port", "APPMESH_ENVOY_EGRESS_PORT", "ProxyEgressPort", "--egress-port", "port"
    ),
    _Setting("ignore_uid", "APPMESH_IGNORE_UID", "IgnoredUID", "--ignore-uid", "id"),
    _Setting("ignore_gid", "APPMESH_IGNORE_GID", "IgnoredGID", "--ignore-gid", "id"),
    _Setting(
        "egress_ignored_ips", "APPMESH_EGRESS_IGNORED_IP", "EgressIgnoredIPs", "--ignored-ip", "ips"
    ),
    _Setting(
        "egress_ignored_ports",
        "APPMESH_EGRESS_IGNORED_PORTS",
        "EgressIgnoredPorts",
        "--ignored-port",
        "ports",
    ),
    _Setting("enable_ipv6", "APPMESH_ENABLE_IPV6", "EnableIPv6", "--ipv6", "bool"),
    _Setting("app_uid", "MESHPLANE_APP_UID", None, "--app-uid", "id"),
)
"""Every setting: its field, App Mesh variable, ECS ``proxyConfiguration`` property, flag."""
_BY_ECS = {s.ecs: s for s in SETTINGS if s.ecs}


def load_settings(
    env: Mapping[str, str],
    flags: Mapping[str, object],
    proxy_configuration: Mapping[str, Any] | None = None,
    base: CaptureSettings | None = None,
) -> CaptureSettings:
    """Settings from ``base``, then the ECS properties, then ``env``, then ``flags`` (by
    field name; None means not given), checked by :func:`check`."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = dict((base or CaptureSettings()).sources)
    for name, raw in _ecs_properties(proxy_configuration).items():
        setting = _BY_ECS.get(name)
        if setting is None:
            raise CaptureSettingsError(
                f"proxyConfiguration property {name!r} is not one of " + ", ".join(sorted(_BY_ECS))
            )
        label = f"proxyConfiguration {name}"
        values[setting.field], sources[setting.field] = _parse(setting, raw, label), label
    for setting in SETTINGS:
        text = env.get(setting.env)
        if text is not None and text.strip() != "":
            values[setting.field] = _parse(setting, text, setting.env)
            sources[setting.field] = setting.env
    for setting in SETTINGS:
        given = flags.get(setting.field)
        if given is None or given == ():
            continue
        if isinstance(given, (tuple, list)):
            given = ",".join(str(g) for g in given)
        values[setting.field] = _parse(setting, str(given), setting.flag)
        sources[setting.field] = setting.flag
    settings = replace(base or CaptureSettings(), **values, sources=sources)
    check(settings)
    return settings


def parse_proxy_configuration(text: bytes, where: str) -> Mapping[str, Any]:
    """A task definition (or its ``proxyConfiguration``) as JSON, bounded in size."""
    if len(text) > MAX_CONFIG_BYTES:
        raise CaptureSettingsError(f"{where}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        detail = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise CaptureSettingsError(f"{where}: not valid JSON ({detail})") from None
    if not isinstance(document, dict):
        raise CaptureSettingsError(f"{where}: must be a JSON object")
    config = document.get("proxyConfiguration", document)
    if not isinstance(config, dict):
        raise CaptureSettingsError(f"{where}: proxyConfiguration must be an object")
    kind = config.get("type", "APPMESH")
    if kind != "APPMESH":
        raise CaptureSettingsError(f"{where}: proxyConfiguration.type must be APPMESH")
    return config


def _ecs_properties(config: Mapping[str, Any] | None) -> dict[str, str]:
    if config is None:
        return {}
    properties = config.get("properties", [])
    if not isinstance(properties, list):
        raise CaptureSettingsError("proxyConfiguration.properties must be a list")
    out: dict[str, str] = {}
    for index, item in enumerate(properties):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("value"), str)
        ):
            raise CaptureSettingsError(
                f"proxyConfiguration.properties[{index}] must be {{name: string, value: string}}"
            )
        out[item["name"]] = item["value"]
    return out


def _parse(setting: _Setting, raw: str, label: str) -> object:
    text = raw.strip()
    if setting.kind == "bool":
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on", "enabled"):
            return True
        if lowered in ("0", "false", "no", "off", "disabled", ""):
            return False
        raise CaptureSettingsError(f"{label}: {raw!r} is not 1 or 0")
    if setting.kind == "port":
        return _port(text, label)
    if setting.kind == "id":
        if not text.isdigit() or int(text) > 2**32 - 2:
            raise CaptureSettingsError(f"{label}: {raw!r} is not a numeric user or group id")
        return int(text)
    items = [item.strip() for item in text.split(",") if item.strip()]
    if setting.kind == "ports":
        return tuple(dict.fromkeys(_port(item, label) for item in items))
    networks = []
    for item in items:
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise CaptureSettingsError(
                f"{label}: {item!r} is not an IP address or network"
            ) from None
    return tuple(dict.fromkeys(networks))


def _port(text: str, label: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise CaptureSettingsError(f"{label}: {text!r} is not a port 1..65535")
    return int(text)


def _label(settings: CaptureSettings, name: str) -> str:
    setting = next(s for s in SETTINGS if s.field == name)
    return settings.sources.get(name, f"{setting.flag} ({setting.env} default)")


def check(settings: CaptureSettings) -> None:
    """Refuse settings that conflict (raises :class:`CaptureSettingsError` naming them)."""
    s = settings
    if s.ignore_uid is None and s.ignore_gid is None:
        raise CaptureSettingsError(
            "set the ignored uid or gid (APPMESH_IGNORE_UID / APPMESH_IGNORE_GID): without "
            "one, Envoy's own traffic would be captured in a loop"
        )
    for name, port in (("ingress_port", s.ingress_port), ("egress_port", s.egress_port)):
        if port in s.app_ports:
            raise CaptureSettingsError(
                f"{_label(s, name)}: port {port} is also an application port "
                f"({_label(s, 'app_ports')})"
            )
    if s.app_ports and s.ingress_port == s.egress_port:
        raise CaptureSettingsError(
            f"{_label(s, 'egress_port')}: port {s.egress_port} is also the ingress port "
            f"({_label(s, 'ingress_port')})"
        )
    if s.egress_port in s.egress_ignored_ports:
        raise CaptureSettingsError(
            f"{_label(s, 'egress_ignored_ports')}: the egress port {s.egress_port} cannot be "
            "ignored"
        )
    if s.app_uid is not None and s.app_uid == s.ignore_uid:
        raise CaptureSettingsError(
            f"{_label(s, 'ignore_uid')}: uid {s.ignore_uid} is the application's uid "
            f"({_label(s, 'app_uid')}); the application's traffic would never be captured"
        )
    if not s.enable_ipv6:
        six = [ip for ip in s.egress_ignored_ips if ":" in ip]
        if six:
            raise CaptureSettingsError(
                f"{_label(s, 'egress_ignored_ips')}: {six[0]} is IPv6 but IPv6 capture is off "
                "(APPMESH_ENABLE_IPV6=1 turns it on)"
            )


def _chunks(ports: Iterable[int]) -> list[str]:
    items = list(ports)
    return [
        ",".join(map(str, items[i : i + MULTIPORT_LIMIT]))
        for i in range(0, len(items), MULTIPORT_LIMIT)
    ]


@dataclass(frozen=True, slots=True)
class ChainRules:
    """One family's wanted state: our chains' rules and the jumps into them."""

    chains: Mapping[str, tuple[str, ...]]
    """Rules per chain, in ``iptables -S`` form (``-A CHAIN ...``)."""
    jumps: tuple[str, ...]
    """The rules in the built-in chains (``-A OUTPUT ... -j APPMESH_EGRESS``)."""


def chain_rules(settings: CaptureSettings, family: Family) -> ChainRules:
    """App Mesh's rules for ``family`` (``iptables -S`` form, our chains first)."""
    s = settings
    egress = []
    if s.ignore_uid is not None:
        egress.append(f"-A {EGRESS_CHAIN} -m owner --uid-owner {s.ignore_uid} -j RETURN")
    if s.ignore_gid is not None:
        egress.append(f"-A {EGRESS_CHAIN} -m owner --gid-owner {s.ignore_gid} -j RETURN")
    for chunk in _chunks(s.ignored_ports):
        egress.append(f"-A {EGRESS_CHAIN} -p tcp -m multiport --dports {chunk} -j RETURN")
    for ip in s.egress_ignored_ips:
        if (":" in ip) == (family == "ipv6"):
            egress.append(f"-A {EGRESS_CHAIN} -d {ip} -p tcp -j RETURN")
    egress.append(f"-A {EGRESS_CHAIN} -p tcp -j REDIRECT --to-ports {s.egress_port}")
    chains: dict[str, tuple[str, ...]] = {EGRESS_CHAIN: tuple(egress)}
    jumps = [f"-A OUTPUT -p tcp -m addrtype ! --dst-type LOCAL -j {EGRESS_CHAIN}"]
    if s.app_ports:
        chains[INGRESS_CHAIN] = tuple(
            f"-A {INGRESS_CHAIN} -p tcp -m multiport --dports {chunk} "
            f"-j REDIRECT --to-ports {s.ingress_port}"
            for chunk in _chunks(s.app_ports)
        )
        jumps.append(f"-A PREROUTING -p tcp -m addrtype ! --src-type LOCAL -j {INGRESS_CHAIN}")
    return ChainRules(chains, tuple(jumps))
