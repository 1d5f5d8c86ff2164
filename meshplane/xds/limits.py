"""Bounds on what one ADS client may make the xDS server do.

:class:`XdsLimits` is configured by ``meshplane serve`` (``meshplane.server.settings``) and
kept by :class:`meshplane.xds.XdsServer`: the size of one request message (a real Envoy's
node and DiscoveryRequests are kilobytes; its largest, an EDS request naming thousands of
clusters, stays far below the default), the size of ``node.metadata``, streams per HTTP/2
connection and per peer address, the time a new stream has to send its first request, and
the keepalive that finds dead peers.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class XdsLimits:
    max_message: int = 4 * MiB
    """Bytes of one request message; a larger one ends the stream (RESOURCE_EXHAUSTED)."""
    max_node_metadata: int = 64 * 1024
    """Bytes of ``node.metadata`` (INVALID_ARGUMENT past it)."""
    streams_per_connection: int = 16
    """Concurrent streams on one HTTP/2 connection (Envoy opens one ADS stream)."""
    streams_per_peer: int = 20_000
    """Open streams from one peer address (every sidecar of a host shares its address)."""
    first_request_timeout: float = 30.0
    """Seconds a new stream has to send its first request."""
    keepalive_time: float = 60.0
    """Seconds between the server's keepalive pings on an idle connection."""
    keepalive_timeout: float = 20.0
    """Seconds a peer has to answer a keepalive ping before its connection is closed."""
    max_connection_idle: float = 300.0
    """Seconds a connection without any stream stays open."""
