"""The virtual node spec: listeners, service discovery, backends, logging.

``VirtualNodeSpec`` and its listener, discovery and backend shapes, with the App Mesh
rules: service discovery is required when a listener exists, listener ports are unique,
a listener's connection pool and timeout match its protocol, backends are not repeated.
Used by ``meshplane.model.specs`` and by the sidecar translation.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, Strict, model_validator

from meshplane.model.common import (
    INT64_MAX,
    Duration,
    GrpcTimeout,
    HealthCheckPolicy,
    Hostname,
    HttpTimeout,
    IpPreference,
    Logging,
    PercentInt,
    PortMapping,
    Problems,
    ServiceName,
    SpecModel,
    TcpTimeout,
    UnicodeText,
    UnionModel,
    VirtualNodeGrpcConnectionPool,
    VirtualNodeHttp2ConnectionPool,
    VirtualNodeHttpConnectionPool,
    VirtualNodeTcpConnectionPool,
    protocol_mismatch,
)
from meshplane.model.tls import BackendDefaults, ClientPolicy, ListenerTls

DnsResponseType = Literal["LOADBALANCER", "ENDPOINTS"]
AwsCloudMapName = Annotated[str, Strict(), Field(min_length=1, max_length=1024), UnicodeText]
AwsCloudMapInstanceAttributeKey = Annotated[
    str, Strict(), Field(min_length=1, max_length=255, pattern=r"^[a-zA-Z0-9!-~]+$")
]
AwsCloudMapInstanceAttributeValue = Annotated[
    str,
    Strict(),
    Field(
        min_length=1,
        max_length=1024,
        pattern=r"^([a-zA-Z0-9!-~][  a-zA-Z0-9!-~]*){0,1}[a-zA-Z0-9!-~]{0,1}$",
    ),
]
OutlierDetectionMaxServerErrors = Annotated[int, Strict(), Field(ge=1, le=INT64_MAX)]
OutlierDetectionMaxEjectionPercent = PercentInt


class VirtualNodeConnectionPool(UnionModel):
    grpc: VirtualNodeGrpcConnectionPool | None = None
    http: VirtualNodeHttpConnectionPool | None = None
    http2: VirtualNodeHttp2ConnectionPool | None = None
    tcp: VirtualNodeTcpConnectionPool | None = None


class ListenerTimeout(UnionModel):
    grpc: GrpcTimeout | None = None
    http: HttpTimeout | None = None
    http2: HttpTimeout | None = None
    tcp: TcpTimeout | None = None


class OutlierDetection(SpecModel):
    baseEjectionDuration: Duration
    interval: Duration
    maxEjectionPercent: OutlierDetectionMaxEjectionPercent
    maxServerErrors: OutlierDetectionMaxServerErrors


class Listener(SpecModel):
    connectionPool: VirtualNodeConnectionPool | None = None
    healthCheck: HealthCheckPolicy | None = None
    outlierDetection: OutlierDetection | None = None
    portMapping: PortMapping
    timeout: ListenerTimeout | None = None
    tls: ListenerTls | None = None

    @model_validator(mode="after")
    def _kinds_match_protocol(self) -> Self:
        problems = Problems()
        protocol = self.portMapping.protocol
        for member, what in (("connectionPool", "connection pool"), ("timeout", "timeout")):
            value: UnionModel | None = getattr(self, member)
            if value is None:
                continue
            kind = value.set_members()[0]
            if kind != protocol:
                problems.add(member, protocol_mismatch(protocol, kind, what))
        problems.raise_if_any()
        return self


class DnsServiceDiscovery(SpecModel):
    hostname: Hostname
    ipPreference: IpPreference | None = None
    responseType: DnsResponseType | None = None


class AwsCloudMapInstanceAttribute(SpecModel):
    key: AwsCloudMapInstanceAttributeKey
    value: AwsCloudMapInstanceAttributeValue


class AwsCloudMapServiceDiscovery(SpecModel):
    attributes: tuple[AwsCloudMapInstanceAttribute, ...] | None = None
    ipPreference: IpPreference | None = None
    namespaceName: AwsCloudMapName
    serviceName: AwsCloudMapName


class ServiceDiscovery(UnionModel):
    awsCloudMap: AwsCloudMapServiceDiscovery | None = None
    dns: DnsServiceDiscovery | None = None


class VirtualServiceBackend(SpecModel):
    clientPolicy: ClientPolicy | None = None
    virtualServiceName: ServiceName


class Backend(UnionModel):
    virtualService: VirtualServiceBackend | None = None


class VirtualNodeSpec(SpecModel):
    backendDefaults: BackendDefaults | None = None
    backends: tuple[Backend, ...] | None = None
    listeners: tuple[Listener, ...] | None = None
    logging: Logging | None = None
    serviceDiscovery: ServiceDiscovery | None = None

    @model_validator(mode="after")
    def _node_rules(self) -> Self:
        problems = Problems()
        if self.listeners and self.serviceDiscovery is None:
            problems.add(
                "serviceDiscovery",
                "ServiceDiscovery must be specified when a listener is specified",
            )
        check_unique_ports(problems, [lst.portMapping.port for lst in self.listeners or ()])
        seen: set[str] = set()
        for i, backend in enumerate(self.backends or ()):
            if backend.virtualService is None:
                continue
            name = backend.virtualService.virtualServiceName
            if name in seen:
                problems.add(
                    f"backends[{i}].virtualService.virtualServiceName",
                    f"duplicate backend {name!r}",
                )
            seen.add(name)
        problems.raise_if_any()
        return self


def check_unique_ports(problems: Problems, ports: list[int]) -> None:
    """Listener ports must be distinct."""
    seen: set[int] = set()
    for i, port in enumerate(ports):
        if port in seen:
            problems.add(f"listeners[{i}].portMapping.port", f"duplicate listener port {port}")
        seen.add(port)
