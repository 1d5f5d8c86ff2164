"""Virtual gateway proxies: ingress listeners and gateway routes (not translated yet).

App Mesh gives a gateway ``lds_ingress_<ip>_<listener port>`` listeners whose routes
(``rds_ingress_<proto>_<port>``, virtual host ``self_redirect``) send each gateway route,
with its prefix and Host rewritten to the target virtual service, to a
``cds_ingress_<mesh>_<gateway>_self_redirect_<proto>_<port>`` cluster that points back at the
gateway's own egress listener; that egress listener then routes like a sidecar's, for the
virtual services the gateway routes target.  :func:`translate_gateway` is the seam where that
goes: it receives the same :class:`~meshplane.translate.context.Context` as the node
translation and returns :class:`GatewayParts`, which :mod:`meshplane.translate.proxy` wraps;
for now a gateway gets nothing and its proxy waits.

Called by :mod:`meshplane.translate.proxy`.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from meshplane.translate.context import Context


@dataclass(frozen=True, slots=True)
class GatewayParts:
    """The resources of a gateway proxy, before :class:`ProxyResources` wraps them."""

    clusters: tuple[cluster_pb2.Cluster, ...] = ()
    endpoints: tuple[endpoint_pb2.ClusterLoadAssignment, ...] = ()
    listeners: tuple[listener_pb2.Listener, ...] = ()
    routes: tuple[route_pb2.RouteConfiguration, ...] = ()
    secrets: tuple[secret_pb2.Secret, ...] = ()


def translate_gateway(ctx: Context) -> GatewayParts:
    """The resources of the gateway ``ctx.target`` (none yet: gateways come later)."""
    if ctx.gateway(ctx.target.name) is None:
        return GatewayParts()
    ctx.problem("virtual gateways are not translated yet")
    return GatewayParts()
