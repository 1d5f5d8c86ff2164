"""Building blocks shared by every App Mesh spec model.

The frozen, unknown-member-rejecting base classes (``SpecModel``, ``UnionModel``), the
``RuleError`` that semantic checks raise, the scalar types with the botocore limits of the
2019-01-25 model, the enum ``Literal`` aliases, and the small shapes used by several kinds
(``Duration``, ``PortMapping``, timeouts, connection pools, health checks, logging).

Used by the per-kind modules of ``meshplane.model`` and, through its re-exports, by the
translation layer that reads the typed specs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    model_validator,
)

INT32_MAX = 2**31 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class RuleError(ValueError):
    """A semantic rule failed; ``problems`` holds (field path relative to the model, message)."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in self.problems))


class Problems:
    """Collects rule violations of one model and raises them together as a ``RuleError``."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append((field, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise RuleError(self.items)


class SpecModel(BaseModel):
    """Base of every spec shape: immutable, JSON member names, unknown members rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    def set_members(self) -> list[str]:
        """The JSON names of the members that are set (not None), in declaration order."""
        return [
            info.alias or name
            for name, info in type(self).model_fields.items()
            if getattr(self, name) is not None
        ]


class UnionModel(SpecModel):
    """A botocore ``"union": true`` shape: exactly one member must be set."""

    @model_validator(mode="after")
    def _exactly_one_member(self) -> Self:
        chosen = self.set_members()
        if len(chosen) != 1:
            names = ", ".join(f.alias or n for n, f in type(self).model_fields.items())
            got = ", ".join(chosen) if chosen else "none"
            raise RuleError([("", f"exactly one of {names} must be set (got {got})")])
        return self


def _null_is(default: object) -> BeforeValidator:
    """Treat an explicit JSON null as the member's default."""
    return BeforeValidator(lambda v: default if v is None else v)


def lone_surrogate(text: str) -> int | None:
    """The position of the first lone UTF-16 surrogate in ``text`` (JSON's ``\\ud800``
    escapes make them; no UTF-8 encoder, database or proxy takes them), or None."""
    found = _SURROGATE.search(text)
    return found.start() if found is not None else None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unicode(value: str) -> str:
    position = lone_surrogate(value)
    if position is not None:
        raise RuleError(
            [("", f"must be Unicode text (a lone UTF-16 surrogate at character {position})")]
        )
    return value


UnicodeText = AfterValidator(_unicode)
"""Every string of the model is real Unicode text."""

# --- scalars (names follow the botocore shapes) -------------------------------------------

Boolean = Annotated[bool, Strict()]
BooleanDefaultTrue = Annotated[bool, Strict(), _null_is(True)]
String = Annotated[str, Strict(), UnicodeText]
Arn = String
Hostname = String
ServiceName = String
SdsSecretName = String
QueryParameterName = String
Long = Annotated[int, Strict(), Field(ge=INT64_MIN, le=INT64_MAX)]
PortNumber = Annotated[int, Strict(), Field(ge=1, le=65535)]
ListenerPort = PortNumber
PercentInt = Annotated[int, Strict(), Field(ge=0, le=100)]
MaxConnections = Annotated[int, Strict(), Field(ge=1, le=INT32_MAX)]
MaxPendingRequests = MaxConnections
MaxRequests = MaxConnections
HealthCheckThreshold = Annotated[int, Strict(), Field(ge=2, le=10)]
HealthCheckIntervalMillis = Annotated[int, Strict(), Field(ge=5000, le=300000)]
HealthCheckTimeoutMillis = Annotated[int, Strict(), Field(ge=2000, le=60000)]
DurationValue = Annotated[int, Strict(), Field(ge=0, le=INT64_MAX)]
Priority = Annotated[int, Strict(), Field(ge=0, le=1000)]
FilePath = Annotated[str, Strict(), Field(min_length=1, max_length=255), UnicodeText]
ResourceName = FilePath
HeaderMatch = FilePath
HeaderName = Annotated[str, Strict(), Field(min_length=1, max_length=50), UnicodeText]
JsonKey = Annotated[str, Strict(), Field(min_length=1, max_length=100), UnicodeText]
JsonValue = JsonKey
TextFormat = Annotated[str, Strict(), Field(min_length=1, max_length=1000), UnicodeText]

