"""Realistic specs: the examples of working-with-app-mesh.md in App Mesh API form, and more.

The Kubernetes manifests' references (virtualNodeRef, virtualServiceRef) become the API's
names (``<name>_<namespace>`` for nodes, ``<name>.<namespace>`` for services, as the
controller's awsName defaults do).
"""

from __future__ import annotations

from typing import Any

import pytest

from meshplane.model import (
    GatewayRouteSpec,
    Kind,
    RouteSpec,
    VirtualGatewaySpec,
    VirtualNodeSpec,
    dump_spec,
    parse_spec,
)

SERVICE_V1_NODE = {
    "listeners": [
        {
            "portMapping": {"port": 8080, "protocol": "http"},
            "healthCheck": {
                "protocol": "http",
                "path": "/health",
                "healthyThreshold": 2,
                "unhealthyThreshold": 2,
                "timeoutMillis": 2000,
                "intervalMillis": 5000,
            },
        }
    ],
    "serviceDiscovery": {"dns": {"hostname": "service-v1.service-ns.svc.cluster.local"}},
    "backends": [{"virtualService": {"virtualServiceName": "target-service.target-ns"}}],
}

CLOUD_MAP_NODE = {
    "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
    "serviceDiscovery": {
        "awsCloudMap": {"namespaceName": "prod.company.com", "serviceName": "myapp"}
    },
}

SERVICE = {"provider": {"virtualNode": {"virtualNodeName": "service-v1_service-ns"}}}

ROUTER = {"listeners": [{"portMapping": {"port": 8085, "protocol": "http"}}]}

BLUE_GREEN_ROUTE = {
    "httpRoute": {
        "match": {"prefix": "/"},
        "action": {
            "weightedTargets": [
                {"virtualNode": "green-v1_green", "weight": 100, "port": 8081},
                {"virtualNode": "blue-v1_blue", "weight": 0, "port": 8080},
            ]
        },
    }
}

GATEWAY = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}

GATEWAY_ROUTE = {
    "httpRoute": {
        "match": {"prefix": "/"},
        "action": {
            "target": {"virtualService": {"virtualServiceName": "app-service.app-ns"}, "port": 8080}
        },
    }
}

FULL_NODE: dict[str, Any] = {
    "listeners": [
        {
            "portMapping": {"port": 9080, "protocol": "grpc"},
            "connectionPool": {"grpc": {"maxRequests": 512}},
            "timeout": {
                "grpc": {
                    "idle": {"unit": "s", "value": 300},
                    "perRequest": {"unit": "ms", "value": 1500},
                }
            },
            "outlierDetection": {
                "maxServerErrors": 5,
                "interval": {"unit": "s", "value": 10},
                "baseEjectionDuration": {"unit": "s", "value": 30},
                "maxEjectionPercent": 50,
            },
            "tls": {
                "mode": "STRICT",
                "certificate": {"sds": {"secretName": "spiffe://mesh/orders"}},
                "validation": {
                    "trust": {"sds": {"secretName": "spiffe://mesh"}},
                    "subjectAlternativeNames": {"match": {"exact": ["spiffe://mesh/frontend"]}},
                },
            },
        },
        {
            "portMapping": {"port": 9090, "protocol": "tcp"},
            "connectionPool": {"tcp": {"maxConnections": 100}},
        },
    ],
    "serviceDiscovery": {
        "dns": {
            "hostname": "orders.local",
            "responseType": "ENDPOINTS",
            "ipPreference": "IPv4_ONLY",
        }
    },
    "backends": [
        {
            "virtualService": {
                "virtualServiceName": "payments.local",
                "clientPolicy": {
                    "tls": {
                        "enforce": True,
                        "ports": [443],
                        "certificate": {
                            "file": {
                                "certificateChain": "/certs/chain.pem",
                                "privateKey": "/certs/key.pem",
                            }
                        },
                        "validation": {
                            "trust": {
                                "acm": {
                                    "certificateAuthorityArns": [
                                        "arn:aws:acm-pca:us-west-2:123456789012:certificate-authority/x"
                                    ]
                                }
                            }
                        },
                    }
                },
            }
        },
        {"virtualService": {"virtualServiceName": "inventory.local"}},
    ],
    "backendDefaults": {
        "clientPolicy": {
            "tls": {
                "enforce": False,
                "validation": {"trust": {"file": {"certificateChain": "/certs/ca.pem"}}},
            }
        }
    },
    "logging": {
        "accessLog": {
            "file": {
                "path": "/dev/stdout",
                "format": {"json": [{"key": "status", "value": "%RESPONSE_CODE%"}]},
            }
        }
    },
}

HEADER_ROUTE = {
    "priority": 10,
    "http2Route": {
        "match": {
            "path": {"regex": "/api/v[0-9]+/.*"},
            "method": "POST",
            "scheme": "https",
            "port": 8080,
            "headers": [
                {"name": "x-canary", "match": {"exact": "true"}},
                {"name": "x-build", "invert": True, "match": {"range": {"start": 100, "end": 200}}},
            ],
            "queryParameters": [{"name": "beta", "match": {"exact": "1"}}],
        },
        "action": {
            "weightedTargets": [
                {"virtualNode": "canary", "weight": 10},
                {"virtualNode": "stable", "weight": 90},
            ]
        },
        "retryPolicy": {
            "maxRetries": 3,
            "perRetryTimeout": {"unit": "ms", "value": 500},
            "httpRetryEvents": ["server-error", "gateway-error"],
            "tcpRetryEvents": ["connection-error"],
        },
        "timeout": {"perRequest": {"unit": "s", "value": 15}},
    },
}

