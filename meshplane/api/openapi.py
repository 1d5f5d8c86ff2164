"""The OpenAPI 3.1 document of everything the API port answers (``/openapi.json``).

App Mesh paths come from the operation table (``meshplane.api.routing``); spec schemas come
from the pydantic models, with the rules the models check beyond their types added (a union
takes exactly one member, a virtual gateway at least one listener), so the document can never
drift from what the server validates.  Names, client tokens, ARNs and page tokens carry the
server's patterns.  meshplane's own endpoints (``/meshplane/v1``), ``/healthz``,
``/metrics``, ``/openapi.json`` and the Cloud Map API (``POST /``) are described too.  Used
by clients, and by the schemathesis run of the abuse tier (``tests/abuse``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from meshplane import __version__
from meshplane.model import SPEC_TYPES
from meshplane.model.common import UnionModel
from meshplane.model.kinds import Kind

from .routing import OPERATIONS, Action, Operation

_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "BadRequestException, LimitExceededException or TooManyTagsException",
    "401": "ForbiddenException: missing or invalid credentials",
    "403": "ForbiddenException: the caller's roles do not allow this operation",
    "404": "NotFoundException",
    "409": "ConflictException or ResourceInUseException",
    "429": "TooManyRequestsException",
    "500": "InternalServerErrorException",
    "503": "ServiceUnavailableException",
}


_EXACTLY_ONE: dict[str, tuple[str, ...]] = {
    "RouteSpec": ("grpcRoute", "http2Route", "httpRoute", "tcpRoute"),
    "GatewayRouteSpec": ("grpcRoute", "http2Route", "httpRoute"),
    "GatewayRouteHostnameMatch": ("exact", "suffix"),
    "HttpGatewayRoutePrefixRewrite": ("defaultPrefix", "value"),
    "HttpPathMatch": ("exact", "regex"),
}
"""Models (besides the unions) whose rules take exactly one of these members."""


def _union_models() -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    pending: list[type[UnionModel]] = list(UnionModel.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        found[model.__name__] = tuple(
            info.alias or name for name, info in model.model_fields.items()
        )
    return found


def _rules(schemas: dict[str, Any]) -> None:
    """Add to the generated schemas the rules the models check beyond the members' types."""
    for name, members in {**_union_models(), **_EXACTLY_ONE}.items():
        schema = schemas.get(name)
        if schema is None:
            continue
        schema["oneOf"] = [
            {"required": [member], "properties": {member: {"not": {"type": "null"}}}}
            for member in members
        ]
    gateway = schemas.get("VirtualGatewaySpec")
    if gateway is not None:
        gateway["properties"]["listeners"]["minItems"] = 1


def _schema_ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(model=name)}


def _components() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (model, "validation") for model in SPEC_TYPES.values()
    ]
    _, top = models_json_schema(models, ref_template=_REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["TagList"] = {
        "type": "array",
        "maxItems": 50,
        "items": {
            "type": "object",
            "required": ["key", "value"],
            "properties": {
                "key": {"type": "string", "minLength": 1, "maxLength": 128},
                "value": {"type": "string", "maxLength": 256},
            },
            "additionalProperties": False,
        },
    }
    _rules(schemas)
    schemas["Error"] = {"type": "object", "properties": {"message": {"type": "string"}}}
    schemas["ResourceMetadata"] = {
        "type": "object",
        "properties": {
            "arn": {"type": "string"},
            "uid": {"type": "string"},
            "version": {"type": "integer"},
            "createdAt": {"type": "number"},
            "lastUpdatedAt": {"type": "number"},
            "meshOwner": {"type": "string"},
            "resourceOwner": {"type": "string"},
        },
    }
    for kind, model in SPEC_TYPES.items():
        names = {"meshName": {"type": "string"}}
        if kind is not Kind.MESH:
            names[kind.name_field] = {"type": "string"}
        if kind.parent is not None:
            names[kind.parent.name_field] = {"type": "string"}
        schemas[f"{kind.title}Data"] = {
            "type": "object",
            "properties": {
                **names,
                "metadata": _schema_ref("ResourceMetadata"),
                "spec": _schema_ref(model.__name__),
                "status": {"type": "object", "properties": {"status": {"type": "string"}}},
            },
        }
    return schemas


NAME_PATTERN = r"^(?!\.\.?$)[^/\x00-\x1f\x7f]{1,255}$"
"""A resource name: 1-255 characters, no '/' or control character, not '.' or '..'."""
CLIENT_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,36}$"


