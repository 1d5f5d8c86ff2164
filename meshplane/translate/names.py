"""Envoy resource names, App Mesh style, in one place.

App Mesh names what it pushes to a sidecar after the direction, the address or the mesh and
virtual node, the protocol and the port (``lds_ingress_<ip>_<port>``,
``cds_egress_<mesh>_<node>_<proto>_<port>``, ``rds_egress_http_<port>``...).  Dashboards and
alerts built on App Mesh's Envoy stats depend on these names, so meshplane keeps them exactly.
Resource names are never sanitised: App Mesh names have no pattern and Envoy accepts any
non-empty name.

Used by every output module of :mod:`meshplane.translate` and by tests.
"""

from __future__ import annotations

ALLOW_ALL_CLUSTER_SUFFIX = "mesh-allow-all"
ALLOW_ALL_DNS_CACHE = "meshplane_allow_all"
ALLOW_ALL_VIRTUAL_HOST = "mesh-allow-all"
INGRESS_VIRTUAL_HOST = "ingress"
TRACING_CLUSTER = "meshplane_tracing_collector"
"""The mesh's OTLP/gRPC trace collector (:mod:`meshplane.translate.tracing`)."""


def ingress_listener(address: str, port: int) -> str:
    """``lds_ingress_<address>_<port>``: a virtual node listener bound on the workload."""
    return f"lds_ingress_{address}_{port}"


def egress_listener(address: str, port: int) -> str:
    """``lds_egress_<address>_<port>``: the HTTP egress listener or a TCP backend's port."""
    return f"lds_egress_{address}_{port}"


def ingress_route_config(protocol: str, port: int) -> str:
    """``rds_ingress_<proto>_<port>``: the routes of one HTTP-like virtual node listener."""
    return f"rds_ingress_{protocol}_{port}"


def egress_route_config(port: int) -> str:
    """``rds_egress_http_<egress port>``: one route table for every HTTP-like backend."""
    return f"rds_egress_http_{port}"


def ingress_cluster(mesh: str, node: str, protocol: str, port: int) -> str:
    """``cds_ingress_<mesh>_<node>_<proto>_<port>``: the local application behind a listener."""
    return f"cds_ingress_{mesh}_{node}_{protocol}_{port}"


def egress_cluster(mesh: str, node: str, protocol: str, port: int) -> str:
    """``cds_egress_<mesh>_<node>_<proto>_<port>``: a provider node's listener, seen by clients."""
    return f"cds_egress_{mesh}_{node}_{protocol}_{port}"


def allow_all_cluster(mesh: str) -> str:
    """``cds_egress_<mesh>_mesh-allow-all``: the pass-through of an ALLOW_ALL mesh."""
    return f"cds_egress_{mesh}_{ALLOW_ALL_CLUSTER_SUFFIX}"


def passthrough_cluster(mesh: str) -> str:
    """``cds_egress_<mesh>_mesh-passthrough``: ALLOW_ALL for captured connections (to the
    destination the application dialled)."""
    return f"cds_egress_{mesh}_mesh-passthrough"


def ingress_stat_prefix(protocol: str, port: int) -> str:
    """``ingress.<proto>.<port>``, which App Mesh's stats tags parse."""
    return f"ingress.{protocol}.{port}"


EGRESS_HTTP_STAT_PREFIX = "egress"


def egress_tcp_stat_prefix(port: int) -> str:
    """``egress.tcp.<local port>`` for the TCP proxy of one TCP backend."""
    return f"egress.tcp.{port}"


def route_stat_prefix(service: str, router: str, route: str) -> str:
    """``<service>/<router>/<route>`` (``<service>//`` for a virtual node provider): the
    ``stat_prefix`` of an egress route, so Envoy counts each App Mesh route's requests as
    ``vhost.<virtual host>.route.<prefix>.upstream_rq_*`` (App Mesh names hold no ``/``)."""
    return f"{service}/{router}/{route}"
