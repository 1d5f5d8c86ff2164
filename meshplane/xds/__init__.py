"""The xDS layer: snapshot cache and ADS server (state of the world and incremental).

A producer (the control loop) builds a :class:`Snapshot` of Envoy resources per proxy and
publishes it with :meth:`SnapshotCache.set_snapshot`; :class:`XdsServer` streams it to the
proxies with ACK-gated make-before-break ordering, NACK hold and backoff, and keeps a
:class:`ProxyStatus` per stream.  Only ``meshplane.errors``, ``meshplane.model.kinds`` and
``meshplane.model.proxy`` (the proxy identity, re-exported here) are imported from the rest
of meshplane.

Public surface (implementation modules are private by convention)::

    from meshplane import xds
    cache = xds.SnapshotCache()
    server = xds.XdsServer(cache, producer, registry)
    port = await server.start("127.0.0.1", 0)
    cache.set_snapshot("mesh/m/virtualNode/web", xds.Snapshot([cluster, cla, listener, routes]))
"""

from meshplane.model.proxy import InvalidNodeIdError, ProxyIdentity, node_key, parse_node_id
from meshplane.xds import types
from meshplane.xds.cache import SnapshotCache
from meshplane.xds.producer import Authorizer, ProxyConnection, SnapshotKeyer, SnapshotProducer
from meshplane.xds.resource import Resource, ResourceError
from meshplane.xds.server import XdsServer
from meshplane.xds.snapshot import Snapshot, SnapshotError
from meshplane.xds.status import Nack, ProxyStatus, TypeStatus

__all__ = [
    "Authorizer",
    "InvalidNodeIdError",
    "Nack",
    "ProxyConnection",
    "ProxyIdentity",
    "ProxyStatus",
    "Resource",
    "ResourceError",
    "Snapshot",
    "SnapshotCache",
    "SnapshotError",
    "SnapshotKeyer",
    "SnapshotProducer",
    "TypeStatus",
    "XdsServer",
    "node_key",
    "parse_node_id",
    "types",
]
