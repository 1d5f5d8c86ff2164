"""Rules that span resources: references must exist, routes must fit their router, and
nothing may be deleted while another resource depends on it.

Called by ``meshplane.service.resources`` inside the write transaction, so the checks and
the write see the same state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshplane.errors import BadRequestError, NotFoundError, ResourceInUseError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.model.route_types import GATEWAY_ROUTE_TYPES, ROUTE_PROTOCOLS
from meshplane.store.protocols import ResourceReader


def _require(reader: ResourceReader, key: ResourceKey, field: str) -> None:
    if reader.get(key) is None:
        raise NotFoundError(
            f"{field}: {key.kind.title} {key.name!r} not found in mesh {key.mesh!r}"
        )


def route_targets(spec: Mapping[str, Any]) -> Iterator[str]:
    """Names of the virtual nodes a route's weighted targets point at."""
    for route_type in ROUTE_PROTOCOLS:
        route = spec.get(route_type)
        if route:
            for target in route.get("action", {}).get("weightedTargets", []):
                yield target["virtualNode"]


def gateway_route_target(spec: Mapping[str, Any]) -> str | None:
    for route_type in GATEWAY_ROUTE_TYPES:
        route = spec.get(route_type)
        if route:
            name = route["action"]["target"]["virtualService"]["virtualServiceName"]
            return str(name)
    return None


def provider(spec: Mapping[str, Any]) -> tuple[Kind, str] | None:
    prov = spec.get("provider") or {}
    if "virtualNode" in prov:
        return Kind.VIRTUAL_NODE, prov["virtualNode"]["virtualNodeName"]
    if "virtualRouter" in prov:
        return Kind.VIRTUAL_ROUTER, prov["virtualRouter"]["virtualRouterName"]
    return None


def _route_fits(route_spec: Mapping[str, Any], listeners: list[Any], router: str) -> str | None:
    """Why a route does not fit its router's listeners, or None if it does."""
    for route_type, protocol in ROUTE_PROTOCOLS.items():
        route = route_spec.get(route_type)
        if not route:
            continue
        port = (route.get("match") or {}).get("port")
        mappings = [listener["portMapping"] for listener in listeners]
        if port is not None:
            match = [m for m in mappings if m["port"] == port]
            if not match:
                return (
                    f"spec.{route_type}.match.port: virtual router {router!r} "
                    f"has no listener on port {port}"
                )
            if match[0]["protocol"] != protocol:
                return (
                    f"spec.{route_type}: the listener on port {port} of virtual router {router!r} "
                    f"speaks {match[0]['protocol']}, not {protocol}"
                )
            return None
        if len(mappings) > 1:
            return (
                f"spec.{route_type}.match.port: is required because virtual router {router!r} "
                "has several listeners"
            )
        if not mappings:
            return f"spec.{route_type}: virtual router {router!r} has no listener"
        if mappings[0]["protocol"] != protocol:
            return (
                f"spec.{route_type}: a {route_type} needs a {protocol} listener, but virtual "
                f"router {router!r} listens with {mappings[0]['protocol']}"
            )
    return None


def check_references(reader: ResourceReader, key: ResourceKey, spec: Mapping[str, Any]) -> None:
    """Check what a resource about to be created or updated refers to."""
    mesh = key.mesh
    if key.kind is Kind.VIRTUAL_SERVICE:
        prov = provider(spec)
        if prov is not None:
            kind, name = prov
            _require(reader, ResourceKey(kind, mesh, name), f"spec.provider.{kind.value}")
    elif key.kind is Kind.ROUTE:
        router = reader.get(ResourceKey(Kind.VIRTUAL_ROUTER, mesh, key.parent))
        if router is None:
            raise NotFoundError(f"virtualRouterName: virtual router {key.parent!r} not found")
        problem = _route_fits(spec, list(router.spec.get("listeners", [])), key.parent)
        if problem:
            raise BadRequestError(problem)
        for target in route_targets(spec):
            _require(
                reader,
                ResourceKey(Kind.VIRTUAL_NODE, mesh, target),
                "spec.action.weightedTargets.virtualNode",
            )
    elif key.kind is Kind.GATEWAY_ROUTE:
        if reader.get(ResourceKey(Kind.VIRTUAL_GATEWAY, mesh, key.parent)) is None:
            raise NotFoundError(f"virtualGatewayName: virtual gateway {key.parent!r} not found")
        service_name = gateway_route_target(spec)
        if service_name is not None:
            _require(
                reader,
                ResourceKey(Kind.VIRTUAL_SERVICE, mesh, service_name),
                "spec.action.target.virtualService.virtualServiceName",
            )
    elif key.kind is Kind.VIRTUAL_ROUTER:
        listeners = list(spec.get("listeners", []))
        for route in reader.list_kind(Kind.ROUTE, mesh, key.name):
            problem = _route_fits(route.spec, listeners, key.name)
            if problem:
                raise BadRequestError(
                    f"spec.listeners: route {route.key.name!r} would no longer fit: {problem}"
                )


def check_deletable(reader: ResourceReader, key: ResourceKey) -> None:
    """Raise ResourceInUseError if something still depends on ``key``."""
    mesh = key.mesh
    if key.kind is Kind.MESH:
        members = [
            r
            for r in reader.mesh_records(mesh)
            if r.key.kind is not Kind.MESH and r.key.kind.is_app_mesh  # not its VIPs
        ]
        if members:
            raise ResourceInUseError(
                f"mesh {mesh!r} is not empty: it still has {len(members)} resources "
                f"(first: {members[0].key}); delete them first"
            )
        return
    users: list[str] = []
    if key.kind in (Kind.VIRTUAL_NODE, Kind.VIRTUAL_ROUTER):
        for service in reader.list_kind(Kind.VIRTUAL_SERVICE, mesh):
            if provider(service.spec) == (key.kind, key.name):
                users.append(f"virtual service {service.key.name!r} (provider)")
    if key.kind is Kind.VIRTUAL_NODE:
        for route in reader.list_kind(Kind.ROUTE, mesh):
            if key.name in set(route_targets(route.spec)):
                users.append(f"route {route.key.parent}/{route.key.name} (weighted target)")
    if key.kind is Kind.VIRTUAL_ROUTER:
        users += [f"route {r.key.name!r}" for r in reader.list_kind(Kind.ROUTE, mesh, key.name)]
    if key.kind is Kind.VIRTUAL_GATEWAY:
        users += [
            f"gateway route {r.key.name!r}"
            for r in reader.list_kind(Kind.GATEWAY_ROUTE, mesh, key.name)
        ]
    if key.kind is Kind.VIRTUAL_SERVICE:
        for route in reader.list_kind(Kind.GATEWAY_ROUTE, mesh):
            if gateway_route_target(route.spec) == key.name:
                users.append(f"gateway route {route.key.parent}/{route.key.name} (target)")
    if users:
        shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        raise ResourceInUseError(
            f"{key.kind.title} {key.name!r} is in use by {shown}; delete or change those first"
        )
