"""The Envoy bootstrap of a meshplane proxy (sidecar or gateway), App Mesh style.

:func:`build_bootstrap` turns :class:`BootstrapOptions` into the JSON-able bootstrap for Envoy
1.40: node id ``mesh/<mesh>/virtualNode/<name>`` (the ``APPMESH_RESOURCE_ARN`` form, or the full
ARN), node cluster (default: the node id), ADS over gRPC (state of the world or delta) to a
static ``xds_cluster`` at the control plane, LDS/CDS over ADS, the admin listener, a runtime
with an admin layer, App Mesh-style stats tags and a downstream connection limit.

The node id is parsed, and ``node.metadata.meshplane`` written, through the model the control
plane reads them with (:mod:`meshplane.model.proxy`: ``ProxyIdentity``, ``NodeMetadata``).
The translation layer reads the workload's facts from ``node.metadata.meshplane``:
``workload_address``, ``app_port`` (or null) and ``egress_port``; a capturing proxy adds
``capture: true`` and ``ingress_port``.

:meth:`BootstrapOptions.from_env` reads the App Mesh variables (``APPMESH_RESOURCE_ARN``,
``APPMESH_XDS_ENDPOINT``, ``ENVOY_ADMIN_ACCESS_PORT``, ``ENVOY_LOG_LEVEL``,
``ENVOY_CONCURRENCY``, ...) so existing task definitions keep working, and its tracing switches:
``ENABLE_ENVOY_JAEGER_TRACING`` (``JAEGER_TRACER_ADDRESS``/``PORT``/``VERSION``: Envoy's Zipkin
tracer, as App Mesh's agent made it) and ``ENABLE_ENVOY_DATADOG_TRACING``
(``DATADOG_TRACER_ADDRESS``/``PORT``, ``DD_SERVICE``) add the collector's static cluster and name
the tracer in the node metadata; ``ENABLE_ENVOY_XRAY_TRACING`` (AWS only) is a warning.

Called by :mod:`meshplane.proxy.runner`, the ``meshplane envoy`` CLI command and tests.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from meshplane.errors import BadRequestError
from meshplane.model.kinds import Kind
from meshplane.model.proxy import InvalidNodeIdError, NodeMetadata, ProxyTracer, parse_node_id
from meshplane.model.tracing import parse_collector

ApiType = Literal["GRPC", "DELTA_GRPC"]


class BootstrapError(BadRequestError):
    """Options that cannot make a working bootstrap."""


@dataclass(frozen=True, slots=True)
class XdsTls:
    """Client TLS to the control plane (files on disk)."""

    ca_file: str
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""


@dataclass(frozen=True, slots=True)
class BootstrapTracer:
    """A tracer of the proxy's own (App Mesh's tracing switches): the static cluster
    ``tracer.cluster`` to ``host:port`` in the bootstrap, and ``tracer`` in the node metadata,
    from which the control plane puts Envoy's Zipkin or Datadog tracer on every HTTP connection
    manager of the proxy (instead of the mesh's OpenTelemetry tracer)."""

    tracer: ProxyTracer
    host: str
    port: int


XRAY_WARNING = (
    "ENABLE_ENVOY_XRAY_TRACING is ignored: AWS X-Ray is an AWS service (its daemon sends to "
    "AWS). Trace with the mesh tag meshplane.io/tracing=<OTLP collector host:port> instead "
    "(an OpenTelemetry collector can forward to X-Ray), or ENABLE_ENVOY_JAEGER_TRACING / "
    "ENABLE_ENVOY_DATADOG_TRACING."
)
TRACING_CFG_WARNING = (
    "ENVOY_TRACING_CFG_FILE is ignored: tracing is set by the control plane (the mesh tag "
    "meshplane.io/tracing) or by ENABLE_ENVOY_JAEGER_TRACING / ENABLE_ENVOY_DATADOG_TRACING."
)


@dataclass(frozen=True, slots=True)
class BootstrapOptions:
    """Everything that varies between proxies' bootstraps."""

    resource: str
    """``mesh/<mesh>/virtualNode/<name>``, ``.../virtualGateway/<name>`` or the full ARN."""
    xds_host: str = "127.0.0.1"
    xds_port: int = 15000
    xds_more: tuple[tuple[str, int], ...] = ()
    """Further control-plane replicas (host, port): Envoy reconnects to another one when its
    replica goes away, and keeps serving its last good config meanwhile.  A host name is
    resolved to all of its addresses (several records: several replicas)."""
    api_type: ApiType = "GRPC"
    node_cluster: str = ""
    """Defaults to the node id, like App Mesh."""
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    log_level: str = "info"
    concurrency: int | None = None
    workload_address: str = "127.0.0.1"
    app_port: int | None = None
    egress_port: int = 15001
    capture: bool = False
    """Traffic reaches the proxy through capture rules (``meshplane envoy --capture``): the
    node metadata says so, and the control plane sends the captured listeners."""
    ingress_port: int = 15000
    """The captured inbound listener's port (with ``capture``)."""
    initial_fetch_timeout: float = 0.0
    """Seconds Envoy waits for the first LDS/CDS response (0: wait for ever, as App Mesh)."""
    max_downstream_connections: int = 50_000
    stats_tags: bool = False
    """Add ``appmesh.mesh`` and ``appmesh.virtual_node``/``virtual_gateway`` stats tags."""
    xds_token: str | None = None
    """Sent as ``authorization: Bearer <token>`` metadata on the ADS stream."""
    xds_tls: XdsTls | None = None
    metrics_service: bool = True
    """Stream Envoy's stats to the control plane (``envoy.stat_sinks.metrics_service`` over
    the ADS cluster, with the ADS token) every ``stats_flush_interval`` seconds."""
    stats_flush_interval: float = 5.0
    dog_statsd: str | None = None
    """``<host>:<port>`` (UDP) or ``unix:<path>`` of a DogStatsD agent
    (``ENABLE_ENVOY_DOG_STATSD=1`` with ``STATSD_ADDRESS``/``STATSD_PORT`` or
    ``STATSD_SOCKET_PATH``), as the App Mesh Envoy image added it."""
    tracer: BootstrapTracer | None = None
    """The proxy's own tracer (``ENABLE_ENVOY_JAEGER_TRACING`` or
    ``ENABLE_ENVOY_DATADOG_TRACING``); None: the mesh's tracing applies."""
    warnings: tuple[str, ...] = ()
    """What of the environment was ignored, and why (``meshplane envoy`` prints them)."""
    extra_metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        """The node id: the resource as given (ARN or ``mesh/...`` path)."""
        return self.resource

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> BootstrapOptions:
        """Options from App Mesh's environment variables, then ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        resource = (
            env.get("APPMESH_RESOURCE_ARN")
            or env.get("APPMESH_RESOURCE_NAME")
            or env.get("APPMESH_VIRTUAL_NODE_NAME")
        )
        if resource:
            values["resource"] = resource
        cluster = env.get("APPMESH_RESOURCE_CLUSTER") or env.get("APPMESH_VIRTUAL_NODE_CLUSTER")
        if cluster:
            values["node_cluster"] = cluster
        endpoint = env.get("APPMESH_XDS_ENDPOINT")
        if endpoint:
            host, _, port = endpoint.rpartition(":")
            if not host or not port.isdigit():
                raise BootstrapError(f"APPMESH_XDS_ENDPOINT {endpoint!r} is not <host>:<port>")
            values["xds_host"], values["xds_port"] = host.strip("[]"), int(port)
        if env.get("ENVOY_ADMIN_ACCESS_PORT"):
            values["admin_port"] = _int(env, "ENVOY_ADMIN_ACCESS_PORT")
        if env.get("ENVOY_LOG_LEVEL"):
            values["log_level"] = env["ENVOY_LOG_LEVEL"].lower()
        if env.get("ENVOY_CONCURRENCY"):
            values["concurrency"] = _int(env, "ENVOY_CONCURRENCY")
        if env.get("ENVOY_INITIAL_FETCH_TIMEOUT"):
            values["initial_fetch_timeout"] = float(env["ENVOY_INITIAL_FETCH_TIMEOUT"])
        if env.get("ENABLE_ENVOY_STATS_TAGS") == "1":
            values["stats_tags"] = True
        if env.get("ENVOY_STATS_FLUSH_INTERVAL"):
            values["stats_flush_interval"] = _seconds(env, "ENVOY_STATS_FLUSH_INTERVAL")
        if env.get("ENABLE_ENVOY_DOG_STATSD") == "1":
            if env.get("STATSD_SOCKET_PATH"):
                values["dog_statsd"] = f"unix:{env['STATSD_SOCKET_PATH']}"
            else:
                statsd_port = _int(env, "STATSD_PORT") if env.get("STATSD_PORT") else 8125
                statsd_host = env.get("STATSD_ADDRESS") or "127.0.0.1"
                values["dog_statsd"] = f"{statsd_host}:{statsd_port}"
        values.update(_tracing_from_env(env, overrides.get("resource") or resource or ""))
        if env.get("MESHPLANE_XDS_TOKEN"):
            values["xds_token"] = env["MESHPLANE_XDS_TOKEN"]
        values.update(overrides)
        if "resource" not in values:
            raise BootstrapError(
                "no proxy resource: set APPMESH_RESOURCE_ARN to mesh/<mesh>/virtualNode/<name>"
            )
        return replace(cls(resource=values.pop("resource")), **values)


def _tracing_from_env(env: Mapping[str, str], resource: str) -> dict[str, Any]:
    """``tracer`` and ``warnings`` from App Mesh's tracing switches (one driver at most, as
    the App Mesh agent required)."""
    warnings = []
    if env.get("ENABLE_ENVOY_XRAY_TRACING") == "1":
        warnings.append(XRAY_WARNING)
    if env.get("ENVOY_TRACING_CFG_FILE"):
        warnings.append(TRACING_CFG_WARNING)
    drivers = [
        name
        for name in ("ENABLE_ENVOY_JAEGER_TRACING", "ENABLE_ENVOY_DATADOG_TRACING")
        if env.get(name) == "1"
    ]
    if len(drivers) > 1:
        raise BootstrapError(
            f"only one tracer can be configured: {' and '.join(drivers)} are both set"
        )
    values: dict[str, Any] = {"warnings": tuple(warnings)} if warnings else {}
    if drivers == ["ENABLE_ENVOY_JAEGER_TRACING"]:
        version = (env.get("JAEGER_TRACER_VERSION") or "PROTO").strip().upper()
        if version not in ("PROTO", "JSON"):
            raise BootstrapError(f"JAEGER_TRACER_VERSION must be PROTO or JSON, not {version!r}")
        values["tracer"] = BootstrapTracer(
            ProxyTracer("zipkin", "jaeger", zipkin_json=version == "JSON"),
            *_collector(env, "JAEGER_TRACER", 9411),
        )
    elif drivers == ["ENABLE_ENVOY_DATADOG_TRACING"]:
        service = env.get("DD_SERVICE") or _datadog_service(resource)
        values["tracer"] = BootstrapTracer(
            ProxyTracer("datadog", "datadog_agent", service_name=service),
            *_collector(env, "DATADOG_TRACER", 8126),
        )
    return values


def _collector(env: Mapping[str, str], prefix: str, default_port: int) -> tuple[str, int]:
    """``<prefix>_ADDRESS`` (default 127.0.0.1) and ``<prefix>_PORT``, checked."""
    host = (env.get(f"{prefix}_ADDRESS") or "127.0.0.1").strip().strip("[]")
    port = (env.get(f"{prefix}_PORT") or str(default_port)).strip()
    where = f"{prefix}_ADDRESS:{prefix}_PORT"
    try:
        collector = parse_collector(f"[{host}]:{port}" if ":" in host else f"{host}:{port}", where)
    except ValueError as error:
        raise BootstrapError(str(error)) from None
    return collector.host, collector.port


def _datadog_service(resource: str) -> str:
    """App Mesh's default Datadog service name: ``envoy-<mesh>/<name>``."""
    try:
        identity = parse_node_id(resource)
    except InvalidNodeIdError:
        return ""
    return f"envoy-{identity.mesh}/{identity.name}"


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise BootstrapError(f"{name} must be an integer, not {env[name]!r}") from None


