"""The protocol-independent core of one ADS stream: per-type state, ACK/NACK, when to send.

Both protocol handlers (:mod:`meshplane.xds.sotw`, :mod:`meshplane.xds.delta`) keep their
per-type state in :class:`TypeState` and let :meth:`Stream.outgoing` decide what to send:

- at most one response per type is in flight; the next one is planned when it is ACKed or
  NACKed (this is what makes the ACK-gated make-before-break of :mod:`meshplane.xds.plan` work);
- nothing is sent when nothing changed (the handler's ``build`` returns None);
- a NACK (a request carrying ``error_detail``) is recorded with Envoy's error text; the rejected
  content is *held*: it is not sent again, and a different content for that type is sent only
  after a backoff (doubling from ``nack_backoff`` up to ``nack_backoff_max``) since the NACK.

Used by the protocol handlers and :mod:`meshplane.xds.server`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from meshplane.model.proxy import ProxyIdentity
from meshplane.xds import types
from meshplane.xds._proto import Message
from meshplane.xds.metrics import XdsMetrics
from meshplane.xds.plan import ClientView, plan_gates
from meshplane.xds.resource import Resource
from meshplane.xds.snapshot import Snapshot
from meshplane.xds.status import Nack, ProxyStatus, TypeStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Draft:
    """A response a handler proposes: its content and how to build the message."""

    version: str
    fingerprint: str
    content: dict[str, Resource]
    removed: frozenset[str]
    make: Callable[[str], Message | bytes]
    """Builds the response for a nonce: a message, or its serialized bytes."""
    full: bool
    """ACKing it replaces the client's state of the type (state of the world)."""


@dataclass(frozen=True, slots=True)
class Pending:
    nonce: str
    draft: Draft
    sent_at: float


@dataclass(slots=True)
class TypeState(ClientView):
    """Everything a stream tracks about one resource type."""

    last_nonce: str = ""
    pending: Pending | None = None
    answered: bool = False
    ever_named: bool = False
    force: set[str] = field(default_factory=set)
    absent_reported: set[str] = field(default_factory=set)
    rejected_fingerprint: str = ""
    nack_count: int = 0
    hold_until: float = 0.0
    last_nack: Nack | None = None
    sent_version: str = ""
    sent_at: datetime | None = None
    acked_version: str = ""
    acked_at: datetime | None = None


Builder = Callable[[str, TypeState, dict[str, Resource | None], Snapshot], Draft | None]


