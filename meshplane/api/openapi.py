"""The OpenAPI 3.1 document of the App Mesh API as meshplane serves it (``/openapi.json``).

Paths come from the operation table (``meshplane.api.routing``); spec schemas come from the
pydantic models, so the document can never drift from what the server validates.  Used by
clients, and by the fuzz tests (schemathesis) to generate requests.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from meshplane import __version__
from meshplane.model import SPEC_TYPES
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


def _name_schema() -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": 255}


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
            {"name": "nextToken", "in": "query", "schema": {"type": "string"}},
        ]
    if op.action in (Action.TAG, Action.UNTAG, Action.LIST_TAGS):
        params.append(
            {"name": "resourceArn", "in": "query", "required": True, "schema": {"type": "string"}}
        )
    return params


def _body(op: Operation) -> dict[str, Any] | None:
    kind = op.kind
    props: dict[str, Any]
    required: list[str]
    if op.action is Action.TAG:
        props, required = {"tags": _schema_ref("TagList")}, ["tags"]
    elif op.action is Action.UNTAG:
        props = {"tagKeys": {"type": "array", "items": {"type": "string"}}}
        required = ["tagKeys"]
    elif kind is not None and op.action in (Action.CREATE, Action.UPDATE):
        spec = _schema_ref(SPEC_TYPES[kind].__name__)
        props = {"spec": spec, "clientToken": {"type": "string", "maxLength": 36}}
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
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "meshplane: AWS App Mesh API (2019-01-25)",
            "version": __version__,
            "description": "The App Mesh REST API served by meshplane, wire-compatible "
            "with botocore's appmesh client.",
        },
        "paths": paths,
        "components": {"schemas": _components(), "securitySchemes": _SECURITY_SCHEMES},
        "security": [{"bearer": []}, {"sigv4": []}],
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