def _seconds(env: Mapping[str, str], name: str) -> float:
    """A duration in seconds: ``10``, ``10s`` or ``500ms`` (at least 0.1 s)."""
    text = env[name].strip().lower()
    scale = 1.0
    if text.endswith("ms"):
        text, scale = text[:-2], 0.001
    elif text.endswith("s"):
        text = text[:-1]
    try:
        value = float(text) * scale
    except ValueError:
        raise BootstrapError(f"{name} must be a duration like 5s, not {env[name]!r}") from None
    if not 0.1 <= value <= 3600:
        raise BootstrapError(f"{name} must be between 100ms and 3600s (got {env[name]!r})")
    return value


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def build_bootstrap(options: BootstrapOptions) -> dict[str, Any]:
    """The Envoy bootstrap (a JSON-able dict) for ``options``."""
    try:
        identity = parse_node_id(options.resource)
    except InvalidNodeIdError as error:
        raise BootstrapError(error.message) from None
    mesh, name = identity.mesh, identity.name
    config_source = {
        "ads": {},
        "resource_api_version": "V3",
        "initial_fetch_timeout": _duration(options.initial_fetch_timeout),
    }
    grpc_service: dict[str, Any] = {"envoy_grpc": {"cluster_name": "xds_cluster"}}
    if options.xds_token:
        grpc_service["initial_metadata"] = [
            {"key": "authorization", "value": f"Bearer {options.xds_token}"}
        ]
    metadata = NodeMetadata.from_section(
        {
            "workload_address": options.workload_address,
            "app_port": options.app_port,
            "egress_port": options.egress_port,
            "resource": options.resource,
            **({"capture": True, "ingress_port": options.ingress_port} if options.capture else {}),
            **({"tracer": options.tracer.tracer.to_section()} if options.tracer else {}),
            **dict(options.extra_metadata),
        }
    ).to_node_metadata()
    bootstrap: dict[str, Any] = {
        "node": {
            "id": options.node_id,
            "cluster": options.node_cluster or options.node_id,
            "metadata": metadata,
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": options.api_type,
                "transport_api_version": "V3",
                "grpc_services": [grpc_service],
                "set_node_on_first_message_only": True,
            },
            "lds_config": config_source,
            "cds_config": config_source,
        },
        "static_resources": {"clusters": [_xds_cluster(options), *_tracer_clusters(options)]},
        "admin": {
            "address": {
                "socket_address": {
                    "address": options.admin_address,
                    "port_value": options.admin_port,
                }
            },
        },
        "layered_runtime": {
            "layers": [
                {"name": "static", "static_layer": {}},
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                        "downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": options.max_downstream_connections,
                    },
                }
            ]
        },
    }
    sinks = _stats_sinks(options, grpc_service)
    if sinks:
        bootstrap["stats_sinks"] = sinks
        bootstrap["stats_flush_interval"] = _duration(options.stats_flush_interval)
    if options.stats_tags:
        bootstrap["stats_config"] = {
            "stats_tags": [
                {"tag_name": "appmesh.mesh", "fixed_value": mesh},
                {
                    "tag_name": "appmesh.virtual_node"
                    if identity.kind is Kind.VIRTUAL_NODE
                    else "appmesh.virtual_gateway",
                    "fixed_value": name,
                },
            ]
        }
    return bootstrap


