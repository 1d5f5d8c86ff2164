"""The rules the App Mesh controller's validating webhooks add on top of the CRD schemas.

Each ``check_*`` takes a spec whose shape ``schema.convert`` already accepted and raises
``FieldProblem`` at the first broken rule (webhooks/appmesh/*_validator.go: one connection
pool type, service discovery with listeners, no duplicate backends or route names, prefix/path
and match-filter unions, gateway route rewrites).  Rules that are the App Mesh API's own are
left to the API model.

Called by ``meshplane.manifests.conversion``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshplane.manifests.errors import FieldProblem, Path, shown

Spec = Mapping[str, Any]
_SPEC: Path = ("spec",)


def check_virtual_node(spec: Spec, namespace: str) -> None:
    if spec.get("listeners") is not None and spec.get("serviceDiscovery") is None:
        raise FieldProblem(
            (*_SPEC, "serviceDiscovery"),
            "required when listeners are given (ServiceDiscovery must be specified when a "
            "listener is specified)",
        )
    _check_pools(spec, ("tcp", "http", "http2", "grpc"))
    seen: dict[object, int] = {}
    for index, backend in enumerate(spec.get("backends") or ()):
        service = backend["virtualService"]
        ref = service.get("virtualServiceRef")
        identity: object
        if ref is not None:
            identity = ("ref", ref.get("namespace") or namespace, ref["name"])
            field = "virtualServiceRef"
        else:
            identity = ("arn", service.get("virtualServiceARN"))
            field = "virtualServiceARN"
        if identity in seen:
            raise FieldProblem(
                (*_SPEC, "backends", index, "virtualService", field),
                f"duplicate backend: the same virtual service is spec.backends[{seen[identity]}]",
            )
        seen[identity] = index


def check_virtual_gateway(spec: Spec) -> None:
    _check_pools(spec, ("http", "http2", "grpc"))


def check_virtual_router(spec: Spec) -> None:
    first: dict[str, int] = {}
    for index, route in enumerate(spec.get("routes") or ()):
        name = route["name"]
        if name in first:
            raise FieldProblem(
                (*_SPEC, "routes", index, "name"),
                f"duplicate route name {shown(name)} (also spec.routes[{first[name]}])",
            )
        first[name] = index
        for kind in ("httpRoute", "http2Route"):
            if route.get(kind) is not None:
                _check_route_match(route[kind]["match"], (*_SPEC, "routes", index, kind, "match"))


def check_gateway_route(spec: Spec) -> None:
    kinds = [k for k in ("grpcRoute", "httpRoute", "http2Route") if spec.get(k) is not None]
    if not kinds:
        raise FieldProblem(_SPEC, "one of httpRoute, http2Route or grpcRoute is required")
    if len(kinds) > 1:
        raise FieldProblem(_SPEC, f"only one route type is allowed, found {' and '.join(kinds)}")
    kind = kinds[0]
    route = spec[kind]
    path: Path = (*_SPEC, kind)
    match = route["match"]
    if kind == "grpcRoute":
        if match.get("serviceName") is None and match.get("hostname") is None:
            raise FieldProblem((*path, "match"), "either serviceName or hostname must be specified")
        _check_hostname(match, (*path, "match"))
        _check_filters(match.get("metadata"), (*path, "match", "metadata"))
        return
    if all(match.get(k) is None for k in ("prefix", "path", "hostname")):
        raise FieldProblem((*path, "match"), "either prefix, path or hostname must be specified")
    _check_prefix_path(match, (*path, "match"), prefix_required=False)
    _check_hostname(match, (*path, "match"))
    _check_filters(match.get("headers"), (*path, "match", "headers"))
    for index, parameter in enumerate(match.get("queryParameters") or ()):
        if parameter.get("match") is not None and parameter["match"].get("exact") is None:
            raise FieldProblem(
                (*path, "match", "queryParameters", index, "match"),
                "exact is required when match is given (leave match out to match any value)",
            )
    rewrite = route["action"].get("rewrite")
    if rewrite is not None:
        _check_rewrite(rewrite, (*path, "action", "rewrite"))


def _check_pools(spec: Spec, kinds: tuple[str, ...]) -> None:
    for index, listener in enumerate(spec.get("listeners") or ()):
        pool = listener.get("connectionPool")
        if pool is not None and sum(pool.get(k) is not None for k in kinds) > 1:
            raise FieldProblem(
                (*_SPEC, "listeners", index, "connectionPool"),
                "only one type of connection pool is allowed",
            )


def _check_route_match(match: Spec, path: Path) -> None:
    if match.get("prefix") is None and match.get("path") is None:
        raise FieldProblem(path, "either prefix or path must be specified")
    _check_prefix_path(match, path, prefix_required=True)
    _check_filters(match.get("headers"), (*path, "headers"))


def _check_prefix_path(match: Spec, path: Path, *, prefix_required: bool) -> None:
    prefix, path_match = match.get("prefix"), match.get("path")
    if prefix is not None and path_match is not None:
        raise FieldProblem(path, "only one of prefix or path may be specified")
    if prefix is not None and not prefix.startswith("/"):
        raise FieldProblem((*path, "prefix"), "must start with '/'")
    if path_match is not None:
        given = [k for k in ("exact", "regex") if path_match.get(k) is not None]
        if len(given) != 1:
            raise FieldProblem((*path, "path"), "exactly one of exact or regex must be specified")


def _check_hostname(match: Spec, path: Path) -> None:
    hostname = match.get("hostname")
    if hostname is not None:
        given = [k for k in ("exact", "suffix") if hostname.get(k) is not None]
        if len(given) != 1:
            raise FieldProblem(
                (*path, "hostname"), "exactly one of exact or suffix must be specified"
            )


def _check_filters(items: Any, path: Path) -> None:
    """Header or metadata matches: one filter per match, and ranges with end > start."""
    for index, item in enumerate(items or ()):
        match = item.get("match")
        if match is None:
            continue
        where = (*path, index, "match")
        given = [
            k for k in ("exact", "prefix", "range", "regex", "suffix") if match.get(k) is not None
        ]
        if len(given) != 1:
            raise FieldProblem(
                where, "exactly one of exact, prefix, range, regex or suffix must be specified"
            )
        bounds = match.get("range")
        if bounds is not None and bounds["start"] >= bounds["end"]:
            raise FieldProblem((*where, "range"), "end must be greater than start")


def _check_rewrite(rewrite: Spec, path: Path) -> None:
    if all(rewrite.get(k) is None for k in ("prefix", "path", "hostname")):
        raise FieldProblem(path, "one of prefix, path or hostname must be specified")
    if rewrite.get("prefix") is not None and rewrite.get("path") is not None:
        raise FieldProblem(path, "only one of prefix or path may be specified")
    prefix = rewrite.get("prefix")
    if prefix is None:
        return
    if prefix.get("defaultPrefix") is not None and prefix.get("value") is not None:
        raise FieldProblem((*path, "prefix"), "only one of defaultPrefix or value may be specified")
    value = prefix.get("value")
    if value is not None and not (value.startswith("/") and value.endswith("/")):
        raise FieldProblem((*path, "prefix", "value"), "must start and end with '/'")
