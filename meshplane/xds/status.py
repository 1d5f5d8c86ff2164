"""Proxy status: immutable records of what each ADS stream sent, and what Envoy ACKed or NACKed.

:meth:`meshplane.xds.server.XdsServer.proxies` returns one :class:`ProxyStatus` per open stream
(replicas of a gateway, sharing a node id, are separate records).  The CLI's ``proxy-status``
and the dashboard read these; a NACK carries Envoy's own error text.

Built by :mod:`meshplane.xds.stream`; read by the API/CLI layers above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from meshplane.model.proxy import ProxyIdentity


@dataclass(frozen=True, slots=True)
class Nack:
    """One rejected response: its version, Envoy's error text and when it came back."""

    version: str
    error: str
    at: datetime
    nonce: str = ""


@dataclass(frozen=True, slots=True)
class TypeStatus:
    """The state of one resource type on one stream."""

    type_url: str
    sent_version: str = ""
    sent_at: datetime | None = None
    acked_version: str = ""
    acked_at: datetime | None = None
    last_nack: Nack | None = None
    in_flight: bool = False
    resources: int = 0
    """How many resources of this type the proxy has accepted."""

    @property
    def synced(self) -> bool:
        """The last response sent was ACKed."""
        return not self.in_flight and self.sent_version == self.acked_version


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    """One ADS stream of one proxy."""

    stream_id: int
    node_id: str
    identity: ProxyIdentity
    peer: str
    connected_since: datetime
    kind: str
    """``sotw`` or ``delta``."""
    types: Mapping[str, TypeStatus]
    """By type URL."""
