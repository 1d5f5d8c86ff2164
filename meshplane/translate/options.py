"""Where a proxy binds, and its mesh's security: the per-proxy inputs of the translation.

Who the proxy is comes as a :class:`~meshplane.model.proxy.ProxyIdentity` (the model's, the
same the xDS server parses from the node id).  :class:`ProxyOptions` holds the workload facts
the bootstrap writes into ``node.metadata["meshplane"]`` (read through
:class:`~meshplane.model.proxy.NodeMetadata`): the address the sidecar binds for ingress,
where the local application listens, the egress address and port, and transparent capture,
with their defaults filled in.
:class:`MeshSecurity` holds the control plane's identity settings for the proxy's mesh: the
SPIFFE trust domain and the mesh-wide mTLS switch (the ``meshplane.io/mtls`` mesh tag).

Built by the xDS control loop (from the stream's node) and by tests; read by
:func:`meshplane.translate.translate_proxy`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from meshplane.authority.spiffe import DEFAULT_TRUST_DOMAIN
from meshplane.model.proxy import InvalidNodeMetadataError, NodeMetadata, ProxyTracer
from meshplane.model.tracing import MeshTracing

__all__ = [
    "MTLS_TAG",
    "InvalidNodeMetadataError",
    "MeshSecurity",
    "ProxyOptions",
    "ProxyTracer",
]

MTLS_TAG = "meshplane.io/mtls"
"""The mesh tag that turns on mTLS with the mesh CA everywhere: STRICT, PERMISSIVE or
DISABLED (the same as no tag)."""
MtlsMode = Literal["STRICT", "PERMISSIVE"]
_MTLS_MODES: dict[str, MtlsMode] = {"STRICT": "STRICT", "PERMISSIVE": "PERMISSIVE"}


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
class AccessLogStream:
    """Stream this proxy's HTTP access log to the control plane's access log service (while
    someone taps it): over ``cluster`` (the bootstrap's ADS cluster), presenting ``secret``
    (issued by the control plane for this proxy and this tap) as ``x-meshplane-tap``."""

    secret: str
    cluster: str = "xds_cluster"
    log_name: str = "meshplane-tap"


@dataclass(frozen=True, slots=True)
class Observability:
    """What the control plane's own observers ask of one proxy, beyond the mesh's spec:
    an access log stream while it is tapped (``meshplane tap``), and the mesh's tracing
    (``meshplane.io/tracing`` tag or the server's default collector; None: untraced)."""

    access_log: AccessLogStream | None = None
    tracing: MeshTracing | None = None


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
    tracer: ProxyTracer | None = None
    """The tracer the proxy's bootstrap set up (App Mesh's tracing switches); it wins over
    the mesh's tracing."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tcp_egress_ports", MappingProxyType(dict(self.tcp_egress_ports)))

    def digest(self) -> str:
        """A short digest of every option: equal options, equal digests (the control loop
        shares one snapshot between the proxies of an identity whose options are equal)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["tcp_egress_ports"] = dict(self.tcp_egress_ports)
        values["tracer"] = None if self.tracer is None else asdict(self.tracer)
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
        """Options from Envoy's ``node.metadata`` (as plain JSON-like data), read through
        :class:`~meshplane.model.proxy.NodeMetadata`: missing or null values take the
        defaults; a bad value raises :class:`InvalidNodeMetadataError` naming its key."""
        node = NodeMetadata.from_node_metadata(metadata)
        if node is None:
            return cls()
        default = cls()
        return cls(
            address=node.workload_address or default.address,
            app_port=node.app_port,
            app_address=node.app_address or default.app_address,
            egress_address=node.egress_address or default.egress_address,
            egress_port=node.egress_port or default.egress_port,
            tcp_egress_ports=node.tcp_egress_ports or {},
            capture=bool(node.capture),
            ingress_port=node.ingress_port or default.ingress_port,
            tracer=node.tracer,
        )
