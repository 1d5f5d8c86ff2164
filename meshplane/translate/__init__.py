"""Translation: an App Mesh mesh and one proxy's identity -> that proxy's Envoy resources.

Pure functions, no I/O: :func:`translate_proxy` takes a :class:`MeshView` (the mesh's specs,
indexed), a :class:`ProxyIdentity` (which virtual node or gateway the proxy runs as) and
:class:`ProxyOptions` (where it binds, from the bootstrap's node metadata), optionally
:class:`MeshSecurity` (trust domain, mesh mTLS switch), and returns :class:`ProxyResources`:
real Envoy v3 protobuf messages, named the App Mesh way (:mod:`~meshplane.translate.names`).
The modules are split by output: ``listeners``, ``routes`` (with ``matches``), ``clusters``,
``endpoints``; ``plan`` resolves a node's backends first; ``tls`` and ``security`` add TLS
transport sockets naming SDS secrets (the control loop issues those with the mesh CA, which is
I/O); ``gateway`` (with ``gateway_routes`` and
``gateway_matches``) translates virtual gateways.

Used by the control loop (``meshplane.control``) and by tests.
"""

from meshplane.model.proxy import ProxyIdentity
from meshplane.translate.options import (
    MTLS_TAG,
    AccessLogStream,
    InvalidNodeMetadataError,
    MeshSecurity,
    Observability,
    ProxyOptions,
)
from meshplane.translate.proxy import translate_proxy
from meshplane.translate.resources import ProxyResources
from meshplane.translate.view import MeshView, NamedGatewayRoute, NamedRoute, dependency_key

__all__ = [
    "MTLS_TAG",
    "AccessLogStream",
    "InvalidNodeMetadataError",
    "MeshSecurity",
    "MeshView",
    "NamedGatewayRoute",
    "NamedRoute",
    "Observability",
    "ProxyIdentity",
    "ProxyOptions",
    "ProxyResources",
    "dependency_key",
    "translate_proxy",
]
