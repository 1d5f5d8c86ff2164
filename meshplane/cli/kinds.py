"""Kind names on the command line (``virtualnode``, ``vn``, ``VirtualNodes`` ...).

Used by ``get``, ``describe`` and ``delete``.
"""

from __future__ import annotations

import click

from meshplane.model.kinds import Kind

_ALIASES: dict[str, Kind] = {}
for _kind, _short in (
    (Kind.MESH, "mesh"),
    (Kind.VIRTUAL_NODE, "vn"),
    (Kind.VIRTUAL_SERVICE, "vs"),
    (Kind.VIRTUAL_ROUTER, "vr"),
    (Kind.ROUTE, "rt"),
    (Kind.VIRTUAL_GATEWAY, "vg"),
    (Kind.GATEWAY_ROUTE, "gr"),
):
    for _name in (_kind.value, _kind.plural, _short):
        _ALIASES[_name.lower()] = _kind

# the Cloud Map registry's kinds (``get`` and ``describe`` only)
for _kind, _names in (
    (Kind.CLOUD_MAP_NAMESPACE, ("namespace", "namespaces", "ns", "cloudmapnamespace")),
    (Kind.CLOUD_MAP_SERVICE, ("service", "services", "svc", "cloudmapservice")),
    (Kind.CLOUD_MAP_INSTANCE, ("instance", "instances", "inst", "cloudmapinstance")),
):
    for _name in _names:
        _ALIASES[_name] = _kind

KIND_HELP = (
    "mesh, virtualnode (vn), virtualservice (vs), virtualrouter (vr), route (rt), "
    "virtualgateway (vg), gatewayroute (gr); Cloud Map: namespace (ns), service (svc), "
    "instance (inst)"
)

# the Kubernetes kind of each App Mesh kind (routes live inside VirtualRouter manifests)
K8S_KINDS = {
    Kind.MESH: "Mesh",
    Kind.VIRTUAL_NODE: "VirtualNode",
    Kind.VIRTUAL_SERVICE: "VirtualService",
    Kind.VIRTUAL_ROUTER: "VirtualRouter",
    Kind.ROUTE: "VirtualRouter",
    Kind.VIRTUAL_GATEWAY: "VirtualGateway",
    Kind.GATEWAY_ROUTE: "GatewayRoute",
}


class KindParam(click.ParamType):  # type: ignore[type-arg]
    name = "KIND"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Kind:
        if isinstance(value, Kind):
            return value
        kind = _ALIASES.get(str(value).lower().replace("-", "").replace("_", ""))
        if kind is None:
            self.fail(f"unknown kind {value!r}; use one of: {KIND_HELP}", param, ctx)
        return kind
