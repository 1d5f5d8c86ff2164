"""Who a proxy is and what its bootstrap tells the control plane: ``ProxyIdentity`` and
``NodeMetadata``, the contract between ``meshplane envoy`` and the control plane.

**Proxy identity.**  An Envoy connects with ``node.id`` set the App Mesh way
(``APPMESH_RESOURCE_ARN``): ``mesh/<mesh>/virtualNode/<name>``,
``mesh/<mesh>/virtualGateway/<name>`` or the full ARN
``arn:aws:appmesh:<region>:<account>:mesh/<mesh>/virtualNode/<name>``; the mesh segment may
carry an owner (``<mesh>@<account>``).  :func:`parse_node_id` reads every form into one
:class:`ProxyIdentity`, whose :attr:`~ProxyIdentity.key` ``mesh/<mesh>/<kind>/<name>`` is the
snapshot cache key (all replicas of a gateway share it), the scope of proxy tokens and the
path of the proxy's SPIFFE ID.

**Node metadata.**  The bootstrap writes the workload's facts under
``node.metadata["meshplane"]`` (:meth:`NodeMetadata.to_node_metadata`) and the control plane
reads them back (:meth:`NodeMetadata.from_node_metadata`), through this one model:
``workload_address`` (read also as ``address``, which wins), ``app_port`` (null: the listener
port), ``app_address``, ``egress_address``, ``egress_port``, ``tcp_egress_ports``, ``capture``
and ``ingress_port`` (transparent capture), the ``resource`` as given and the proxy's
``admin`` address; other keys are kept in ``extra``.
Numbers may arrive as floats (protobuf ``Struct``); a bad value is an
:class:`InvalidNodeMetadataError` naming its key.

Pure.  Used by the proxy bootstrap, the xDS server (node ids), the control loop and
translation (options), the CA (SPIFFE IDs), proxy authentication and ``proxy-status``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from meshplane.errors import BadRequestError
from meshplane.model.kinds import Kind

METADATA_KEY = "meshplane"
PROXY_KINDS = {
    Kind.VIRTUAL_NODE.value: Kind.VIRTUAL_NODE,
    Kind.VIRTUAL_GATEWAY.value: Kind.VIRTUAL_GATEWAY,
}
_ARN = re.compile(r"^arn:[^:]+:appmesh:[^:]*:(?P<account>[^:]*):(?P<path>.+)$")
_NAME = re.compile(r"^[^/\s@]{1,255}$")


class InvalidNodeIdError(BadRequestError):
    """A node id (or proxy resource) that names no virtual node or virtual gateway."""


class InvalidNodeMetadataError(BadRequestError):
    """``node.metadata["meshplane"]`` holds a value the control plane cannot use."""


@dataclass(frozen=True, slots=True, order=True)
class ProxyIdentity:
    """The mesh resource a proxy runs as: a virtual node (sidecar) or a virtual gateway."""

    mesh: str
    kind: Kind
    name: str
    mesh_owner: str = ""

    @property
    def key(self) -> str:
        """The node key: ``mesh/<mesh>/<kind>/<name>`` (owner left out)."""
        return f"mesh/{self.mesh}/{self.kind.value}/{self.name}"

    def __str__(self) -> str:
        return self.key


def parse_node_id(node_id: str) -> ProxyIdentity:
    """Parse a node id / proxy resource in any accepted form; :class:`InvalidNodeIdError` else."""
    if not node_id:
        raise InvalidNodeIdError(
            "the Envoy node id is empty; set it to mesh/<mesh>/virtualNode/<name>"
        )
    path, owner = node_id, ""
    arn = _ARN.match(node_id)
    if arn is not None:
        path, owner = arn.group("path"), arn.group("account")
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "mesh" or parts[2] not in PROXY_KINDS:
        raise InvalidNodeIdError(
            f"node id {node_id!r} is not mesh/<mesh>/virtualNode/<name>, "
            "mesh/<mesh>/virtualGateway/<name> or the ARN of one"
        )
    mesh, name = parts[1], parts[3]
    if "@" in mesh:
        mesh, _, owner = mesh.partition("@")
    if not _NAME.match(mesh) or not _NAME.match(name) or "@" in owner:
        raise InvalidNodeIdError(f"node id {node_id!r} has an invalid mesh or resource name")
    return ProxyIdentity(mesh=mesh, kind=PROXY_KINDS[parts[2]], name=name, mesh_owner=owner)


def node_key(node: str | ProxyIdentity) -> str:
    """The node key of a node id or identity (see :attr:`ProxyIdentity.key`)."""
    identity = node if isinstance(node, ProxyIdentity) else parse_node_id(node)
    return identity.key


_KNOWN = (
    "workload_address",
    "app_port",
    "egress_port",
    "resource",
    "app_address",
    "egress_address",
    "tcp_egress_ports",
    "capture",
    "ingress_port",
    "admin",
    "tracer",
)
TRACER_DRIVERS = ("zipkin", "datadog")


@dataclass(frozen=True, slots=True)
class ProxyTracer:
    """A tracer the proxy's own bootstrap set up (``meshplane envoy`` with App Mesh's
    ``ENABLE_ENVOY_JAEGER_TRACING`` or ``ENABLE_ENVOY_DATADOG_TRACING``): Envoy's ``zipkin``
    or ``datadog`` tracer reporting through the bootstrap's static cluster ``cluster``
    (``node.metadata.meshplane.tracer``)."""

    driver: Literal["zipkin", "datadog"]
    cluster: str
    service_name: str = ""
    """Default: the virtual node's or gateway's name."""
    zipkin_json: bool = False
    """Zipkin spans as JSON (``JAEGER_TRACER_VERSION=JSON``) rather than protobuf."""

    def to_section(self) -> dict[str, Any]:
        section: dict[str, Any] = {"driver": self.driver, "cluster": self.cluster}
        if self.service_name:
            section["service_name"] = self.service_name
        if self.zipkin_json:
            section["zipkin_json"] = True
        return section

    @classmethod
    def from_section(cls, value: object) -> ProxyTracer:
        """The tracer of ``node.metadata.meshplane.tracer``; InvalidNodeMetadataError names the
        bad key."""
        if not isinstance(value, Mapping):
            raise InvalidNodeMetadataError(_where("tracer", "must be an object"))
        driver, cluster = value.get("driver"), value.get("cluster")
        name, json_format = value.get("service_name", ""), value.get("zipkin_json", False)
        if driver not in TRACER_DRIVERS:
            raise InvalidNodeMetadataError(_where("tracer.driver", "must be zipkin or datadog"))
        if not isinstance(cluster, str) or not 1 <= len(cluster) <= 128:
            raise InvalidNodeMetadataError(_where("tracer.cluster", "must be a cluster name"))
        if not isinstance(name, str) or len(name) > 256:
            raise InvalidNodeMetadataError(_where("tracer.service_name", "must be a string"))
        if not isinstance(json_format, bool):
            raise InvalidNodeMetadataError(_where("tracer.zipkin_json", "must be true or false"))
        return cls("zipkin" if driver == "zipkin" else "datadog", cluster, name, json_format)


@dataclass(frozen=True, slots=True)
class NodeMetadata:
    """``node.metadata["meshplane"]``; None: not sent (the reader's default applies)."""

    workload_address: str | None = None
    """The workload address: ingress listeners bind ``address:<listener port>``."""
    app_port: int | None = None
    """The local application's port; None means the listener's own port."""
    egress_port: int | None = None
    resource: str | None = None
    """The proxy resource as the bootstrap was given it (ARN or ``mesh/...``)."""
    app_address: str | None = None
    egress_address: str | None = None
    tcp_egress_ports: Mapping[str, int] | None = field(default=None, hash=False)
    capture: bool | None = None
    """The proxy's traffic is captured (iptables; ``meshplane envoy --capture``)."""
    ingress_port: int | None = None
    """With ``capture``: the one inbound listener's port."""
    admin: str | None = None
    """The proxy's admin address (``host:port``), shown by ``proxy-status``."""
    tracer: ProxyTracer | None = None
    """The tracer the bootstrap set up (App Mesh's tracing switches)."""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """Other keys, as sent."""

    def __post_init__(self) -> None:
        if self.tcp_egress_ports is not None:
            ports = MappingProxyType(dict(self.tcp_egress_ports))
            object.__setattr__(self, "tcp_egress_ports", ports)
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> NodeMetadata:
        """The metadata of one ``meshplane`` section; :class:`InvalidNodeMetadataError` names
        the first bad key."""
        address = section.get("address")
        if address is None:
            address = section.get("workload_address")
        app_port, egress_port = section.get("app_port"), section.get("egress_port")
        ports = section.get("tcp_egress_ports")
        if ports is not None and not isinstance(ports, Mapping):
            raise InvalidNodeMetadataError(_where("tcp_egress_ports", "must be an object"))
        capture = section.get("capture")
        if capture is not None and not isinstance(capture, bool):
            raise InvalidNodeMetadataError(_where("capture", "must be true or false"))
        ingress_port = section.get("ingress_port")
        admin = section.get("admin")
        if admin is not None and not isinstance(admin, str):
            raise InvalidNodeMetadataError(_where("admin", "must be a host:port string"))
        tracer = section.get("tracer")
        resource = section.get("resource")
        if resource is not None and not isinstance(resource, str):
            raise InvalidNodeMetadataError(_where("resource", "must be a string"))
        return cls(
            workload_address=_ip("address", address),
            app_port=None if app_port is None else _port("app_port", app_port),
            egress_port=None if egress_port is None else _port("egress_port", egress_port),
            resource=resource,
            app_address=_ip("app_address", section.get("app_address")),
            egress_address=_ip("egress_address", section.get("egress_address")),
            tcp_egress_ports=None
            if ports is None
            else {
                str(name): _port(f"tcp_egress_ports.{name}", port) for name, port in ports.items()
            },
            capture=capture,
            ingress_port=None if ingress_port is None else _port("ingress_port", ingress_port),
            admin=admin,
            tracer=None if tracer is None else ProxyTracer.from_section(tracer),
            extra={k: v for k, v in section.items() if k not in _KNOWN and k != "address"},
        )

    @classmethod
    def from_node_metadata(cls, metadata: Mapping[str, Any] | None) -> NodeMetadata | None:
        """The metadata in Envoy's ``node.metadata`` (plain JSON-like data); None when the
        bootstrap sent no ``meshplane`` section."""
        section = (metadata or {}).get(METADATA_KEY)
        if section is None:
            return None
        if not isinstance(section, Mapping):
            raise InvalidNodeMetadataError(f"node.metadata.{METADATA_KEY}: must be an object")
        return cls.from_section(section)

    def to_node_metadata(self) -> dict[str, Any]:
        """``{"meshplane": {...}}`` for the bootstrap's ``node.metadata``: the workload address,
        app port (null: the listener port) and egress port always, the rest when set."""
        section: dict[str, Any] = {
            "workload_address": self.workload_address,
            "app_port": self.app_port,
            "egress_port": self.egress_port,
        }
        optional = {
            "resource": self.resource,
            "app_address": self.app_address,
            "egress_address": self.egress_address,
            "tcp_egress_ports": None
            if self.tcp_egress_ports is None
            else dict(self.tcp_egress_ports),
            "capture": self.capture,
            "ingress_port": self.ingress_port,
            "admin": self.admin,
            "tracer": None if self.tracer is None else self.tracer.to_section(),
        }
        section.update({k: v for k, v in optional.items() if v is not None})
        section.update(self.extra)
        return {METADATA_KEY: section}


def _where(key: str, message: str) -> str:
    return f"node.metadata.{METADATA_KEY}.{key}: {message}"


def _ip(key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidNodeMetadataError(_where(key, "must be an IP address string"))
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidNodeMetadataError(_where(key, f"{value!r} is not an IP address")) from None


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
        raise InvalidNodeMetadataError(_where(key, f"must be a port 1..65535 (got {value!r})"))
    return port
