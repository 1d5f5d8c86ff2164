"""The result of a translation: one proxy's Envoy resources, what they were made from, and
what had to be left out.

Built by :mod:`meshplane.translate.proxy` (and :mod:`meshplane.translate.gateway`); read by
the xDS control loop, which publishes ``all()`` as the proxy's snapshot, re-translates the
proxy when one of ``inputs`` changes and shows ``problems`` in proxy status.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import message

from meshplane.model import ResourceKey
from meshplane.translate.endpoints import CloudMapTarget


@dataclass(frozen=True, slots=True)
class ProxyResources:
    """The Envoy resources of one proxy.  Treat the messages as read-only."""

    clusters: tuple[cluster_pb2.Cluster, ...] = ()
    endpoints: tuple[endpoint_pb2.ClusterLoadAssignment, ...] = ()
    listeners: tuple[listener_pb2.Listener, ...] = ()
    routes: tuple[route_pb2.RouteConfiguration, ...] = ()
    secrets: tuple[secret_pb2.Secret, ...] = ()
    inputs: frozenset[ResourceKey] = field(default=frozenset())
    """Every resource key the translation read or looked for (routes as their router: see
    :func:`~meshplane.translate.view.dependency_key`)."""
    problems: tuple[str, ...] = ()
    """What was left out and why, for proxy-status."""
    discovery: tuple[CloudMapTarget, ...] = ()
    """The Cloud Map services whose instances fill ``endpoints`` (the control loop does)."""
    shared: frozenset[int] = field(default=frozenset())
    """The ``id`` of each message here that is the very same object in other translations
    on the same view (from the view's memo, which keeps it alive as long as the view): a
    producer may serialize such a message once for all of them."""

    def all(self) -> tuple[message.Message, ...]:
        """Every resource, in make-before-break order: clusters, endpoints, listeners,
        routes, secrets (go-control-plane's response order)."""
        return (*self.clusters, *self.endpoints, *self.listeners, *self.routes, *self.secrets)

    @property
    def empty(self) -> bool:
        """No resource at all (an unknown proxy: it waits)."""
        return not (
            self.clusters or self.endpoints or self.listeners or self.routes or self.secrets
        )
