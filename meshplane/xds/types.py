"""xDS resource types: v3 type URLs, their short names, and how they depend on each other.

Used by every module of ``meshplane.xds`` (resources, snapshots, the planner, the protocol
handlers, metrics) and by producers that build snapshots.  Pure data, no I/O.
"""

from __future__ import annotations

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

#: The order in which responses are considered on an ADS stream (make before break):
#: clusters, then their endpoints and secrets, then listeners, then their routes.
ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, SECRET, LISTENER, ROUTE)

#: Types whose state-of-the-world responses carry the full set (absence means delete) and
#: which Envoy always requests as a wildcard.
FULL_STATE: frozenset[str] = frozenset({CLUSTER, LISTENER})

SHORT_NAMES: dict[str, str] = {
    CLUSTER: "cds",
    ENDPOINT: "eds",
    LISTENER: "lds",
    ROUTE: "rds",
    SECRET: "sds",
}


def short_name(type_url: str) -> str:
    """``cds``/``eds``/``lds``/``rds``/``sds`` for a known type URL, else the message name."""
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])
