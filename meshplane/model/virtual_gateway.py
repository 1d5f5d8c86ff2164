"""The virtual gateway spec: ingress listeners (http, http2, grpc), logging, backend TLS.

Gateway listeners have no outlier detection and no timeout; the connection pool must match
the listener protocol; at least one listener, ports unique.  Used by
``meshplane.model.specs`` and by the gateway translation.
"""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from meshplane.model.common import (
    Problems,
    SpecModel,
    UnionModel,
    VirtualGatewayGrpcConnectionPool,
    VirtualGatewayHealthCheckPolicy,
    VirtualGatewayHttp2ConnectionPool,
    VirtualGatewayHttpConnectionPool,
    VirtualGatewayLogging,
    VirtualGatewayPortMapping,
    protocol_mismatch,
)
from meshplane.model.tls import VirtualGatewayBackendDefaults, VirtualGatewayListenerTls
from meshplane.model.virtual_node import check_unique_ports


class VirtualGatewayConnectionPool(UnionModel):
    grpc: VirtualGatewayGrpcConnectionPool | None = None
    http: VirtualGatewayHttpConnectionPool | None = None
    http2: VirtualGatewayHttp2ConnectionPool | None = None


class VirtualGatewayListener(SpecModel):
    connectionPool: VirtualGatewayConnectionPool | None = None
    healthCheck: VirtualGatewayHealthCheckPolicy | None = None
    portMapping: VirtualGatewayPortMapping
    tls: VirtualGatewayListenerTls | None = None

    @model_validator(mode="after")
    def _pool_matches_protocol(self) -> Self:
        if self.connectionPool is not None:
            kind = self.connectionPool.set_members()[0]
            protocol = self.portMapping.protocol
            if kind != protocol:
                problems = Problems()
                problems.add("connectionPool", protocol_mismatch(protocol, kind, "connection pool"))
                problems.raise_if_any()
        return self


class VirtualGatewaySpec(SpecModel):
    backendDefaults: VirtualGatewayBackendDefaults | None = None
    listeners: tuple[VirtualGatewayListener, ...]
    logging: VirtualGatewayLogging | None = None

    @model_validator(mode="after")
    def _gateway_rules(self) -> Self:
        problems = Problems()
        if not self.listeners:
            problems.add("listeners", "at least one listener is required")
        check_unique_ports(problems, [lst.portMapping.port for lst in self.listeners])
        problems.raise_if_any()
        return self
