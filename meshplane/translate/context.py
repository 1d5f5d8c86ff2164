"""The state of one proxy's translation: its inputs, what it read, what went wrong.

:class:`Context` wraps the :class:`~meshplane.translate.view.MeshView` lookups so that every
resource a translation reads (or looks for and does not find) lands in ``inputs``; the
control loop re-translates a proxy only when one of its inputs changes.  ``problems``
collects what the translation had to leave out (a missing backend, a dropped route target,
a port already taken), phrased for ``proxy-status``.  Mutable, and private to one
:func:`~meshplane.translate.translate_proxy` call.  What is made once for every proxy of a
view (:meth:`SharedContext.shared`) is built in a :class:`SharedContext`, which has no target
and no options: a per-proxy value cannot leak into another proxy's configuration.

Created by :mod:`meshplane.translate.proxy`; read by the planning and output modules.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

from meshplane.model import (
    Kind,
    MeshSpec,
    ResourceKey,
    VirtualGatewaySpec,
    VirtualNodeSpec,
    VirtualRouterSpec,
    VirtualServiceSpec,
)
from meshplane.model.proxy import ProxyIdentity
from meshplane.translate.options import MeshSecurity, Observability, ProxyOptions
from meshplane.translate.view import MeshView, NamedGatewayRoute, NamedRoute

T = TypeVar("T")


class SharedContext:
    """A translation's reads and problems, without the proxy: what a shared builder
    (:meth:`shared`) gets, so that it cannot read the target or the options of whichever proxy
    happened to build it first (per-proxy values it needs are in its key and its arguments)."""

    __slots__ = ("inputs", "mesh", "mesh_spec", "problems", "security", "view")

    def __init__(
        self, view: MeshView, mesh_spec: MeshSpec, security: MeshSecurity | None = None
    ) -> None:
        self.view = view
        self.security = security or MeshSecurity()
        self.mesh = view.mesh
        self.mesh_spec = mesh_spec
        self.inputs: set[ResourceKey] = {view.key(Kind.MESH, view.mesh)}
        self.problems: list[str] = []

    def shared(
        self,
        key: Hashable,
        build: Callable[[SharedContext], T],
        *,
        reads: Iterable[ResourceKey] = (),
    ) -> T:
        """``build``'s result for this view, made once and shared by every translation on it
        (and on the next views, while none of its inputs changes: :meth:`MeshView.remember`).
        ``build`` runs in a :class:`SharedContext` of its own (no target, no options), whose
        reads (plus ``reads``: what it uses without looking it up, such as a spec handed to it)
        are its inputs; those inputs and its problems are added to this context, hit or miss,
        as if it had run here."""
        found: tuple[T, frozenset[ResourceKey], tuple[str, ...]] | None = self.view.memo.get(key)
        if found is None:
            own = SharedContext(self.view, self.mesh_spec, self.security)
            value = build(own)
            inputs = frozenset(own.inputs).union(reads)
            found = (value, inputs, tuple(own.problems))
            self.view.remember(key, found, inputs)
        value, inputs, problems = found
        self.inputs.update(inputs)
        for problem in problems:
            self.problem(problem)
        return value

    def problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    def _read(self, kind: Kind, name: str) -> ResourceKey:
        key = self.view.key(kind, name)
        self.inputs.add(key)
        error = self.view.error(key)
        if error is not None:
            self.problem(f"{kind.title} {name!r} is ignored, its stored spec is invalid: {error}")
        return key

    def node(self, name: str) -> VirtualNodeSpec | None:
        self._read(Kind.VIRTUAL_NODE, name)
        return self.view.node(name)

    def service(self, name: str) -> VirtualServiceSpec | None:
        self._read(Kind.VIRTUAL_SERVICE, name)
        return self.view.service(name)

    def router(self, name: str) -> VirtualRouterSpec | None:
        self._read(Kind.VIRTUAL_ROUTER, name)
        return self.view.router(name)

    def routes(self, router: str) -> tuple[NamedRoute, ...]:
        """A router's routes; recorded as a read of the router (see ``dependency_key``)."""
        self._read(Kind.VIRTUAL_ROUTER, router)
        return self.view.routes(router)

    def gateway(self, name: str) -> VirtualGatewaySpec | None:
        self._read(Kind.VIRTUAL_GATEWAY, name)
        return self.view.gateway(name)

    def vip(self, service: str) -> str | None:
        """The virtual IP of virtual service ``service``; recorded as an input."""
        self.inputs.add(self.view.key(Kind.VIRTUAL_IP, service))
        return self.view.vip(service)

    def gateway_routes(self, gateway: str) -> tuple[NamedGatewayRoute, ...]:
        """A gateway's routes; recorded as a read of the gateway."""
        self._read(Kind.VIRTUAL_GATEWAY, gateway)
        return self.view.gateway_routes(gateway)


class Context(SharedContext):
    """One proxy's translation in progress (see the module docstring)."""

    __slots__ = ("observability", "options", "target")

    def __init__(
        self,
        view: MeshView,
        target: ProxyIdentity,
        options: ProxyOptions,
        mesh_spec: MeshSpec,
        security: MeshSecurity | None = None,
        observability: Observability | None = None,
    ) -> None:
        super().__init__(view, mesh_spec, security)
        self.target = target
        self.options = options
        self.observability = observability or Observability()
