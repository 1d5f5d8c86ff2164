"""Helpers for the model tests: botocore's App Mesh model and minimal valid specs built from it.

``minimal(shape, along)`` builds the smallest spec document that App Mesh accepts for a
botocore shape, taking the members named in ``along`` on the way (so a test can reach any
member), and satisfying meshplane's semantic rules.  Imported by the test_model_* files.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import botocore.session
from botocore.model import ListShape, Shape, StructureShape

from meshplane.model import Kind

SERVICE = botocore.session.get_session().get_service_model("appmesh")

ROOTS: dict[Kind, str] = {
    Kind.MESH: "MeshSpec",
    Kind.VIRTUAL_NODE: "VirtualNodeSpec",
    Kind.VIRTUAL_SERVICE: "VirtualServiceSpec",
    Kind.VIRTUAL_ROUTER: "VirtualRouterSpec",
    Kind.ROUTE: "RouteSpec",
    Kind.VIRTUAL_GATEWAY: "VirtualGatewaySpec",
    Kind.GATEWAY_ROUTE: "GatewayRouteSpec",
}

_ROUTE_MEMBERS = ("httpRoute", "http2Route", "grpcRoute", "tcpRoute")


def shape(name: str) -> Shape:
    return SERVICE.shape_for(name)


def is_union(s: Shape) -> bool:
    return bool(SERVICE._shape_resolver._shape_map[s.name].get("union"))


def enum_values(s: Shape) -> list[str]:
    return list(getattr(s, "enum", None) or [])


def limits(s: Shape) -> tuple[int | None, int | None]:
    return s.metadata.get("min"), s.metadata.get("max")


def scalar_sample(s: Shape) -> Any:
    """A valid value for a scalar shape."""
    if enum_values(s):
        return enum_values(s)[0]
    if s.type_name == "boolean":
        return True
    if s.type_name in ("integer", "long"):
        low, _ = limits(s)
        return low if low is not None else 1
    return {
        "HttpRetryPolicyEvent": "server-error",
        "HttpGatewayRoutePrefix": "/",
        "String": "/",
    }.get(s.name, "x")


def minimal(s: Shape, along: Sequence[str] = ()) -> Any:
    """The smallest valid value of ``s`` that contains the member path ``along``."""
    if isinstance(s, ListShape):
        return [minimal(s.member, along)]
    if not isinstance(s, StructureShape):
        return scalar_sample(s)
    members = s.members
    if is_union(s):
        names = [along[0] if along else next(iter(members))]
    else:
        names = list(s.required_members)
        if along and along[0] not in names:
            names.append(along[0])
    doc = {n: minimal(members[n], along[1:] if along and n == along[0] else ()) for n in names}
    _satisfy_rules(s.name, doc)
    return doc


def _satisfy_rules(name: str, doc: dict[str, Any]) -> None:
    """Add what meshplane's semantic rules require beyond botocore's required members."""
    if name in ("HttpRouteMatch", "HttpGatewayRouteMatch") and "path" not in doc:
        doc.setdefault("prefix", "/")
    elif name in ("GrpcRouteMatch", "GrpcGatewayRouteMatch"):
        doc.setdefault("serviceName", "svc")
    elif name in ("HttpRetryPolicy", "GrpcRetryPolicy"):
        if not any(k.endswith("RetryEvents") for k in doc):
            doc["tcpRetryEvents"] = ["connection-error"]
    elif name == "Duration":
        doc.setdefault("unit", "s")
        doc.setdefault("value", 1)
    elif name == "MatchRange":
        doc["end"] = doc["start"] + 10
    elif name == "HttpPathMatch" and not doc:
        doc["exact"] = "/x"
    elif name == "GatewayRouteHostnameMatch" and not doc:
        doc["exact"] = "example.com"
    elif name == "HttpGatewayRoutePrefixRewrite" and not doc:
        doc["defaultPrefix"] = "ENABLED"
    elif name in ("Listener", "VirtualGatewayListener"):
        for member in ("connectionPool", "timeout"):
            if member in doc:
                doc["portMapping"]["protocol"] = next(iter(doc[member]))
    elif name == "VirtualNodeSpec" and "listeners" in doc:
        doc.setdefault("serviceDiscovery", {"dns": {"hostname": "node.local"}})
    elif name in ("RouteSpec", "GatewayRouteSpec") and not any(m in doc for m in _ROUTE_MEMBERS):
        doc["httpRoute"] = minimal(shape(name).members["httpRoute"])


def member_paths(s: Shape, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Shape]]:
    """Every (member path, member shape) below a structure; lists are passed through."""
    if isinstance(s, ListShape):
        yield from member_paths(s.member, prefix)
        return
    if not isinstance(s, StructureShape):
        return
    for name, member in s.members.items():
        path = (*prefix, name)
        yield path, member
        yield from member_paths(member, path)


def with_value(doc: Any, path: Sequence[str], value: Any) -> Any:
    """A copy of ``doc`` with the member at ``path`` (first list items) set to ``value``."""
    doc = copy.deepcopy(doc)
    node = doc
    for name in path[:-1]:
        node = node[name]
        if isinstance(node, list):
            node = node[0]
    node[path[-1]] = value
    return doc


def render_path(path: Sequence[str], doc: Any) -> str:
    """``spec.a.b[0].c``: the path as parse_spec messages spell it."""
    out = "spec"
    node = doc
    for name in path:
        out += f".{name}"
        node = node[name]
        if isinstance(node, list) and name != path[-1]:
            out += "[0]"
            node = node[0]
    return out