def _name_schema() -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NAME_PATTERN}


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for segment in op.segments:
        if segment.startswith("{"):
            params.append(
                {"name": segment[1:-1], "in": "path", "required": True, "schema": _name_schema()}
            )
    if op.kind is not None and op.kind is not Kind.MESH:
        params.append(
            {
                "name": "meshOwner",
                "in": "query",
                "schema": {"type": "string", "pattern": r"^\d{12}$"},
            }
        )
    if op.action in (Action.LIST, Action.LIST_TAGS):
        maximum = 50 if op.action is Action.LIST_TAGS else 100
        params += [
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": maximum},
            },
            {"name": "nextToken", "in": "query", "schema": {"type": "string", "minLength": 1}},
        ]
    if op.action in (Action.TAG, Action.UNTAG, Action.LIST_TAGS):
        params.append(
            {
                "name": "resourceArn",
                "in": "query",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "pattern": "^arn:aws:appmesh:"},
            }
        )
    return params


def _body(op: Operation) -> dict[str, Any] | None:
    kind = op.kind
    props: dict[str, Any]
    required: list[str]
    if op.action is Action.TAG:
        props, required = {"tags": _schema_ref("TagList")}, ["tags"]
    elif op.action is Action.UNTAG:
        props = {
            "tagKeys": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 128},
            }
        }
        required = ["tagKeys"]
    elif kind is not None and op.action in (Action.CREATE, Action.UPDATE):
        spec = _schema_ref(SPEC_TYPES[kind].__name__)
        props = {"spec": spec, "clientToken": {"type": "string", "pattern": CLIENT_TOKEN_PATTERN}}
        required = [] if kind is Kind.MESH else ["spec"]
        if op.action is Action.CREATE:
            name = "meshName" if kind is Kind.MESH else kind.name_field
            props[name] = _name_schema()
            props["tags"] = _schema_ref("TagList")
            required.append(name)
    else:
        return None
    schema = {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _response(op: Operation) -> dict[str, Any]:
    kind = op.kind
    if kind is None:
        schema: dict[str, Any] = {"type": "object"}
    elif op.action is Action.LIST:
        schema = {
            "type": "object",
            "properties": {
                kind.plural: {"type": "array", "items": {"type": "object"}},
                "nextToken": {"type": ["string", "null"]},
            },
        }
    else:
        schema = _schema_ref(f"{kind.title}Data")
    return {"description": "Success", "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {
            "operationId": op.name,
            "parameters": _parameters(op),
            "responses": {
                "200": _response(op),
                **{
                    code: {
                        "description": text,
                        "content": {"application/json": {"schema": _schema_ref("Error")}},
                    }
                    for code, text in _ERRORS.items()
                },
            },
        }
        body = _body(op)
        if body is not None:
            entry["requestBody"] = body
        paths.setdefault(op.template, {})[op.method.lower()] = entry
    for path, methods in _own_paths().items():
        paths.setdefault(path, {}).update(methods)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "meshplane: AWS App Mesh API (2019-01-25), Cloud Map and meshplane's own",
            "version": __version__,
            "description": "The App Mesh REST API served by meshplane, wire-compatible "
            "with botocore's appmesh client.",
        },
        "paths": paths,
        "components": {"schemas": _components(), "securitySchemes": _SECURITY_SCHEMES},
        "security": [{"bearer": []}, {"sigv4": []}],
    }


def _json(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"content": {media: {"schema": schema}}}


