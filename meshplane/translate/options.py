"""Who a proxy is and where it binds: the per-proxy inputs of the translation.

:class:`ProxyTarget` names the mesh resource a proxy runs as (a virtual node sidecar or a
virtual gateway); it mirrors the xDS layer's identity so that translation does not depend on
:mod:`meshplane.xds`.  :class:`ProxyOptions` holds the workload facts the bootstrap writes into
``node.metadata["meshplane"]`` (see :mod:`meshplane.proxy.bootstrap`): the address the sidecar
binds for ingress, where the local application listens, and the egress address and port.
:meth:`ProxyOptions.from_node_metadata` validates that mapping and fills the defaults.
:class:`MeshSecurity` holds the control plane's identity settings for the proxy's mesh: the
SPIFFE trust domain and the mesh-wide mTLS switch (the ``meshplane.io/mtls`` mesh tag).

Built by the xDS control loop (from the stream's node) and by tests; read by
:func:`meshplane.translate.translate_proxy`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from meshplane.errors import BadRequestError
from meshplane.identity.spiffe import DEFAULT_TRUST_DOMAIN
from meshplane.model import Kind

METADATA_KEY = "meshplane"
MTLS_TAG = "meshplane.io/mtls"
"""The mesh tag that turns on mTLS with the mesh CA everywhere: STRICT, PERMISSIVE or
DISABLED (the same as no tag)."""
MtlsMode = Literal["STRICT", "PERMISSIVE"]
_MTLS_MODES: dict[str, MtlsMode] = {"STRICT": "STRICT", "PERMISSIVE": "PERMISSIVE"}


class InvalidProxyOptionsError(BadRequestError):
    """``node.metadata["meshplane"]`` holds a value the translation cannot use."""


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    """The mesh resource a proxy runs as: ``kind`` is VIRTUAL_NODE or VIRTUAL_GATEWAY."""

    mesh: str
    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"mesh/{self.mesh}/{self.kind.value}/{self.name}"


@dataclass(frozen=True, slots=True)
class MeshSecurity:
    """Identity settings of the proxy's mesh, from the control plane.

    ``mtls`` set: every virtual node listener without a ``tls`` block of its own requires TLS
    (STRICT) or accepts TLS and plain text (PERMISSIVE) with the proxy's mesh-issued identity,
    asking clients for a mesh certificate; every backend without a client TLS policy of its
    own originates mTLS with that identity and checks the provider's SPIFFE ID.
    """

    trust_domain: str = DEFAULT_TRUST_DOMAIN
    mtls: MtlsMode | None = None

    @classmethod
    def from_mesh_tags(
        cls, tags: Mapping[str, str], trust_domain: str = DEFAULT_TRUST_DOMAIN
    ) -> tuple[MeshSecurity, str | None]:
        """The settings from a mesh's tags, and a problem when the tag's value is unknown
        (mTLS then stays off)."""
        value = tags.get(MTLS_TAG)
        if value is None or value.strip().upper() in ("", "DISABLED"):
            return cls(trust_domain), None
        mode = _MTLS_MODES.get(value.strip().upper())
        if mode is not None:
            return cls(trust_domain, mode), None
        return cls(trust_domain), (
            f"mesh tag {MTLS_TAG}={value!r} is not STRICT, PERMISSIVE or DISABLED; mTLS is off"
        )


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """Where one proxy binds and forwards; every field has the single-host default."""

    address: str = "127.0.0.1"
    """The workload address: ingress listeners bind ``address:<listener port>``."""
    app_port: int | None = None
    """The local application's port; None means the listener's own port."""
    app_address: str = "127.0.0.1"
    """Where the local application listens (the ingress clusters' endpoint)."""
    egress_address: str = "127.0.0.1"
    """The egress listeners bind here: HTTP on ``egress_port``, TCP backends on their ports."""
    egress_port: int = 15001
    capture: bool = False
    """The proxy's traffic is captured (iptables): one inbound listener on ``ingress_port``
    and one outbound listener on ``egress_port``, both on 0.0.0.0, recovering the original
    destination (:mod:`meshplane.translate.capture`)."""
    ingress_port: int = 15000
    tcp_egress_ports: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Local port of a TCP backend, by ``"<service>:<provider port>"`` or ``"<service>"``
    (the latter for the service's first TCP port); by default the provider's port."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tcp_egress_ports", MappingProxyType(dict(self.tcp_egress_ports)))

    def digest(self) -> str:
        """A short digest of every option: equal options, equal digests (the control loop
        shares one snapshot between the proxies of an identity whose options are equal)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["tcp_egress_ports"] = dict(self.tcp_egress_ports)
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def local_app_port(self, listener_port: int) -> int:
        """The application port behind a virtual node listener."""
        return self.app_port if self.app_port is not None else listener_port

    def tcp_egress_port(self, service: str, provider_port: int, first: bool) -> int:
        """The local port of a TCP backend's listener (see ``tcp_egress_ports``)."""
        port = self.tcp_egress_ports.get(f"{service}:{provider_port}")
        if port is None and first:
            port = self.tcp_egress_ports.get(service)
        return provider_port if port is None else port

    @classmethod
    def from_node_metadata(cls, metadata: Mapping[str, Any] | None) -> ProxyOptions:
        """Options from Envoy's ``node.metadata`` (as plain JSON-like data).

        Reads ``metadata["meshplane"]``: ``address`` (or the bootstrap's ``workload_address``),
        ``app_port`` (null: the listener port), ``app_address``, ``egress_address``,
        ``egress_port``, ``tcp_egress_ports``, ``capture`` (bool) and ``ingress_port``.
        Missing or null values take the defaults; numbers may arrive as floats (protobuf
        ``Struct``).  Raises
        :class:`InvalidProxyOptionsError` naming the offending key.
        """
        section = (metadata or {}).get(METADATA_KEY)
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise InvalidProxyOptionsError(f"node.metadata.{METADATA_KEY}: must be an object")
        default = cls()
        address = section.get("address")
        if address is None:
            address = section.get("workload_address")
        app_port = section.get("app_port")
        egress_port = section.get("egress_port")
        ports = section.get("tcp_egress_ports")
        capture = section.get("capture", False)
        if not isinstance(capture, bool):
            raise InvalidProxyOptionsError(_where("capture", "must be true or false"))
        ingress_port = section.get("ingress_port")
        if ports is not None and not isinstance(ports, Mapping):
            raise InvalidProxyOptionsError(_where("tcp_egress_ports", "must be an object"))
        return cls(
            address=_ip("address", address, default.address),
            app_port=None if app_port is None else _port("app_port", app_port),
            app_address=_ip("app_address", section.get("app_address"), default.app_address),
            egress_address=_ip(
                "egress_address", section.get("egress_address"), default.egress_address
            ),
            egress_port=default.egress_port
            if egress_port is None
            else _port("egress_port", egress_port),
            tcp_egress_ports={
                str(name): _port(f"tcp_egress_ports.{name}", port)
                for name, port in (ports or {}).items()
            },
            capture=capture,
            ingress_port=default.ingress_port
            if ingress_port is None
            else _port("ingress_port", ingress_port),
        )


def _where(key: str, message: str) -> str:
    return f"node.metadata.{METADATA_KEY}.{key}: {message}"


def _ip(key: str, value: object, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidProxyOptionsError(_where(key, "must be an IP address string"))
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidProxyOptionsError(_where(key, f"{value!r} is not an IP address")) from None


def _port(key: str, value: object) -> int:
    port: int | None = None
    if isinstance(value, bool):
        port = None
    elif isinstance(value, int):
        port = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.strip().isdigit()
    ):
        port = int(value)
    if port is None or not 1 <= port <= 65535:
        raise InvalidProxyOptionsError(_where(key, f"must be a port 1..65535 (got {value!r})"))
    return port
