"""meshplane's resource model: the seven App Mesh kinds and their typed, frozen specs.

Re-exports the public surface: ``Kind``/``ResourceKey``, the spec classes of every kind,
``Spec``/``SPEC_TYPES`` and ``parse_spec``/``dump_spec``; the shapes below the specs live
in the sub-modules (``common``, ``tls``, ``matches``, ``mesh``, ``virtual_node``,
``virtual_service``, ``route``, ``virtual_gateway``, ``gateway_route``).  Used by every
layer above: store, service, manifests, translation, API and CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshplane.model.common import (
        DurationUnit,
        GatewayProtocol,
        IpPreference,
        PortProtocol,
        Protocol,
        TlsMode,
        VirtualGatewayPortProtocol,
    )
    from meshplane.model.gateway_route import GatewayRouteSpec
    from meshplane.model.kinds import Kind, ResourceKey
    from meshplane.model.mesh import EgressFilterType, MeshSpec
    from meshplane.model.route import HttpMethod, RouteSpec
    from meshplane.model.specs import SPEC_TYPES, Spec, dump_spec, parse_spec
    from meshplane.model.virtual_gateway import VirtualGatewaySpec
    from meshplane.model.virtual_node import DnsResponseType, VirtualNodeSpec
    from meshplane.model.virtual_service import VirtualRouterSpec, VirtualServiceSpec

__all__ = [
    "SPEC_TYPES",
    "DnsResponseType",
    "DurationUnit",
    "EgressFilterType",
    "GatewayProtocol",
    "GatewayRouteSpec",
    "HttpMethod",
    "IpPreference",
    "Kind",
    "MeshSpec",
    "PortProtocol",
    "Protocol",
    "ResourceKey",
    "RouteSpec",
    "Spec",
    "TlsMode",
    "VirtualGatewayPortProtocol",
    "VirtualGatewaySpec",
    "VirtualNodeSpec",
    "VirtualRouterSpec",
    "VirtualServiceSpec",
    "dump_spec",
    "parse_spec",
]

# Submodules are imported on first use, so that importing ``meshplane.model.kinds``
# (light) does not build every pydantic model (about 0.3 s) for commands that need none.
_LAZY = {
    "DnsResponseType": "meshplane.model.virtual_node",
    "DurationUnit": "meshplane.model.common",
    "EgressFilterType": "meshplane.model.mesh",
    "GatewayProtocol": "meshplane.model.common",
    "GatewayRouteSpec": "meshplane.model.gateway_route",
    "HttpMethod": "meshplane.model.route",
    "IpPreference": "meshplane.model.common",
    "Kind": "meshplane.model.kinds",
    "MeshSpec": "meshplane.model.mesh",
    "PortProtocol": "meshplane.model.common",
    "Protocol": "meshplane.model.common",
    "ResourceKey": "meshplane.model.kinds",
    "RouteSpec": "meshplane.model.route",
    "SPEC_TYPES": "meshplane.model.specs",
    "Spec": "meshplane.model.specs",
    "TlsMode": "meshplane.model.common",
    "VirtualGatewayPortProtocol": "meshplane.model.common",
    "VirtualGatewaySpec": "meshplane.model.virtual_gateway",
    "VirtualNodeSpec": "meshplane.model.virtual_node",
    "VirtualRouterSpec": "meshplane.model.virtual_service",
    "VirtualServiceSpec": "meshplane.model.virtual_service",
    "dump_spec": "meshplane.model.specs",
    "parse_spec": "meshplane.model.specs",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
