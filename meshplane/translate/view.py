"""An immutable, indexed view of one mesh: the whole input of a translation.

:class:`MeshView` holds the stored specs of one mesh, keyed for the lookups translation makes
(a node, a service, a router and its routes by priority, a gateway and its gateway routes).
Specs are parsed with :func:`meshplane.model.parse_spec` the first time they are read and the
result is kept, so building a view of a 10,000-node mesh is a dictionary build and a proxy's
translation parses only the specs it touches.  A stored spec that no longer parses is treated
as absent and its error is kept for :meth:`MeshView.error`.  :meth:`MeshView.with_changes`
derives the next view from a change-feed batch and keeps every unchanged parse.

Built by the xDS control loop from store records and by tests; read by every translation
module.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from meshplane.errors import BadRequestError
from meshplane.model import (
    GatewayRouteSpec,
    Kind,
    MeshSpec,
    ResourceKey,
    RouteSpec,
    VirtualGatewaySpec,
    VirtualNodeSpec,
    VirtualRouterSpec,
    VirtualServiceSpec,
    parse_spec,
)
from meshplane.model.specs import Spec
from meshplane.store.records import Record

S = TypeVar("S", bound=Spec)
_CHILD_KINDS = {Kind.ROUTE: Kind.VIRTUAL_ROUTER, Kind.GATEWAY_ROUTE: Kind.VIRTUAL_GATEWAY}


@dataclass(frozen=True, slots=True)
class NamedRoute:
    """A route of a virtual router, with its name."""

    name: str
    spec: RouteSpec


@dataclass(frozen=True, slots=True)
class NamedGatewayRoute:
    """A gateway route of a virtual gateway, with its name."""

    name: str
    spec: GatewayRouteSpec


_CARRY_LIMIT_PER_RECORD = 4
_CARRY_LIMIT_BASE = 10_000
"""At most this many memoized pieces (4 per stored resource, plus 10,000) pass to the next
view: a piece stays while its inputs do not change, so pieces made for proxies long gone
(another egress port, other logging) would otherwise accumulate."""


def dependency_key(key: ResourceKey) -> ResourceKey:
    """The key a translation records when it reads ``key``: a route counts as its router and a
    gateway route as its gateway (a proxy reads all routes of a router at once)."""
    parent_kind = _CHILD_KINDS.get(key.kind)
    if parent_kind is None:
        return key
    return ResourceKey(parent_kind, key.mesh, key.parent)


class MeshView:
    """The specs of one mesh, parsed on first use.  Never changes once built."""

    __slots__ = ("_carry", "_children", "_errors", "_parsed", "_raw", "_sorted", "memo", "mesh")

    def __init__(
        self,
        mesh: str,
        raw: Mapping[ResourceKey, Mapping[str, Any] | None],
        *,
        parsed: Mapping[ResourceKey, Spec | None] | None = None,
        errors: Mapping[ResourceKey, str] | None = None,
        memo: Mapping[Hashable, Any] | None = None,
        carry: Mapping[Hashable, frozenset[ResourceKey]] | None = None,
    ) -> None:
        self.mesh = mesh
        self._raw = dict(raw)
        self._parsed: dict[ResourceKey, Spec | None] = dict(parsed or {})
        self._errors: dict[ResourceKey, str] = dict(errors or {})
        self._sorted: dict[ResourceKey, tuple[Any, ...]] = {}
        self.memo: dict[Hashable, Any] = dict(memo or {})
        """Values derived from this view alone, shared by every translation that reads it
        (the egress half of consumers with the same backends): the view never changes, so
        they stay right for its lifetime.  Those stored with :meth:`remember` also pass to the
        next view (:meth:`with_changes`) when none of the resources they were made from
        changed; the others do not."""
        self._carry: dict[Hashable, frozenset[ResourceKey]] = dict(carry or {})
        children: dict[ResourceKey, list[str]] = {}
        for key in self._raw:
            parent_kind = _CHILD_KINDS.get(key.kind)
            if parent_kind is not None:
                children.setdefault(ResourceKey(parent_kind, mesh, key.parent), []).append(key.name)
        self._children = {parent: tuple(names) for parent, names in children.items()}

    @classmethod
    def from_records(cls, records: Iterable[Record], mesh: str | None = None) -> MeshView:
        """A view of the records of ``mesh`` (by default: the one mesh the records belong to).

        Raises ``ValueError`` when ``mesh`` is not given and the records span several meshes.
        """
        raw: dict[ResourceKey, Mapping[str, Any] | None] = {}
        inferred = mesh is None
        for record in records:
            if mesh is None:
                mesh = record.key.mesh
            if record.key.mesh != mesh:
                if inferred:
                    raise ValueError(f"records of meshes {mesh!r} and {record.key.mesh!r}")
                continue
            raw[record.key] = record.spec
        return cls(mesh or "", raw)

    @classmethod
    def from_specs(
        cls, mesh: str, specs: Mapping[ResourceKey, Mapping[str, Any] | None]
    ) -> MeshView:
        """A view from JSON specs by key (tests and tools that have no store records)."""
        return cls(mesh, {k: v for k, v in specs.items() if k.mesh == mesh})

    def with_changes(
        self, upserts: Iterable[Record] = (), removals: Iterable[ResourceKey] = ()
    ) -> MeshView:
        """The next view: ``upserts`` added or replaced, ``removals`` gone; other parses kept."""
        raw = dict(self._raw)
        changed: set[ResourceKey] = set()
        for key in removals:
            raw.pop(key, None)
            changed.add(key)
        for record in upserts:
            if record.key.mesh == self.mesh:
                raw[record.key] = record.spec
                changed.add(record.key)
        parsed = {k: v for k, v in self._parsed.items() if k not in changed}
        errors = {k: v for k, v in self._errors.items() if k not in changed}
        touched = {dependency_key(k) for k in changed}
        carry = {
            k: inputs
            for k, inputs in self._carry.items()
            if k in self.memo and not inputs & touched
        }
        if len(carry) > _CARRY_LIMIT_PER_RECORD * len(raw) + _CARRY_LIMIT_BASE:
            carry = {}  # pieces for configurations long gone pile up: start afresh
        memo = {k: self.memo[k] for k in carry}
        return MeshView(self.mesh, raw, parsed=parsed, errors=errors, memo=memo, carry=carry)

    def without(self, keys: Iterable[ResourceKey]) -> MeshView:
        """A fresh view of the same mesh with the resources ``keys`` left out (nothing of
        this view's parses or memo is shared: the control loop translates on it to find a
        resource that cannot be translated)."""
        gone = set(keys)
        return MeshView(self.mesh, {k: v for k, v in self._raw.items() if k not in gone})

    def vip(self, service: str) -> str | None:
        """The stable virtual IP allocated to virtual service ``service`` (None: none yet)."""
        raw = self._raw.get(ResourceKey(Kind.VIRTUAL_IP, self.mesh, service))
        return str(raw["ip"]) if raw and "ip" in raw else None

    def resource_keys(self) -> tuple[ResourceKey, ...]:
        """The keys of every resource of the view (valid or not), in a stable order."""
        return tuple(sorted(self._raw, key=lambda k: (k.kind.value, k.parent, k.name)))

    def remember(self, key: Hashable, value: Any, inputs: frozenset[ResourceKey]) -> None:
        """Memoize ``value`` (see :attr:`memo`), made from the resources ``inputs`` (as a
        translation records them: routes as their router, the mesh included); it passes to
        the next view while none of them changes."""
        self.memo[key] = value
        self._carry[key] = inputs

    def inputs_of(self, key: Hashable) -> frozenset[ResourceKey] | None:
        """The inputs a :meth:`remember` ed value was made from (None: not remembered)."""
        return self._carry.get(key)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def key(self, kind: Kind, name: str, parent: str = "") -> ResourceKey:
        """The key of a resource of this mesh."""
        return ResourceKey(kind, self.mesh, name, parent)

    def names(self, kind: Kind) -> tuple[str, ...]:
        """The sorted names of the resources of one kind (children: ``parent/name``)."""
        return tuple(
            sorted(
                f"{k.parent}/{k.name}" if k.parent else k.name for k in self._raw if k.kind is kind
            )
        )

    def error(self, key: ResourceKey) -> str | None:
        """Why a stored spec could not be parsed (it is then treated as absent), or None."""
        self.spec(key)
        return self._errors.get(key)

    def spec(self, key: ResourceKey) -> Spec | None:
        """The parsed spec of ``key``, or None if there is no such (valid) resource."""
        if key in self._parsed:
            return self._parsed[key]
        if key not in self._raw:
            return None
        spec: Spec | None
        try:
            spec = parse_spec(key.kind, self._raw[key])
        except BadRequestError as exc:
            spec = None
            self._errors[key] = exc.message
        self._parsed[key] = spec
        return spec

    def _typed(self, kind: Kind, name: str, model: type[S]) -> S | None:
        spec = self.spec(ResourceKey(kind, self.mesh, name))
        return spec if isinstance(spec, model) else None

    @property
    def mesh_spec(self) -> MeshSpec | None:
        """The mesh's own spec; None when the mesh itself is not in the view."""
        return self._typed(Kind.MESH, self.mesh, MeshSpec)

    def node(self, name: str) -> VirtualNodeSpec | None:
        return self._typed(Kind.VIRTUAL_NODE, name, VirtualNodeSpec)

    def service(self, name: str) -> VirtualServiceSpec | None:
        return self._typed(Kind.VIRTUAL_SERVICE, name, VirtualServiceSpec)

    def router(self, name: str) -> VirtualRouterSpec | None:
        return self._typed(Kind.VIRTUAL_ROUTER, name, VirtualRouterSpec)

    def gateway(self, name: str) -> VirtualGatewaySpec | None:
        return self._typed(Kind.VIRTUAL_GATEWAY, name, VirtualGatewaySpec)

    def routes(self, router: str) -> tuple[NamedRoute, ...]:
        """The valid routes of a router in match order (see :func:`route_order`)."""
        parent = ResourceKey(Kind.VIRTUAL_ROUTER, self.mesh, router)
        cached = self._sorted.get(parent)
        if cached is None:
            routes = []
            for name in self._children.get(parent, ()):
                spec = self.spec(ResourceKey(Kind.ROUTE, self.mesh, name, router))
                if isinstance(spec, RouteSpec):
                    routes.append(NamedRoute(name, spec))
            cached = self._sorted[parent] = tuple(sorted(routes, key=route_order))
        return cached

    def gateway_routes(self, gateway: str) -> tuple[NamedGatewayRoute, ...]:
        """The valid gateway routes of a gateway in match order (see
        :func:`gateway_route_order`)."""
        parent = ResourceKey(Kind.VIRTUAL_GATEWAY, self.mesh, gateway)
        cached = self._sorted.get(parent)
        if cached is None:
            routes = []
            for name in self._children.get(parent, ()):
                spec = self.spec(ResourceKey(Kind.GATEWAY_ROUTE, self.mesh, name, gateway))
                if isinstance(spec, GatewayRouteSpec):
                    routes.append(NamedGatewayRoute(name, spec))
            cached = self._sorted[parent] = tuple(sorted(routes, key=gateway_route_order))
        return cached