class Stream:
    """One ADS stream of one proxy."""

    def __init__(
        self,
        *,
        stream_id: int,
        kind: str,
        node_id: str,
        identity: ProxyIdentity,
        peer: str,
        metrics: XdsMetrics,
        nack_backoff: float,
        nack_backoff_max: float,
        clock: Callable[[], float] = time.monotonic,
        nonce_prefix: str = "",
    ) -> None:
        self.stream_id = stream_id
        self.kind = kind
        self.node_id = node_id
        self.identity = identity
        self.peer = peer
        self.connected_since = datetime.now(UTC)
        self.metrics = metrics
        self.nack_backoff = nack_backoff
        self.nack_backoff_max = nack_backoff_max
        self.clock = clock
        self.types: dict[str, TypeState] = {}
        self.next_wake: float | None = None
        self.settled: Snapshot | None = None
        """The snapshot of the last :meth:`outgoing` when it held nothing back: until the
        snapshot changes, an ACK of what went out cannot make anything else go out
        (:meth:`settles_quietly`)."""
        self._nonces = itertools.count(1)
        self._nonce_prefix = f"{nonce_prefix}{stream_id}-"

    def state(self, type_url: str) -> TypeState:
        state = self.types.get(type_url)
        if state is None:
            state = self.types[type_url] = TypeState()
        return state

    # -- ACK / NACK ---------------------------------------------------------------------

    def is_stale(self, state: TypeState, nonce: str) -> bool:
        """A request answering a response other than the last one sent for its type."""
        return bool(nonce) and nonce != state.last_nonce

    def settle(self, type_url: str, nonce: str, error: str | None) -> None:
        """Apply the ACK (``error`` None) or NACK of the in-flight response ``nonce``."""
        state = self.state(type_url)
        pending = state.pending
        if pending is None or pending.nonce != nonce:
            return
        state.pending = None
        state.in_flight = {}
        draft = pending.draft
        now = datetime.now(UTC)
        log.debug(
            "stream %d %s %s nonce %s%s",
            self.stream_id,
            "NACK" if error is not None else "ACK",
            types.short_name(type_url),
            nonce,
            f": {error}" if error is not None else "",
        )
        if error is None:
            self._accept(type_url, state, draft)
            state.acked_version, state.acked_at = draft.version, now
            state.rejected, state.rejected_fingerprint = {}, ""
            state.nack_count, state.hold_until = 0, 0.0
            state.unknown = False
            self.metrics.acked(type_url, self.clock() - pending.sent_at)
            return
        state.last_nack = Nack(version=draft.version, error=error, at=now, nonce=nonce)
        state.rejected, state.rejected_fingerprint = dict(draft.content), draft.fingerprint
        state.nack_count += 1
        delay = min(self.nack_backoff * 2 ** (state.nack_count - 1), self.nack_backoff_max)
        state.hold_until = self.clock() + delay
        self.metrics.nacked(type_url)

    def _accept(self, type_url: str, state: TypeState, draft: Draft) -> None:
        if draft.full:
            state.acked, state.held = {}, {}
        for name in draft.removed:
            state.acked.pop(name, None)
            state.held.pop(name, None)
        for name, resource in draft.content.items():
            state.acked[name] = resource.version
            state.held[name] = resource
        state.absent_reported.difference_update(draft.content)
        state.absent_reported.update(n for n in draft.removed if n in state.names)

    # -- sending ------------------------------------------------------------------------

    def outgoing(
        self, snapshot: Snapshot | None, build: Builder
    ) -> list[tuple[str, Message | bytes]]:
        """The responses to send now (type URL, message), in make-before-break order."""
        self.next_wake = None
        self.settled = None
        if snapshot is None:
            return []
        planned = plan_gates(snapshot, self.types)
        desired = planned.desired
        held_back = planned.held_back
        now = self.clock()
        out: list[tuple[str, Message | bytes]] = []
        for type_url in types.ORDER:
            state = self.types.get(type_url)
            if state is None or not state.requested:
                continue
            if state.pending is not None:
                held_back = True
                continue
            if self._first_answer_incomplete(type_url, state, desired[type_url], snapshot):
                held_back = True
                continue
            draft = build(type_url, state, desired[type_url], snapshot)
            if draft is None:
                continue
            if draft.fingerprint == state.rejected_fingerprint:
                held_back = True
                continue
            if state.hold_until > now:
                self.next_wake = min(self.next_wake or state.hold_until, state.hold_until)
                held_back = True
                continue
            nonce = f"{self._nonce_prefix}{next(self._nonces)}"
            state.pending = Pending(nonce=nonce, draft=draft, sent_at=now)
            state.in_flight = dict(draft.content)
            state.last_nonce = nonce
            state.answered = True
            state.force.difference_update(draft.content)
            state.sent_version, state.sent_at = draft.version, datetime.now(UTC)
            self.metrics.pushed(type_url)
            if type_url == types.CLUSTER:
                self._refresh_endpoints(state, draft)
            log.debug(
                "stream %d push %s version %s nonce %s: %s%s",
                self.stream_id,
                types.short_name(type_url),
                draft.version,
                nonce,
                sorted(draft.content),
                f" removed {sorted(draft.removed)}" if draft.removed else "",
            )
            out.append((type_url, draft.make(nonce)))
        if not held_back:
            self.settled = snapshot
        return out

    def settles_quietly(self, snapshot: Snapshot | None, type_url: str, nonce: str) -> bool:
        """An ACK of ``nonce`` for ``type_url`` would leave nothing to send: the response is the
        one in flight, and the last :meth:`outgoing` ran on ``snapshot`` and held nothing back
        (the server then settles it without planning again)."""
        if snapshot is None or snapshot is not self.settled:
            return False
        state = self.types.get(type_url)
        return state is not None and state.pending is not None and state.pending.nonce == nonce

    def _first_answer_incomplete(
        self, type_url: str, state: TypeState, desired: dict[str, Resource | None], s: Snapshot
    ) -> bool:
        """Defer the first LDS answer while listeners of S still wait for their clusters.

        Envoy becomes ready (``/ready``, LIVE) once its first LDS answer has warmed; answering
        with the listeners held back would make it ready without them.  If a cluster, endpoint
        or secret was rejected, waiting could be for ever, so the partial answer goes out.
        """
        if state.answered or type_url != types.LISTENER or not (s.get(type_url).keys() - desired):
            return False
        return not any(
            self.types[t].rejected
            for t in (types.CLUSTER, types.ENDPOINT, types.SECRET)
            if t in self.types
        )

    def _refresh_endpoints(self, clusters: TypeState, draft: Draft) -> None:
        """Make the ClusterLoadAssignments of updated EDS clusters in ``draft`` go out again.

        An updated cluster warms from scratch and needs its CLA even if it did not change; Envoy
        does not ask for it in delta, and holds the CDS ACK until the cluster is warm.  The EDS
        response is planned right after the CDS one, so Envoy applies it to the new cluster.
        """
        eds = self.types.get(types.ENDPOINT)
        if eds is None:
            return
        for name, resource in draft.content.items():
            old = clusters.acked.get(name)
            if old is not None and old != resource.version:
                eds.force.update(n for n in resource.refs_of(types.ENDPOINT) if n in eds.acked)

    # -- status -------------------------------------------------------------------------

    def status(self) -> ProxyStatus:
        type_statuses: Mapping[str, TypeStatus] = MappingProxyType(
            {
                url: TypeStatus(
                    type_url=url,
                    sent_version=s.sent_version,
                    sent_at=s.sent_at,
                    acked_version=s.acked_version,
                    acked_at=s.acked_at,
                    last_nack=s.last_nack,
                    in_flight=s.pending is not None,
                    resources=len(s.acked),
                )
                for url, s in self.types.items()
            }
        )
        return ProxyStatus(
            stream_id=self.stream_id,
            node_id=self.node_id,
            identity=self.identity,
            peer=self.peer,
            connected_since=self.connected_since,
            kind=self.kind,
            types=type_statuses,
        )
