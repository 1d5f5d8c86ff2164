"""meshplane's resource model: the seven App Mesh kinds and their typed, frozen specs.

Re-exports the public surface: ``Kind``/``ResourceKey``, the spec classes of every kind,
``Spec``/``SPEC_TYPES`` and ``parse_spec``/``dump_spec``; the shapes below the specs live
in the sub-modules (``common``, ``tls``, ``matches``, ``mesh``, ``virtual_node``,
``virtual_service``, ``route``, ``virtual_gateway``, ``gateway_route``).  Used by every
layer above: store, service, manifests, translation, API and CLI.
"""

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