GRPC_GATEWAY_ROUTE = {
    "priority": 1,
    "grpcRoute": {
        "match": {
            "serviceName": "orders.Orders",
            "hostname": {"suffix": ".example.com"},
            "port": 8443,
        },
        "action": {
            "target": {"virtualService": {"virtualServiceName": "orders.local"}},
            "rewrite": {"hostname": {"defaultTargetHostname": "DISABLED"}},
        },
    },
}

REWRITE_GATEWAY_ROUTE = {
    "httpRoute": {
        "match": {"prefix": "/shop/", "hostname": {"exact": "www.example.com"}},
        "action": {
            "target": {"virtualService": {"virtualServiceName": "shop.local"}},
            "rewrite": {"prefix": {"value": "/"}, "hostname": {"defaultTargetHostname": "ENABLED"}},
        },
    }
}

TLS_GATEWAY = {
    "listeners": [
        {
            "portMapping": {"port": 8443, "protocol": "http2"},
            "connectionPool": {"http2": {"maxRequests": 1000}},
            "healthCheck": {
                "protocol": "http2",
                "path": "/ping",
                "healthyThreshold": 3,
                "unhealthyThreshold": 3,
                "timeoutMillis": 2000,
                "intervalMillis": 10000,
            },
            "tls": {
                "mode": "PERMISSIVE",
                "certificate": {"acm": {"certificateArn": "arn:aws:acm:x"}},
            },
        }
    ],
    "backendDefaults": {
        "clientPolicy": {
            "tls": {"enforce": True, "validation": {"trust": {"sds": {"secretName": "ca"}}}}
        }
    },
    "logging": {
        "accessLog": {
            "file": {"path": "/var/log/gw.log", "format": {"text": "%START_TIME% %REQ(:PATH)%\n"}}
        }
    },
}

CASES = [
    (Kind.VIRTUAL_NODE, SERVICE_V1_NODE, VirtualNodeSpec),
    (Kind.VIRTUAL_NODE, CLOUD_MAP_NODE, VirtualNodeSpec),
    (Kind.VIRTUAL_NODE, FULL_NODE, VirtualNodeSpec),
    (Kind.VIRTUAL_SERVICE, SERVICE, None),
    (Kind.VIRTUAL_ROUTER, ROUTER, None),
    (Kind.ROUTE, BLUE_GREEN_ROUTE, RouteSpec),
    (Kind.ROUTE, HEADER_ROUTE, RouteSpec),
    (Kind.VIRTUAL_GATEWAY, GATEWAY, VirtualGatewaySpec),
    (Kind.VIRTUAL_GATEWAY, TLS_GATEWAY, VirtualGatewaySpec),
    (Kind.GATEWAY_ROUTE, GATEWAY_ROUTE, GatewayRouteSpec),
    (Kind.GATEWAY_ROUTE, GRPC_GATEWAY_ROUTE, GatewayRouteSpec),
    (Kind.GATEWAY_ROUTE, REWRITE_GATEWAY_ROUTE, GatewayRouteSpec),
]


@pytest.mark.parametrize(("kind", "doc", "model"), CASES)
def test_realistic_specs_parse_and_round_trip(
    kind: Kind, doc: dict[str, Any], model: type | None
) -> None:
    spec = parse_spec(kind, doc)
    if model is not None:
        assert isinstance(spec, model)
    assert dump_spec(spec) == doc


def test_typed_access_for_translation() -> None:
    node = parse_spec(Kind.VIRTUAL_NODE, FULL_NODE)
    assert isinstance(node, VirtualNodeSpec)
    assert node.listeners is not None
    grpc = node.listeners[0]
    assert grpc.portMapping.protocol == "grpc"
    assert grpc.timeout is not None
    assert grpc.timeout.grpc is not None
    assert grpc.timeout.grpc.perRequest is not None
    assert grpc.timeout.grpc.perRequest.seconds == 1.5
    log = node.logging.accessLog.file if node.logging and node.logging.accessLog else None
    assert log is not None
    assert log.format is not None
    assert log.format.json_ is not None
    assert log.format.json_[0].key == "status"
    route = parse_spec(Kind.ROUTE, HEADER_ROUTE)
    assert isinstance(route, RouteSpec)
    assert route.route_type == "http2Route"


def test_backend_client_policy_enforce_is_filled_in() -> None:
    doc = {
        "backendDefaults": {
            "clientPolicy": {"tls": {"validation": {"trust": {"sds": {"secretName": "ca"}}}}}
        }
    }
    gateway = {"listeners": GATEWAY["listeners"], **doc}
    dumped = dump_spec(parse_spec(Kind.VIRTUAL_GATEWAY, gateway))
    assert dumped["backendDefaults"] == {
        "clientPolicy": {
            "tls": {"enforce": True, "validation": {"trust": {"sds": {"secretName": "ca"}}}}
        }
    }
