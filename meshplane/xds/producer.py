"""The seams between the ADS server and the rest of the control plane.

- :class:`SnapshotProducer`: told when a proxy stream opens and closes, so the control loop can
  compute and publish (``SnapshotCache.set_snapshot``) a snapshot for a proxy the first time it
  shows up.  Until a snapshot exists the stream simply waits.  A producer may also be a
  :class:`SnapshotKeyer`: it then says under which cache key each connection's snapshot is
  published (proxies of one identity that bind different addresses need different
  snapshots); otherwise a stream watches its identity's node key.
- :data:`Authorizer`: checks that a stream may act as the identity it claims (bearer token in
  the gRPC metadata, or the peer certificate once mTLS to the control plane exists).
- :class:`ProxyConnection`: what the server knows about a newly connected proxy: its
  :class:`~meshplane.model.proxy.ProxyIdentity` and the ``node.metadata`` the bootstrap wrote
  (read with :class:`~meshplane.model.proxy.NodeMetadata`).

Implemented by the control loop (``meshplane.control``) and by tests; called by
:mod:`meshplane.xds.server`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from meshplane.model.proxy import ProxyIdentity


@dataclass(frozen=True, slots=True)
class ProxyConnection:
    """One ADS stream of one proxy, as its producer sees it."""

    stream_id: int
    node_id: str
    identity: ProxyIdentity
    cluster: str
    peer: str
    connected_since: datetime
    kind: str
    """``sotw`` or ``delta``."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """``node.metadata`` as plain JSON-like data (``metadata["meshplane"]["app_port"]`` ...)."""
    user_agent: str = ""


class SnapshotProducer(Protocol):
    """Computes snapshots on demand.  Both methods must not raise (errors are logged)."""

    async def proxy_connected(self, proxy: ProxyConnection) -> None:
        """A stream opened; publish a snapshot for ``proxy.identity`` if there is none."""

    async def proxy_disconnected(self, proxy: ProxyConnection) -> None:
        """A stream closed (other streams of the same identity may remain)."""


@runtime_checkable
class SnapshotKeyer(Protocol):
    """A producer that chooses the cache key of each connection's snapshot."""

    def snapshot_key(self, connection: ProxyConnection) -> str:
        """The key this connection's snapshot is published under (must not raise)."""
        ...


Metadata = Sequence[tuple[str, str | bytes]]

Admission = Callable[[Metadata, bytes | None], None]
"""``admit(invocation metadata, peer certificate PEM or None)``, called before any message of
a stream is read: raise :class:`PermissionError` to refuse it (``PERMISSION_DENIED``) —
a stream without valid credentials never gets a request parsed."""

Authorizer = Callable[[ProxyIdentity, Metadata, bytes | None], Awaitable[object] | object]
"""``authorize(identity, invocation metadata, peer certificate PEM or None)``: return (or
await) to allow — what it returns is the stream's *credential* (None when it had none), which
:meth:`~meshplane.xds.XdsServer.close_streams` can later judge; raise :class:`PermissionError`
to refuse with ``PERMISSION_DENIED``."""
