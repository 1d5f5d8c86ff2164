"""What serves the xDS port in one process: the snapshot cache, the control loop, the ADS
server and, on the same port, Envoy's metrics service and the tap's access log service.

Built by :class:`meshplane.server.run.Application` when the main process serves xDS itself
(``--xds-workers 1``), and by each xDS worker process (:mod:`meshplane.server.worker`)
otherwise; either way the proxies connected to this process are translated here, from this
process's store (which follows the change feed).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from meshplane.authority import CertificateAuthorities
from meshplane.control import ControlLoop
from meshplane.model.proxy import InvalidNodeMetadataError, NodeMetadata, ProxyIdentity
from meshplane.model.tracing import TracingDefaults
from meshplane.server.proxy_auth import ProxyAuthorizer
from meshplane.server.settings_sections import XdsSettings
from meshplane.server.status import proxy_status_json
from meshplane.store import ResourceStore
from meshplane.telemetry import AccessLogService, MetricsService, StreamLimits, TelemetryStore
from meshplane.telemetry.service import Relay
from meshplane.telemetry.tap import TapSink
from meshplane.xds import ProxyStatus, SnapshotCache, XdsServer

log = logging.getLogger("meshplane")

BUSY_MESSAGES = 1_000
"""xDS messages between two :meth:`XdsServing.presence_changes` calls above which the xDS
server counts as busy (a change converging over many proxies)."""
PRESENCE_DEFER_MAX = 10.0
"""Seconds the fleet's proxy rows may wait while the xDS server is busy."""


class BusyGate:
    """Says when to hold back a periodic report: while ``count()`` (a running total of work
    done) moved by more than ``busy`` since the last question, for at most ``limit`` seconds
    since the last report that went out."""

    def __init__(
        self,
        count: Callable[[], int],
        *,
        busy: int,
        limit: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count, self._busy, self._limit, self._clock = count, busy, limit, clock
        self._seen = count()
        self._reported = clock()

    def hold(self) -> bool:
        """Whether to hold the report back now (else it counts as sent)."""
        count, now = self._count(), self._clock()
        busy = count - self._seen > self._busy
        self._seen = count
        if busy and now - self._reported < self._limit:
            return True
        self._reported = now
        return False


class XdsServing:
    """The xDS port's services of one process (see the module docstring)."""

    def __init__(
        self,
        settings: XdsSettings,
        store: ResourceStore,
        registry: CollectorRegistry,
        *,
        authorities: CertificateAuthorities,
        authorizer: ProxyAuthorizer,
        telemetry: TelemetryStore,
        taps: TapSink,
        credentials: grpc.ServerCredentials | None = None,
        relay: Relay | None = None,
        worker: tuple[int, int] | None = None,
        tracing: TracingDefaults | None = None,
    ) -> None:
        """``worker``: (index, count) of an xDS worker process (its stream ids are
        ``index + 1 + k * count``: unique across the workers)."""
        self.settings = settings
        self.authorizer = authorizer
        self.cache = SnapshotCache()
        self.control = ControlLoop(
            store, self.cache, registry=registry, authorities=authorities, tracing=tracing
        )
        self.metrics_service = MetricsService(
            telemetry,
            authorize=authorizer,
            admit=authorizer.admit,
            limits=StreamLimits(
                max_message_bytes=telemetry.settings.max_message,
                min_interval=telemetry.settings.min_interval,
            ),
            registry=registry,
            relay=relay,
        )
        self.access_logs = AccessLogService(taps, max_message_bytes=telemetry.settings.max_message)
        self.xds = XdsServer(
            self.cache,
            self.control,
            registry,
            authorize=authorizer,
            admit=authorizer.admit,
            limits=settings.limits,
            credentials=credentials,
            handlers=[self.metrics_service.handler(), self.access_logs.handler()],
            stream_ids=itertools.count(worker[0] + 1, worker[1]) if worker else None,
        )
        self.port = settings.port
        self._published: dict[int, tuple[ProxyStatus, tuple[str, ...]]] = {}
        xds = self.xds
        self._presence_gate = BusyGate(
            lambda: xds.activity, busy=BUSY_MESSAGES, limit=PRESENCE_DEFER_MAX
        )

    async def start(self, *, reuse_port: bool = False) -> int:
        """Serve the xDS port and follow the store; return the bound port."""
        self.port = await self.xds.start(
            self.settings.host, self.settings.port, reuse_port=reuse_port
        )
        await self.control.start()
        return self.port

    async def stop(self) -> None:
        await self.control.stop()
        await self.xds.stop(grace=1.0)

    def close_revoked(self) -> int:
        """End the streams whose proxy token was revoked (on the event loop)."""
        return self.xds.close_streams(self.authorizer.revoked)

    def statuses(self, *, mesh: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """Status JSON of the proxies connected to this process (of ``mesh``, named ``name``)."""

        def match(identity: ProxyIdentity) -> bool:
            return (mesh is None or identity.mesh == mesh) and (
                name is None or identity.name == name
            )

        return [
            self._status_json(status, self.control.problems(status.stream_id))
            for status in self.xds.proxies(match if mesh is not None or name is not None else None)
        ]

    def presence_changes(self) -> tuple[list[dict[str, Any]], set[int]]:
        """For the fleet's proxy table: the status JSON of the proxies whose status changed
        (connected, sent, ACKed, NACKed, problems) since the last call, and the streams that
        ended since.

        While the xDS server is busy (over :data:`BUSY_MESSAGES` messages since the last call:
        a change converging over thousands of proxies), nothing is reported for up to
        :data:`PRESENCE_DEFER_MAX` seconds: the rows of every proxy would change twice in the
        middle of the burst (sent, then ACKed), and writing them takes the cores the burst
        needs.  The next call reports what changed meanwhile."""
        if self._presence_gate.hold():
            return [], set()
        current = {s.stream_id: (s, self.control.problems(s.stream_id)) for s in self.xds.proxies()}
        changed = [
            self._status_json(*state)
            for stream, state in current.items()
            if self._published.get(stream) != state
        ]
        gone = set(self._published.keys() - current.keys())
        self._published = current
        return changed, gone

    def presence_resync(self) -> None:
        """The next :meth:`presence_changes` reports every proxy (the rows were withdrawn)."""
        self._published = {}

    def _status_json(self, status: ProxyStatus, problems: tuple[str, ...]) -> dict[str, Any]:
        connection = self.control.connections.get(status.stream_id)
        try:
            node = NodeMetadata.from_node_metadata(connection.metadata if connection else None)
        except InvalidNodeMetadataError:
            node = None
        return proxy_status_json(
            status, admin=node.admin if node is not None else None, problems=problems
        )
