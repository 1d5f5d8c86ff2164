"""Validation of AWS Cloud Map request members, with Cloud Map's limits and error type.

Each function checks one member of a decoded JSON 1.1 request body and returns it in the form
the service uses, or raises ``InvalidInputError`` naming the member and the rule.  The limits
and patterns are those of botocore's ``servicediscovery`` 2017-03-14 model (a test compares
them) and of the RegisterInstance documentation (30 custom attributes, 5,000 characters).
Used by the Cloud Map operation groups (``meshplane.service.cloudmap_*``) and
:mod:`meshplane.service.cloudmap`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from meshplane.errors import InvalidInputError
from meshplane.store.records import Tag

NAMESPACE_HTTP = re.compile(r"^(?!arn:)[!-~]{1,1024}$")
NAMESPACE_PRIVATE = re.compile(r"^(?!arn:)[!-~]{1,253}$")
NAMESPACE_PUBLIC = re.compile(
    r"^([a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?$"
)
NAMESPACE_NAME = re.compile(r"^[!-~]{1,1024}$")
SERVICE_NAME = re.compile(
    r"((?=^.{1,127}$)^([a-zA-Z0-9_][a-zA-Z0-9-_]{0,61}[a-zA-Z0-9_]|[a-zA-Z0-9])"
    r"(\.([a-zA-Z0-9_][a-zA-Z0-9-_]{0,61}[a-zA-Z0-9_]|[a-zA-Z0-9]))*$)|(^\.$)"
)
INSTANCE_ID = re.compile(r"^[0-9a-zA-Z_/:.@-]+$")
ATTR_KEY = re.compile(r"^[a-zA-Z0-9!-~]+$")
ATTR_VALUE = re.compile(r"^([a-zA-Z0-9!-~][ \ta-zA-Z0-9!-~]*){0,1}[a-zA-Z0-9!-~]{0,1}$")

MAX_CUSTOM_ATTRIBUTES = 30
MAX_ATTRIBUTES_CHARS = 5000
MAX_TAGS = 200
MAX_FILTER_VALUES = 10
RESERVED_ATTRIBUTES = frozenset(
    {
        "AWS_ALIAS_DNS_NAME",
        "AWS_EC2_INSTANCE_ID",
        "AWS_INIT_HEALTH_STATUS",
        "AWS_INSTANCE_CNAME",
        "AWS_INSTANCE_IPV4",
        "AWS_INSTANCE_IPV6",
        "AWS_INSTANCE_PORT",
    }
)


def body(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError("the request body must be a JSON object")
    return value


def string(
    request: Mapping[str, Any],
    field: str,
    *,
    required: bool = False,
    max_len: int | None = None,
    min_len: int = 0,
    pattern: re.Pattern[str] | None = None,
    choices: Sequence[str] = (),
) -> str | None:
    value = request.get(field)
    if value is None:
        if required:
            raise InvalidInputError(f"{field}: required")
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{field}: must be a string")
    if len(value) < min_len:
        raise InvalidInputError(f"{field}: at least {min_len} characters")
    if max_len is not None and len(value) > max_len:
        raise InvalidInputError(f"{field}: at most {max_len} characters (got {len(value)})")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidInputError(f"{field}: {value[:80]!r} does not match {pattern.pattern}")
    if choices and value not in choices:
        raise InvalidInputError(f"{field}: {value[:80]!r} is not one of {', '.join(choices)}")
    return value


def required(request: Mapping[str, Any], field: str, **rules: Any) -> str:
    value = string(request, field, required=True, **rules)
    assert value is not None
    return value


def integer(
    request: Mapping[str, Any], field: str, *, minimum: int, maximum: int, default: int
) -> int:
    value = request.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{field}: must be an integer")
    if not minimum <= value <= maximum:
        raise InvalidInputError(f"{field}: must be between {minimum} and {maximum}")
    return value


def struct(request: Mapping[str, Any], field: str) -> dict[str, Any] | None:
    value = request.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{field}: must be an object")
    return value


def description(request: Mapping[str, Any], field: str = "Description") -> str | None:
    return string(request, field, max_len=1024)


def request_id(request: Mapping[str, Any], field: str = "CreatorRequestId") -> str | None:
    return string(request, field, max_len=64)


def resource_id(request: Mapping[str, Any], field: str) -> str:
    return required(request, field, max_len=255)


def tags(request: Mapping[str, Any], field: str = "Tags") -> list[Tag]:
    value = request.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInputError(f"{field}: must be a list")
    if len(value) > MAX_TAGS:
        raise InvalidInputError(f"{field}: at most {MAX_TAGS} tags")
    found: dict[str, Tag] = {}
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            raise InvalidInputError(f"{where}: must be an object with Key and Value")
        key = required(item, "Key", min_len=1, max_len=128)
        text = string(item, "Value", required=True, max_len=256)
        if key.lower().startswith("aws:"):
            raise InvalidInputError(f"{where}.Key: the 'aws:' prefix is reserved")
        found[key] = Tag(key, text or "")
    return list(found.values())


def tag_keys(request: Mapping[str, Any], field: str = "TagKeys") -> list[str]:
    value = request.get(field)
    if not isinstance(value, list):
        raise InvalidInputError(f"{field}: required, a list of tag keys")
    if len(value) > MAX_TAGS:
        raise InvalidInputError(f"{field}: at most {MAX_TAGS} keys")
    for index, key in enumerate(value):
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise InvalidInputError(f"{field}[{index}]: a string of 1 to 128 characters")
    return list(value)


def attribute_map(
    request: Mapping[str, Any], field: str, *, required_map: bool = False
) -> dict[str, str]:
    value = request.get(field)
    if value is None:
        if required_map:
            raise InvalidInputError(f"{field}: required")
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{field}: must be a map of strings")
    for key, text in value.items():
        if not isinstance(key, str) or len(key) > 255 or not ATTR_KEY.fullmatch(key):
            raise InvalidInputError(
                f"{field}: key {str(key)[:80]!r} must be 1-255 printable ASCII characters"
            )
        if not isinstance(text, str) or len(text) > 1024 or not ATTR_VALUE.fullmatch(text):
            raise InvalidInputError(
                f"{field}.{key}: the value must be a string of at most 1024 printable characters"
            )
    return dict(value)


def instance_attributes(request: Mapping[str, Any]) -> dict[str, str]:
    """RegisterInstance ``Attributes``: Cloud Map's limits and the reserved keys' forms."""
    found = attribute_map(request, "Attributes", required_map=True)
    custom = [k for k in found if k not in RESERVED_ATTRIBUTES]
    if len(custom) > MAX_CUSTOM_ATTRIBUTES:
        raise InvalidInputError(
            f"Attributes: at most {MAX_CUSTOM_ATTRIBUTES} custom attributes (got {len(custom)})"
        )
    total = sum(len(k) + len(v) for k, v in found.items())
    if total > MAX_ATTRIBUTES_CHARS:
        raise InvalidInputError(
            f"Attributes: keys and values add up to {total} characters "
            f"(at most {MAX_ATTRIBUTES_CHARS})"
        )
    ipv4 = found.get("AWS_INSTANCE_IPV4")
    if ipv4 is not None:
        try:
            ipaddress.IPv4Address(ipv4)
        except ValueError:
            raise InvalidInputError(
                f"Attributes.AWS_INSTANCE_IPV4: {ipv4[:80]!r} is not an IPv4 address"
            ) from None
    ipv6 = found.get("AWS_INSTANCE_IPV6")
    if ipv6 is not None:
        try:
            ipaddress.IPv6Address(ipv6)
        except ValueError:
            raise InvalidInputError(
                f"Attributes.AWS_INSTANCE_IPV6: {ipv6[:80]!r} is not an IPv6 address"
            ) from None
    port = found.get("AWS_INSTANCE_PORT")
    if port is not None and (not port.isdigit() or not 1 <= int(port) <= 65535):
        raise InvalidInputError(
            f"Attributes.AWS_INSTANCE_PORT: {port[:80]!r} is not a port (1-65535)"
        )
    init = found.get("AWS_INIT_HEALTH_STATUS")
    if init is not None and init not in ("HEALTHY", "UNHEALTHY"):
        raise InvalidInputError(
            f"Attributes.AWS_INIT_HEALTH_STATUS: {init[:80]!r} is not HEALTHY or UNHEALTHY"
        )
    return found


def dns_records(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise InvalidInputError(f"{field}: required, a non-empty list of DNS records")
    records = []
    types = set()
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            raise InvalidInputError(f"{where}: must be an object with Type and TTL")
        kind = required(item, "Type", choices=("SRV", "A", "AAAA", "CNAME"))
        ttl = item.get("TTL")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 2147483647:
            raise InvalidInputError(f"{where}.TTL: required, an integer from 0 to 2147483647")
        if kind in types:
            raise InvalidInputError(f"{where}.Type: {kind} records are listed twice")
        types.add(kind)
        records.append({"Type": kind, "TTL": ttl})
    if "CNAME" in types and len(types) > 1:
        raise InvalidInputError(f"{field}: a CNAME record cannot be combined with other types")
    return records


def dns_config(request: Mapping[str, Any]) -> dict[str, Any] | None:
    config = struct(request, "DnsConfig")
    if config is None:
        return None
    policy = string(config, "RoutingPolicy", choices=("MULTIVALUE", "WEIGHTED")) or "MULTIVALUE"
    records = dns_records(config.get("DnsRecords"), "DnsConfig.DnsRecords")
    if policy == "MULTIVALUE" and any(r["Type"] == "CNAME" for r in records):
        raise InvalidInputError("DnsConfig: CNAME records need the WEIGHTED routing policy")
    out: dict[str, Any] = {"RoutingPolicy": policy, "DnsRecords": records}
    namespace_id = string(config, "NamespaceId", max_len=64)
    if namespace_id is not None:
        out["NamespaceId"] = namespace_id
    return out


def health_check_config(request: Mapping[str, Any], field: str) -> dict[str, Any] | None:
    config = struct(request, field)
    if config is None:
        return None
    kind = required(config, "Type", choices=("HTTP", "HTTPS", "TCP"))
    out: dict[str, Any] = {"Type": kind}
    path = string(config, "ResourcePath", max_len=255)
    if path is not None:
        if kind == "TCP":
            raise InvalidInputError(f"{field}.ResourcePath: not allowed for TCP health checks")
        out["ResourcePath"] = path
    elif kind != "TCP":
        out["ResourcePath"] = "/"
    out["FailureThreshold"] = integer(config, "FailureThreshold", minimum=1, maximum=10, default=1)
    return out


def custom_health_config(request: Mapping[str, Any]) -> dict[str, Any] | None:
    config = struct(request, "HealthCheckCustomConfig")
    if config is None:
        return None
    integer(config, "FailureThreshold", minimum=1, maximum=10, default=1)
    return {"FailureThreshold": 1}  # "no longer supported and is always set to 1"


def soa_ttl(properties: Mapping[str, Any] | None, field: str, *, default: int | None) -> int | None:
    if properties is None:
        return default
    dns = struct(properties, "DnsProperties")
    if dns is None:
        raise InvalidInputError(f"{field}.DnsProperties: required")
    soa = struct(dns, "SOA")
    if soa is None:
        raise InvalidInputError(f"{field}.DnsProperties.SOA: required")
    ttl = soa.get("TTL")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 2147483647:
        raise InvalidInputError(
            f"{field}.DnsProperties.SOA.TTL: required, an integer from 0 to 2147483647"
        )
    return ttl


def filters(request: Mapping[str, Any], names: Sequence[str]) -> list[tuple[str, str, list[str]]]:
    """``Filters``: (name, condition, values) with Cloud Map's names and conditions."""
    value = request.get("Filters")
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInputError("Filters: must be a list")
    out = []
    for index, item in enumerate(value):
        where = f"Filters[{index}]"
        if not isinstance(item, dict):
            raise InvalidInputError(f"{where}: must be an object with Name and Values")
        name = required(item, "Name", choices=names)
        condition = string(item, "Condition", choices=("EQ", "IN", "BETWEEN", "BEGINS_WITH"))
        values = item.get("Values")
        if (
            not isinstance(values, list)
            or not values
            or len(values) > MAX_FILTER_VALUES
            or not all(isinstance(v, str) and len(v) <= 255 for v in values)
        ):
            raise InvalidInputError(
                f"{where}.Values: 1 to {MAX_FILTER_VALUES} strings of at most 255 characters"
            )
        condition = condition or "EQ"
        if condition == "EQ" and len(values) != 1:
            raise InvalidInputError(f"{where}.Values: EQ takes exactly one value")
        if condition == "BETWEEN" and (name != "UPDATE_DATE" or len(values) != 2):
            raise InvalidInputError(f"{where}.Condition: BETWEEN needs UPDATE_DATE and two values")
        out.append((name, condition, [str(v) for v in values]))
    return out


def matches(condition: str, values: Sequence[str], actual: str) -> bool:
    if condition == "EQ":
        return actual == values[0]
    if condition == "IN":
        return actual in values
    if condition == "BEGINS_WITH":
        return any(actual.startswith(v) for v in values)
    if condition == "BETWEEN":
        try:
            low, high = float(values[0]), float(values[1])
            return low <= float(actual) <= high
        except ValueError:
            return False
    return False


def encode_token(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode()


def next_token(request: Mapping[str, Any]) -> str | None:
    value = string(request, "NextToken", max_len=4096)
    if value is None:
        return None
    try:
        return base64.urlsafe_b64decode(value.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInputError("NextToken: not a token this API returned") from None
