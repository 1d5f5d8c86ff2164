"""Checks of the request members that are not part of a spec: names, tags, tokens, paging.

Called by ``meshplane.service.resources`` before anything is read or written; every failure
is a BadRequestError (or TooManyTagsError) naming the member and the rule.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from meshplane.errors import BadRequestError, TooManyTagsError
from meshplane.model.common import lone_surrogate
from meshplane.model.kinds import Kind
from meshplane.model.tracing import check_tracing_tags
from meshplane.store.records import Tag

MAX_TAGS = 50
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_ACCOUNT = re.compile(r"^\d{12}$")


def resource_name(value: Any, field: str) -> str:
    """A ResourceName: a string of 1..255 characters (no '/' or control characters)."""
    if not isinstance(value, str):
        raise BadRequestError(f"{field}: is required and must be a string")
    if not 1 <= len(value) <= 255:
        raise BadRequestError(f"{field}: must be 1 to 255 characters long (got {len(value)})")
    if "/" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise BadRequestError(f"{field}: must not contain '/' or control characters")
    if value in (".", ".."):
        raise BadRequestError(f"{field}: must not be '.' or '..' (no URL can name it)")
    if lone_surrogate(value) is not None:
        raise BadRequestError(f"{field}: must be Unicode text (it holds a lone UTF-16 surrogate)")
    return value


def service_name(value: Any, field: str) -> str:
    """A virtual service name: like a resource name (App Mesh sets no length limit)."""
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"{field}: is required and must be a non-empty string")
    if len(value) > 255:
        raise BadRequestError(f"{field}: must be at most 255 characters long (got {len(value)})")
    return resource_name(value, field)


def client_token(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise BadRequestError(
            "clientToken: must be up to 36 letters, numbers, hyphens and underscores"
        )
    return value


def account_id(value: Any, field: str = "meshOwner") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ACCOUNT.match(value):
        raise BadRequestError(f"{field}: must be a 12-digit account ID")
    return value


def tags(value: Any, field: str = "tags") -> list[Tag]:
    """A TagList: at most 50 {key 1..128, value 0..256} entries with distinct keys."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequestError(f"{field}: must be a list of {{key, value}} objects")
    if len(value) > MAX_TAGS:
        raise TooManyTagsError(f"{field}: at most {MAX_TAGS} tags per resource (got {len(value)})")
    result: dict[str, Tag] = {}
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise BadRequestError(f"{where}: must be an object with key and value")
        unknown = sorted(set(item) - {"key", "value"})
        if unknown:
            raise BadRequestError(f"{where}.{unknown[0]}: unknown member")
        key, val = item.get("key"), item.get("value")
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise BadRequestError(f"{where}.key: is required, 1 to 128 characters")
        if not isinstance(val, str) or len(val) > 256:
            raise BadRequestError(f"{where}.value: is required, 0 to 256 characters")
        for member, text in (("key", key), ("value", val)):
            if lone_surrogate(text) is not None:
                raise BadRequestError(f"{where}.{member}: must be Unicode text (a lone surrogate)")
        result[key] = Tag(key, val)
    return list(result.values())


def mesh_tags(kind: Kind, tags: list[Tag]) -> list[Tag]:
    """``tags`` if they may go on a resource of ``kind``: a mesh's ``meshplane.io/tracing*``
    tags must hold values the data plane can use (BadRequestError naming the tag and rule)."""
    if kind is Kind.MESH:
        try:
            check_tracing_tags({t.key: t.value for t in tags})
        except ValueError as error:
            raise BadRequestError(f"tags: {error}") from None
    return tags


def tag_keys(value: Any, field: str = "tagKeys") -> list[str]:
    if not isinstance(value, list):
        raise BadRequestError(f"{field}: is required and must be a list of strings")
    for i, key in enumerate(value):
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise BadRequestError(f"{field}[{i}]: must be 1 to 128 characters")
    return list(value)


def limit(value: Any, maximum: int, field: str = "limit") -> int:
    if value is None:
        return maximum
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequestError(f"{field}: must be a whole number from 1 to {maximum}") from None
    if not 1 <= number <= maximum:
        raise BadRequestError(f"{field}: must be from 1 to {maximum} (got {number})")
    return number


def encode_token(position: str) -> str:
    raw = json.dumps({"after": position}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(value: Any, field: str = "nextToken") -> str | None:
    if value is None:
        return None
    if value == "":
        raise BadRequestError(f"{field}: must not be empty (leave it out for the first page)")
    if not isinstance(value, str):
        raise BadRequestError(f"{field}: is not a token this server issued")
    try:
        padded = value + "=" * (-len(value) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = decoded["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise BadRequestError(f"{field}: is not a token this server issued") from None
    if not isinstance(position, str):
        raise BadRequestError(f"{field}: is not a token this server issued")
    return position