def _object(
    properties: dict[str, Any], required: tuple[str, ...] = (), *, closed: bool = True
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def _own(
    operation_id: str,
    summary: str,
    *,
    body: dict[str, Any] | None = None,
    query: dict[str, dict[str, Any]] | None = None,
    path: tuple[str, ...] = (),
    public: bool = False,
    media: str = "application/json",
    error_media: str = "application/json",
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _name_schema()} for name in path
    ]
    parameters += [
        {"name": name, "in": "query", "schema": schema} for name, schema in (query or {}).items()
    ]
    error = {"$ref": _REF.format(model="Error")}
    codes = ("400", "404", "405", "500", "503") if public else (*_ERRORS, "405")
    entry: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "200": {"description": "Success", **_json({"type": "object"}, media)}
            if media == "application/json"
            else {"description": "Success", "content": {media: {"schema": {"type": "string"}}}},
            **{
                code: {
                    "description": _ERRORS.get(code, "Method Not Allowed"),
                    **_json(error, error_media),
                }
                for code in codes
            },
        },
    }
    if body is not None:
        entry["requestBody"] = {"required": True, **_json(body)}
    if public:
        entry["security"] = []
    return entry


def _own_paths() -> dict[str, dict[str, Any]]:
    """meshplane's own endpoints, /healthz, /metrics, /openapi.json and Cloud Map."""
    v1 = "/meshplane/v1"
    documents = _object(
        {
            "documents": {
                "type": "array",
                "items": _object(
                    {"source": {"type": "string"}, "text": {"type": "string"}}, ("text",)
                ),
            },
            "dryRun": {"type": "boolean"},
        },
        ("documents",),
    )
    mesh_query = {"mesh": _name_schema()}
    mesh = {"name": "mesh", "in": "query", "required": True, "schema": _name_schema()}
    console_window = {
        "name": "window",
        "in": "query",
        "description": "Seconds of signals (1 to the telemetry window; default 60).",
        "schema": {"type": "number", "minimum": 1},
    }
    token_ttl = {"type": "integer", "minimum": 1, "maximum": 366 * 86400}
    return {
        "/healthz": {"get": _own("Health", "Liveness and the store revision", public=True)},
        "/openapi.json": {"get": _own("OpenApi", "This document", public=True)},
        "/readyz": {
            "get": _own(
                "Ready", "Whether this replica can serve (503 with the reason if not)", public=True
            )
        },
        f"{v1}/fleet": {
            "get": _own("Fleet", "This replica, its store, its lag and the duty lease")
        },
        "/metrics": {
            "get": _own(
                "Metrics",
                "Prometheus metrics (the viewer role on every mesh)",
                media="text/plain",
            )
        },
        "/": {
            "post": {
                **_own(
                    "CloudMap",
                    "The AWS Cloud Map API (servicediscovery 2017-03-14, JSON 1.1): the "
                    "operation is named by the X-Amz-Target header",
                    media="application/x-amz-json-1.1",
                    error_media="application/x-amz-json-1.1",
                ),
                "parameters": [
                    {
                        "name": "X-Amz-Target",
                        "in": "header",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "pattern": "^Route53AutoNaming_v20170314\\.[A-Za-z]+$",
                        },
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        media: {"schema": {"type": "object"}}
                        for media in ("application/x-amz-json-1.1", "application/json")
                    },
                },
            }
        },
        f"{v1}/apply": {
            "post": _own("ApplyManifests", "Apply Kubernetes manifests", body=documents)
        },
        f"{v1}/delete": {
            "post": _own("DeleteManifests", "Delete what manifests created", body=documents)
        },
        f"{v1}/namespaces": {"get": _own("ListNamespaces", "Namespaces and their labels")},
        f"{v1}/namespaces/{{name}}": {
            "put": _own(
                "LabelNamespace",
                "Set (a string) or remove (null) namespace labels",
                path=("name",),
                body=_object(
                    {
                        "labels": {
                            "type": "object",
                            "additionalProperties": {"type": ["string", "null"]},
                        }
                    },
                    ("labels",),
                ),
            )
        },
        f"{v1}/manifests": {"get": _own("ListManifests", "The applied manifests")},
        f"{v1}/proxies": {
            "get": _own(
                "ListProxies",
                "Connected proxies and their xDS state",
                query={"mesh": _name_schema(), "name": _name_schema()},
            )
        },
        f"{v1}/tokens": {
            "get": _own("ListApiTokens", "API tokens (without secrets)", query=mesh_query),
            "post": _own(
                "CreateApiToken",
                "A new API token (its secret is shown once)",
                body=_object(
                    {
                        "mesh": {"type": "string", "minLength": 1},
                        "role": {"enum": ["admin", "editor", "viewer"]},
                        "description": {"type": "string"},
                    },
                    ("mesh", "role"),
                ),
            ),
        },
        f"{v1}/tokens/{{id}}": {
            "delete": _own("RevokeApiToken", "Revoke an API token", path=("id",))
        },
        f"{v1}/audit": {
            "get": _own(
                "ListAuditEntries",
                "Who changed what, oldest first",
                query={
                    **mesh_query,
                    "since": {"type": "number", "minimum": -1, "maximum": 1e11},
                    "after": {"type": "integer", "minimum": 0, "maximum": 2**62},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
            )
        },
        f"{v1}/proxy-tokens": {
            "post": _own(
                "CreateProxyToken",
                "A proxy token scoped to one virtual node or gateway",
                body=_object(
                    {"resource": {"type": "string", "minLength": 1}, "ttlSeconds": token_ttl},
                    ("resource",),
                ),
            )
        },
        f"{v1}/proxy-tokens/revoke": {
            "post": _own(
                "RevokeProxyTokens",
                "Revoke one proxy token, or every token of a workload",
                body=_object(
                    {
                        "resource": {"type": "string", "minLength": 1},
                        "tokenId": {"type": "string", "minLength": 1},
                    },
                    ("resource",),
                ),
            )
        },
        f"{v1}/telemetry": {
            "get": {
                **_own(
                    "MeshTelemetry",
                    "A mesh's golden signals over the last seconds",
                ),
                "parameters": [
                    {"name": "mesh", "in": "query", "required": True, "schema": _name_schema()},
                    {"name": "seconds", "in": "query", "schema": {"type": "number", "minimum": 1}},
                ],
            }
        },
        f"{v1}/tap": {
            "get": {
                **_own(
                    "Tap",
                    "Matching requests as they happen, one JSON object a line (never-ending)",
                    media="application/x-ndjson",
                ),
                "parameters": [
                    {"name": "mesh", "in": "query", "required": True, "schema": _name_schema()},
                    {"name": "node", "in": "query", "schema": {"type": "string", "minLength": 1}},
                    {
                        "name": "service",
                        "in": "query",
                        "schema": {"type": "string", "minLength": 1},
                    },
                    {
                        "name": "pathPrefix",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^/", "maxLength": 1024},
                    },
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[1-5]([0-9]{2}|xx)$"},
                    },
                ],
            }
        },
        f"{v1}/dns/lookup": {
            "get": {
                **_own("DnsLookup", "What the mesh DNS server answers for a name, and why"),
                "parameters": [
                    {
                        "name": "name",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 253},
                    },
                    {"name": "type", "in": "query", "schema": {"type": "string"}},
                ],
            }
        },
        f"{v1}/console/graph": {
            "get": {
                **_own("ConsoleGraph", "The console's service graph of a mesh"),
                "parameters": [mesh, console_window],
            }
        },
        f"{v1}/console/resources": {
            "get": {
                **_own("ConsoleResources", "The console's resource list of a mesh"),
                "parameters": [mesh],
            }
        },
        f"{v1}/console/events": {
            "get": {
                **_own("ConsoleEvents", "Server-sent events of a mesh", media="text/event-stream"),
                "parameters": [mesh, console_window],
            }
        },
        "/console": {
            "get": _own(
                "Console", "The web console", media="text/html", error_media="*/*", public=True
            )
        },
        "/console/": {
            "get": _own(
                "ConsoleSlash", "The web console", media="text/html", error_media="*/*", public=True
            )
        },
        "/console/assets/{name}": {
            "get": {
                **_own(
                    "ConsoleAsset",
                    "A file of the web console",
                    media="*/*",
                    error_media="*/*",
                    public=True,
                ),
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            }
        },
        f"{v1}/meshes/{{mesh}}/ca": {
            "get": _own("DescribeMeshCa", "A mesh's trust bundle", path=("mesh",))
        },
        f"{v1}/meshes/{{mesh}}/ca/rotate": {
            "post": _own("RotateMeshCa", "Start a rotation of the mesh's CA", path=("mesh",))
        },
    }


_SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token, <id>.<secret> ('meshplane token create'). Not needed "
        "by a server bound to loopback only without --require-auth.",
    },
    "sigv4": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "AWS Signature Version 4 (boto3, the AWS CLI), signed with an API "
        "token's id as access key id and its secret as secret access key.",
    },
}
