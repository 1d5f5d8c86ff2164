"""Make before break: what each resource type of one ADS stream should hold *now*.

Ordering responses inside one batch does not make an update safe: Envoy applies CDS and LDS
independently, and a cluster is only usable once it is *warm* (its ClusterLoadAssignment and
secrets have arrived).  So the planner gates every step on what the client has **acknowledged**
on this stream, and the stream sends at most one response per type at a time.

Given the target :class:`Snapshot` S and the client's per-type state (acked names/versions, the
resources we sent it, what is in flight), :func:`plan` returns, per type, the desired content:
``{name: Resource}`` to send that resource, or ``{name: None}`` to keep whatever version the
client already has.  The protocol handlers (SotW, delta) turn that into responses.

A cluster *c* is **ready** when the client has acked *c* and the ClusterLoadAssignment and
secrets it references (those that exist in S).  (Envoy itself holds back a CDS ACK until every
cluster of the update is warm, which makes that ACK a reliable signal.)

- **CDS** (wildcard): every cluster of S, plus every cluster the client has that is no longer in
  S but is still referenced by a listener or route configuration the client has acked, has in
  flight, or may have partially applied from a NACKed response.  Old clusters are removed only
  after nothing the client holds points at them.
- **EDS** (named): the subscribed ClusterLoadAssignments of S; subscribed names missing from S
  are kept.  The CLA follows its cluster: Envoy subscribes to it only after it has the cluster,
  and keeps it until the cluster is gone.  (An *updated* EDS cluster warms again and needs its
  CLA again even if unchanged; :mod:`meshplane.xds.stream` forces that resend.)
- **LDS** (wildcard): a listener of S is sent when every cluster it references, directly or
  through the route configurations of S it names, is ready.  Otherwise the client keeps the
  version it has (or does not get the listener yet).  Listeners not in S are removed.
- **RDS** (named): a route configuration of S is sent when all its clusters are ready; else the
  client keeps its version.
- **SDS** (named): secrets of S as subscribed (leaves; listeners and clusters warm on them).

So adding a route to a new cluster goes CDS -> ACK -> EDS -> ACK -> RDS/LDS, and removing one
goes RDS/LDS -> ACK -> CDS.  References to clusters that are neither in S nor held by the client
are ignored (an inconsistent snapshot must not stall the stream; the control loop checks
each snapshot it publishes with ``Snapshot.inconsistencies`` and shows what is missing in
``proxy-status``).  A type whose client state is *unknown* (a state-of-the-world reconnect
reporting a version we cannot map to content) is planned ungated until its first ACK, because
gating it could omit, and so delete, listeners the client is serving with.

Pure functions over plain state; called by :mod:`meshplane.xds.stream`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from meshplane.xds import types
from meshplane.xds.resource import Resource
from meshplane.xds.snapshot import Snapshot

Desired = dict[str, Resource | None]
"""Per name: the resource to send, or None to keep the client's current version."""


@dataclass(slots=True)
class ClientView:
    """What the planner needs to know about one type on one stream."""

    requested: bool = False
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    acked: dict[str, str] = field(default_factory=dict)
    """Name -> version the client accepted (may lack content after a delta reconnect)."""
    held: dict[str, Resource] = field(default_factory=dict)
    """Resources we sent and the client accepted."""
    in_flight: dict[str, Resource] = field(default_factory=dict)
    rejected: dict[str, Resource] = field(default_factory=dict)
    """Content of the last NACKed response (Envoy may have applied part of it)."""
    unknown: bool = False

    def subscribed(self, snapshot_names: Mapping[str, Resource]) -> set[str]:
        """The names this client wants: its names, plus all of S when wildcard."""
        return set(snapshot_names) | self.names if self.wildcard else set(self.names)


@dataclass(frozen=True, slots=True)
class Plan:
    """The desired content per type, and whether the gates held anything back."""

    desired: dict[str, Desired]
    held_back: bool
    """Something of S waits for an ACK (a listener or route configuration for its clusters, an
    old cluster for what still points at it, a type whose client state is unknown).  When
    nothing is held back, an ACK of what was sent for this plan cannot change it."""


def plan(snapshot: Snapshot, views: Mapping[str, ClientView]) -> dict[str, Desired]:
    """The desired content of every type of :data:`types.ORDER` (see the module docstring)."""
    return plan_gates(snapshot, views).desired


