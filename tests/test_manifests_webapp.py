"""The YAML examples of working-with-app-mesh.md, verbatim, translate to the expected App Mesh
resources (exact API JSON)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from meshplane.manifests import load_paths, parse_documents, translate
from meshplane.model.kinds import Kind, ResourceKey

FIXTURES = Path(__file__).parent / "fixtures" / "manifests"
WEBAPP = Path(__file__).parents[1] / "examples" / "webapp"
GUIDE = Path("/work/shared/reference/working-with-app-mesh.md")

EXPECTED = {
    ResourceKey(Kind.MESH, "webapp", "webapp"): {},
    ResourceKey(Kind.VIRTUAL_NODE, "webapp", "blue-v1_blue"): {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": "blue-v1.blue.svc.cluster.local"}},
    },
    ResourceKey(Kind.VIRTUAL_NODE, "webapp", "green-v1_green"): {
        "listeners": [{"portMapping": {"port": 8081, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": "green-v1.green.svc.cluster.local"}},
    },
    ResourceKey(Kind.VIRTUAL_NODE, "webapp", "service-v1_service-ns"): {
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
    },
    ResourceKey(Kind.VIRTUAL_ROUTER, "webapp", "app-router_consumer"): {
        "listeners": [{"portMapping": {"port": 8085, "protocol": "http"}}],
    },
    ResourceKey(Kind.ROUTE, "webapp", "app-route", parent="app-router_consumer"): {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [
                    {"virtualNode": "green-v1_green", "weight": 100, "port": 8081},
                    {"virtualNode": "blue-v1_blue", "weight": 0, "port": 8080},
                ]
            },
        }
    },
    ResourceKey(Kind.VIRTUAL_SERVICE, "webapp", "app-service.app-ns"): {},
    ResourceKey(Kind.VIRTUAL_SERVICE, "webapp", "service.service-ns.svc.cluster.local"): {
        "provider": {"virtualNode": {"virtualNodeName": "service-v1_service-ns"}},
    },
    ResourceKey(Kind.VIRTUAL_SERVICE, "webapp", "target-service.target-ns"): {},
    ResourceKey(Kind.VIRTUAL_GATEWAY, "webapp", "ingress-gw_gateway-ns"): {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
    },
    ResourceKey(
        Kind.GATEWAY_ROUTE, "webapp", "app-route_gateway-ns", parent="ingress-gw_gateway-ns"
    ): {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {"target": {"virtualService": {"virtualServiceName": "app-service.app-ns"}}},
        }
    },
}


def test_guide_examples_translate_to_the_expected_api_specs() -> None:
    translation = translate(load_paths([str(WEBAPP)]), namespaces={})

    assert [r.key for r in translation.resources] == list(EXPECTED)
    assert {r.key: r.spec for r in translation.resources} == EXPECTED
    assert {key: m.kind for key, m in translation.owners.items()} == {
        key: {
            Kind.MESH: "Mesh",
            Kind.VIRTUAL_NODE: "VirtualNode",
            Kind.VIRTUAL_ROUTER: "VirtualRouter",
            Kind.ROUTE: "VirtualRouter",
            Kind.VIRTUAL_SERVICE: "VirtualService",
            Kind.VIRTUAL_GATEWAY: "VirtualGateway",
            Kind.GATEWAY_ROUTE: "GatewayRoute",
        }[key.kind]
        for key in EXPECTED
    }
    assert [(m.kind, reason) for m, reason in translation.skipped] == [
        ("Service", "not an App Mesh resource (v1/Service)"),
        ("Deployment", "not an App Mesh resource (apps/v1/Deployment)"),
    ]


def test_the_gateway_name_is_the_one_the_guides_envoy_deployment_uses() -> None:
    manifests = load_paths([str(WEBAPP)])
    deployment = next(m for m in manifests if m.kind == "Deployment")
    env = deployment.body["spec"]["template"]["spec"]["containers"][0]["env"]
    arn = next(e["value"] for e in env if e["name"] == "APPMESH_RESOURCE_ARN")
    gateway = next(
        r.key
        for r in translate(manifests, namespaces={}).resources
        if r.key.kind == "virtualGateway"
    )
    assert arn.endswith(":" + gateway.arn_path())


def test_port_inside_virtual_service_ref_is_dropped_with_a_warning() -> None:
    translation = translate(load_paths([str(WEBAPP)]), namespaces={})
    assert translation.warnings == [
        f"{WEBAPP / '07-gatewayroute.yaml'}#0 GatewayRoute gateway-ns/app-route: "
        "spec.httpRoute.action.target.virtualService.virtualServiceRef.port: not a field of "
        "virtualServiceRef, ignored (Kubernetes drops it); a target port goes in "
        "action.target.port"
    ]


def test_namespace_labels_may_come_from_meshplane_label_instead_of_documents() -> None:
    manifests = [m for m in load_paths([str(WEBAPP)]) if m.kind != "Namespace"]
    labels = {
        ns: {"mesh": "webapp"}
        for ns in ("service-ns", "target-ns", "consumer", "green", "blue", "app-ns")
    }
    labels["gateway-ns"] = {"mesh": "webapp", "gateway": "ingress-gw"}
    translation = translate(manifests, namespaces=labels)
    assert {r.key: r.spec for r in translation.resources} == EXPECTED
    assert translation.namespaces == labels


def test_cloud_map_service_discovery_fragment() -> None:
    fragment = yaml.safe_load(
        (FIXTURES / "fragments" / "cloudmap-service-discovery.yaml").read_text()
    )
    node = f"""
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata:
  name: myapp
  namespace: service-ns
spec:
  listeners:
    - portMapping: {{port: 8080, protocol: http}}
  serviceDiscovery: {json.dumps(fragment["serviceDiscovery"])}
"""
    manifests = [*load_paths([str(WEBAPP)]), *parse_documents(node, "myapp.yaml")]
    translation = translate(manifests, namespaces={})
    spec = next(r.spec for r in translation.resources if r.key.name == "myapp_service-ns")
    assert spec["serviceDiscovery"] == {
        "awsCloudMap": {"namespaceName": "prod.company.com", "serviceName": "myapp"}
    }


def test_fixtures_hold_the_guide_examples_verbatim() -> None:
    assert GUIDE.exists(), f"{GUIDE} is missing: the tests need ../shared beside the repository"
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S)
    fixtures = [p.read_text() for p in sorted([*FIXTURES.rglob("*.yaml"), *WEBAPP.glob("*.yaml")])]
    missing = [block for block in blocks if block not in fixtures]
    assert blocks
    assert missing == []