def _stats_sinks(options: BootstrapOptions, grpc_service: dict[str, Any]) -> list[dict[str, Any]]:
    sinks: list[dict[str, Any]] = []
    if options.metrics_service:
        sinks.append(
            {
                "name": "envoy.stat_sinks.metrics_service",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig",
                    "transport_api_version": "V3",
                    "histogram_emit_mode": "HISTOGRAM",
                    "grpc_service": grpc_service,
                },
            }
        )
    if options.dog_statsd:
        if options.dog_statsd.startswith("unix:"):
            address: dict[str, Any] = {"pipe": {"path": options.dog_statsd[5:]}}
        else:
            host, _, port = options.dog_statsd.rpartition(":")
            if not host or not port.isdigit():
                raise BootstrapError(f"DogStatsD address {options.dog_statsd!r} is not host:port")
            address = {
                "socket_address": {
                    "protocol": "UDP",
                    "address": host.strip("[]"),
                    "port_value": int(port),
                }
            }
        sinks.append(
            {
                "name": "envoy.stat_sinks.dog_statsd",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.metrics.v3.DogStatsdSink",
                    "address": address,
                },
            }
        )
    return sinks


def _tracer_clusters(options: BootstrapOptions) -> list[dict[str, Any]]:
    """The static cluster of the proxy's own tracer (``jaeger`` or ``datadog_agent``, as the
    App Mesh agent named them), if it has one."""
    if options.tracer is None:
        return []
    name, host, port = options.tracer.tracer.cluster, options.tracer.host, options.tracer.port
    return [
        {
            "name": name,
            "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {"address": host, "port_value": port}
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        }
    ]


def _xds_cluster(options: BootstrapOptions) -> dict[str, Any]:
    addresses = [(options.xds_host, options.xds_port), *options.xds_more]
    cluster: dict[str, Any] = {
        "name": "xds_cluster",
        "type": "STATIC" if all(_is_ip(host) for host, _ in addresses) else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "xds_cluster",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": h, "port_value": p}}
                            }
                        }
                        for h, p in addresses
                    ]
                }
            ],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "10s", "timeout": "20s"}
                    }
                },
            }
        },
    }
    if options.xds_tls is not None:
        cluster["transport_socket"] = _tls_socket(options.xds_tls)
    return cluster


def _tls_socket(tls: XdsTls) -> dict[str, Any]:
    common: dict[str, Any] = {
        "validation_context": {"trusted_ca": {"filename": tls.ca_file}},
        "alpn_protocols": ["h2"],
    }
    if tls.cert_file:
        common["tls_certificates"] = [
            {
                "certificate_chain": {"filename": tls.cert_file},
                "private_key": {"filename": tls.key_file},
            }
        ]
    context: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": common,
    }
    if tls.server_name:
        context["sni"] = tls.server_name
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