def plan_gates(snapshot: Snapshot, views: Mapping[str, ClientView]) -> Plan:
    """:func:`plan`, and whether its gates held anything back."""
    planner = _Planner(snapshot, views)
    desired = planner.run()
    return Plan(desired, planner.held_back)


_NOTHING = ClientView()
"""The view of a type the client has not asked for (read only)."""


class _Planner:
    def __init__(self, snapshot: Snapshot, views: Mapping[str, ClientView]) -> None:
        self.s = snapshot
        self.views = {t: views.get(t) or _NOTHING for t in types.ORDER}
        self._ready: dict[str, bool] = {}
        self.held_back = any(view.unknown for view in self.views.values())

    def run(self) -> dict[str, Desired]:
        return {
            types.CLUSTER: self.clusters(),
            types.ENDPOINT: self.endpoints(),
            types.SECRET: self.named(types.SECRET, gated=False),
            types.LISTENER: self.listeners(),
            types.ROUTE: self.named(types.ROUTE, gated=True),
        }

    # -- readiness --------------------------------------------------------------------------

    def ready(self, cluster: str) -> bool:
        cached = self._ready.get(cluster)
        if cached is None:
            cached = self._ready[cluster] = self._compute_ready(cluster)
        return cached

    def _compute_ready(self, cluster: str) -> bool:
        cds = self.views[types.CLUSTER]
        if cluster not in cds.acked:
            return False
        resource = cds.held.get(cluster) or self.s.get(types.CLUSTER).get(cluster)
        if resource is None:
            return True  # accepted before we knew its content (delta reconnect)
        for type_url in (types.ENDPOINT, types.SECRET):
            acked = self.views[type_url].acked
            for name in resource.refs_of(type_url):
                if name in self.s.get(type_url) and name not in acked:
                    return False
        return True

    def clusters_ready(self, resource: Resource) -> bool:
        """Every cluster ``resource`` uses (directly or via RDS of S) is ready."""
        names = set(resource.refs_of(types.CLUSTER))
        routes = self.s.get(types.ROUTE)
        for route_name in resource.refs_of(types.ROUTE):
            route = routes.get(route_name)
            if route is not None:
                names.update(route.refs_of(types.CLUSTER))
        known = self.s.get(types.CLUSTER)
        acked = self.views[types.CLUSTER].acked
        return all(self.ready(c) for c in names if c in known or c in acked)

    # -- per type ---------------------------------------------------------------------------

    def clusters(self) -> Desired:
        view = self.views[types.CLUSTER]
        current = self.s.get(types.CLUSTER)
        desired: Desired = dict(current)
        gone = [name for name in view.acked if name not in current]
        if view.unknown or not gone:
            return desired
        holders = (self.views[types.LISTENER], self.views[types.ROUTE])
        content_unknown = any(not (v.acked.keys() <= v.held.keys()) for v in holders)
        referenced: set[str] = set()
        for holder in holders:
            for group in (holder.held, holder.in_flight, holder.rejected):
                for resource in group.values():
                    referenced.update(resource.refs_of(types.CLUSTER))
        for name in gone:
            if content_unknown or name in referenced:
                desired[name] = None
                self.held_back = True
        return desired

    def endpoints(self) -> Desired:
        view = self.views[types.ENDPOINT]
        current = self.s.get(types.ENDPOINT)
        desired: Desired = {}
        for name in view.subscribed(current):
            resource = current.get(name)
            if resource is None:
                if name in view.acked:
                    desired[name] = None
            else:
                desired[name] = resource
        return desired

    def listeners(self) -> Desired:
        view = self.views[types.LISTENER]
        desired: Desired = {}
        for name, resource in self.s.get(types.LISTENER).items():
            if view.acked.get(name) == resource.version:
                desired[name] = resource  # the client has it: nothing to gate
            elif view.unknown or self.clusters_ready(resource):
                desired[name] = resource
            else:
                self.held_back = True
                if name in view.acked:
                    desired[name] = None
        return desired

    def named(self, type_url: str, *, gated: bool) -> Desired:
        view = self.views[type_url]
        current = self.s.get(type_url)
        desired: Desired = {}
        for name in view.subscribed(current):
            resource = current.get(name)
            if resource is not None and (
                not gated
                or view.acked.get(name) == resource.version
                or view.unknown
                or self.clusters_ready(resource)
            ):
                desired[name] = resource
            else:
                self.held_back = self.held_back or resource is not None
                if name in view.acked:
                    desired[name] = None
        return desired