def route_order(route: NamedRoute) -> tuple[int, int, tuple[int, int], str]:
    """Routes with a priority first, lowest number first, ties by name.  Routes without one
    follow, most specific match first (exact path, then regex, then the longest prefix; gRPC:
    method, then service), then by name, so a catch-all ``/`` never hides a longer prefix."""
    priority = route.spec.priority
    if priority is not None:
        return (0, priority, (0, 0), route.name)
    rank, length = _specificity(route.spec)
    return (1, 0, (-rank, -length), route.name)


def _specificity(spec: RouteSpec) -> tuple[int, int]:
    http = spec.httpRoute or spec.http2Route
    if http is not None:
        match = http.match
        if match.path is not None:
            return (3 if match.path.exact is not None else 2, len(match.path.value))
        return (1, len(match.prefix or ""))
    if spec.grpcRoute is not None:
        grpc = spec.grpcRoute.match
        if grpc.methodName is not None:
            return (3, len(grpc.serviceName or "") + len(grpc.methodName))
        return (1, len(grpc.serviceName or "")) if grpc.serviceName else (0, 0)
    return (0, 0)


def gateway_route_order(route: NamedGatewayRoute) -> tuple[int, int, tuple[int, int, int], str]:
    """Gateway routes with a priority first, lowest number first, ties by name.  Those without
    one follow, most specific first — an exact path, a regex, then the longest prefix ("the
    longest prefix wins"; gRPC: the longest service name), then an exact hostname before a
    suffix, the longer suffix first — then by name."""
    priority = route.spec.priority
    if priority is not None:
        return (0, priority, (0, 0, 0), route.name)
    spec = route.spec
    http = spec.httpRoute or spec.http2Route
    hostname = None
    if http is not None:
        match = http.match
        hostname = match.hostname
        if match.path is not None:
            rank, length = (3 if match.path.exact is not None else 2), len(match.path.value)
        else:
            rank, length = (1, len(match.prefix)) if match.prefix is not None else (0, 0)
    else:
        assert spec.grpcRoute is not None
        grpc = spec.grpcRoute.match
        hostname = grpc.hostname
        rank, length = (1, len(grpc.serviceName)) if grpc.serviceName is not None else (0, 0)
    host_rank = 0
    if hostname is not None:
        host_rank = 1_000 if hostname.exact is not None else len(hostname.suffix or "")
    return (1, 0, (-rank, -length, -host_rank), route.name)