# --- enums ---------------------------------------------------------------------------------

PortProtocol = Literal["http", "tcp", "http2", "grpc"]
Protocol = PortProtocol
VirtualGatewayPortProtocol = Literal["http", "http2", "grpc"]
GatewayProtocol = VirtualGatewayPortProtocol
DurationUnit = Literal["s", "ms"]
ListenerTlsMode = Literal["STRICT", "PERMISSIVE", "DISABLED"]
TlsMode = ListenerTlsMode
IpPreference = Literal["IPv6_PREFERRED", "IPv4_PREFERRED", "IPv4_ONLY", "IPv6_ONLY"]


# --- shared shapes -------------------------------------------------------------------------


class Duration(SpecModel):
    """A length of time; the model marks both members optional, App Mesh needs both."""

    unit: DurationUnit | None = None
    value: DurationValue | None = None

    @model_validator(mode="after")
    def _complete(self) -> Self:
        problems = Problems()
        if self.unit is None:
            problems.add("unit", "is required")
        if self.value is None:
            problems.add("value", "is required")
        problems.raise_if_any()
        return self

    @property
    def seconds(self) -> float:
        """The duration in seconds."""
        value = self.value or 0
        return value / 1000 if self.unit == "ms" else float(value)


class PortMapping(SpecModel):
    port: PortNumber
    protocol: PortProtocol


class VirtualGatewayPortMapping(SpecModel):
    port: PortNumber
    protocol: VirtualGatewayPortProtocol


class HttpTimeout(SpecModel):
    idle: Duration | None = None
    perRequest: Duration | None = None


GrpcTimeout = HttpTimeout


class TcpTimeout(SpecModel):
    idle: Duration | None = None


class VirtualNodeTcpConnectionPool(SpecModel):
    maxConnections: MaxConnections


class VirtualNodeHttpConnectionPool(SpecModel):
    maxConnections: MaxConnections
    maxPendingRequests: MaxPendingRequests | None = None


class VirtualNodeHttp2ConnectionPool(SpecModel):
    maxRequests: MaxRequests


VirtualNodeGrpcConnectionPool = VirtualNodeHttp2ConnectionPool
VirtualGatewayHttpConnectionPool = VirtualNodeHttpConnectionPool
VirtualGatewayHttp2ConnectionPool = VirtualNodeHttp2ConnectionPool
VirtualGatewayGrpcConnectionPool = VirtualNodeHttp2ConnectionPool


class HealthCheckPolicy(SpecModel):
    healthyThreshold: HealthCheckThreshold
    intervalMillis: HealthCheckIntervalMillis
    path: String | None = None
    port: PortNumber | None = None
    protocol: PortProtocol
    timeoutMillis: HealthCheckTimeoutMillis
    unhealthyThreshold: HealthCheckThreshold


class VirtualGatewayHealthCheckPolicy(SpecModel):
    healthyThreshold: HealthCheckThreshold
    intervalMillis: HealthCheckIntervalMillis
    path: String | None = None
    port: PortNumber | None = None
    protocol: VirtualGatewayPortProtocol
    timeoutMillis: HealthCheckTimeoutMillis
    unhealthyThreshold: HealthCheckThreshold


class JsonFormatRef(SpecModel):
    key: JsonKey
    value: JsonValue


class LoggingFormat(UnionModel):
    """``json`` is spelled ``json_`` in Python (it would shadow BaseModel.json)."""

    json_: tuple[JsonFormatRef, ...] | None = Field(default=None, alias="json")
    text: TextFormat | None = None


class FileAccessLog(SpecModel):
    format: LoggingFormat | None = None
    path: FilePath


VirtualGatewayFileAccessLog = FileAccessLog


class AccessLog(UnionModel):
    file: FileAccessLog | None = None


VirtualGatewayAccessLog = AccessLog


class Logging(SpecModel):
    accessLog: AccessLog | None = None


VirtualGatewayLogging = Logging


def protocol_mismatch(protocol: str, kind: str, what: str) -> str:
    """The message for a connection pool or timeout that does not fit its listener."""
    return f"a {protocol} listener takes a {protocol} {what} (got {kind})"
