"""translate(): names, membership by selectors, references, BackendGroups, ARNs, the CRD and
webhook rules, skipped kinds and deterministic output."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import pytest

from meshplane.manifests import Manifest, ManifestError, Translation, parse_documents, translate

MESH = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: shop}
spec:
  namespaceSelector: {matchLabels: {mesh: shop}}
"""
LABELS: dict[str, dict[str, str]] = {
    ns: {"mesh": "shop"} for ns in ("default", "front", "back", "edge", "other")
}


def manifests(*documents: str, source: str = "test.yaml") -> list[Manifest]:
    return parse_documents("\n---\n".join(documents), source)


def run(
    *documents: str, namespaces: Mapping[str, Mapping[str, str]] | None = None, strict: bool = False
) -> Translation:
    return translate(
        manifests(*documents),
        namespaces=LABELS if namespaces is None else namespaces,
        strict=strict,
    )


def specs(translation: Translation) -> dict[str, Any]:
    return {str(r.key): r.spec for r in translation.resources}


def error(*documents: str, namespaces: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The message of the ManifestError the documents raise (translated strictly)."""
    with pytest.raises(ManifestError) as raised:
        run(*documents, namespaces=namespaces, strict=True)
    return str(raised.value)


def obj(kind: str, name: str, namespace: str = "front", spec: str = "{}", labels: str = "") -> str:
    label_line = f"\n  labels: {labels}" if labels else ""
    return f"""
apiVersion: appmesh.k8s.aws/v1beta2
kind: {kind}
metadata:
  name: {name}
  namespace: {namespace}{label_line}
spec: {spec}
"""


NODE = obj(
    "VirtualNode",
    "cart",
    spec="""
  listeners: [{portMapping: {port: 8080, protocol: http}}]
  serviceDiscovery: {dns: {hostname: cart.front}}
""",
)


# --- names ---------------------------------------------------------------------------------


def test_default_and_explicit_aws_names() -> None:
    translation = run(
        MESH,
        NODE,
        obj("VirtualNode", "pay", spec="{awsName: payments}"),
        obj("VirtualService", "cart"),
        obj("VirtualService", "pay", spec="{awsName: pay.example.com}"),
        obj(
            "VirtualRouter", "cart", spec="{listeners: [{portMapping: {port: 80, protocol: http}}]}"
        ),
        gateway("gw", "{namespaceSelector: {}}", namespace="front"),
        obj("GatewayRoute", "r", spec=GR_SPEC),
        obj("GatewayRoute", "r2", spec="{awsName: second, " + GR_SPEC[1:]),
    )
    assert list(specs(translation)) == [
        "mesh/shop",
        "mesh/shop/virtualNode/cart_front",
        "mesh/shop/virtualNode/payments",
        "mesh/shop/virtualRouter/cart_front",
        "mesh/shop/virtualService/cart.front",
        "mesh/shop/virtualService/pay.example.com",
        "mesh/shop/virtualGateway/gw_front",
        "mesh/shop/virtualGateway/gw_front/gatewayRoute/r_front",
        "mesh/shop/virtualGateway/gw_front/gatewayRoute/second",
    ]


GR_SPEC = """{httpRoute: {match: {prefix: /}, action: {target: {virtualService:
  {virtualServiceRef: {name: cart}}}}}}"""


def test_mesh_aws_name_spec_and_owner() -> None:
    translation = run(
        """
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: shop}
spec:
  awsName: shop-prod
  namespaceSelector: {matchLabels: {mesh: shop}}
  egressFilter: {type: ALLOW_ALL}
  meshServiceDiscovery: {ipPreference: IPv4_ONLY}
  meshOwner: "111122223333"
""",
        obj("VirtualService", "cart"),
    )
    assert specs(translation) == {
        "mesh/shop-prod": {
            "egressFilter": {"type": "ALLOW_ALL"},
            "serviceDiscovery": {"ipPreference": "IPv4_ONLY"},
        },
        "mesh/shop-prod/virtualService/cart.front": {},
    }
    assert {r.mesh_owner for r in translation.resources} == {"111122223333"}


# --- mesh membership -----------------------------------------------------------------------


def mesh(name: str, selector: str) -> str:
    return f"""
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {{name: {name}}}
spec: {{namespaceSelector: {selector}}}
"""


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ("{matchLabels: {team: a}}", {"team": "a"}, True),
        ("{matchLabels: {team: a}}", {"team": "b"}, False),
        ("{matchExpressions: [{key: team, operator: In, values: [a, b]}]}", {"team": "b"}, True),
        ("{matchExpressions: [{key: team, operator: In, values: [a]}]}", {}, False),
        ("{matchExpressions: [{key: team, operator: NotIn, values: [a]}]}", {}, True),
        ("{matchExpressions: [{key: team, operator: NotIn, values: [a]}]}", {"team": "a"}, False),
        ("{matchExpressions: [{key: team, operator: Exists}]}", {"team": ""}, True),
        ("{matchExpressions: [{key: team, operator: Exists}]}", {}, False),
        ("{matchExpressions: [{key: team, operator: DoesNotExist}]}", {}, True),
        ("{matchExpressions: [{key: team, operator: DoesNotExist}]}", {"team": "a"}, False),
        (
            "{matchLabels: {team: a}, matchExpressions: [{key: tier, operator: In, values: [x]}]}",
            {"team": "a"},
            False,
        ),
        ("{}", {}, True),
        ("{matchLabels: {kubernetes.io/metadata.name: front}}", {}, True),
    ],
)
def test_namespace_selectors(selector: str, labels: dict[str, str], selected: bool) -> None:
    documents = (mesh("m", selector), obj("VirtualService", "cart"))
    if selected:
        assert list(specs(run(*documents, namespaces={"front": labels}))) == [
            "mesh/m",
            "mesh/m/virtualService/cart.front",
        ]
    else:
        assert "namespace front is not part of any mesh" in error(
            *documents, namespaces={"front": labels}
        )


def test_a_mesh_without_selector_has_no_namespaces() -> None:
    message = error(mesh("m", "null"), obj("VirtualService", "cart"), namespaces={})
    assert message == (
        "test.yaml#1 VirtualService front/cart: namespace front is not part of any mesh: "
        "label it (meshplane label namespace front mesh=...)"
    )


def test_unlabelled_namespace_error_suggests_the_meshs_labels() -> None:
    message = error(MESH, obj("VirtualService", "cart", namespace="nowhere"))
    assert message == (
        "test.yaml#1 VirtualService nowhere/cart: namespace nowhere is not part of any mesh: "
        "label it (meshplane label namespace nowhere mesh=shop)"
    )


def test_namespace_selected_by_two_meshes() -> None:
    message = error(
        mesh("a", "{}"), mesh("b", "{matchLabels: {mesh: shop}}"), obj("VirtualService", "cart")
    )
    assert message == (
        "test.yaml#2 VirtualService front/cart: namespace front is selected by several meshes "
        "(a, b): the namespaceSelectors of meshes must not overlap"
    )


def test_namespace_documents_merge_with_known_labels() -> None:
    namespace = """
apiVersion: v1
kind: Namespace
metadata: {name: front, labels: {mesh: shop}}
"""
    translation = run(
        MESH, namespace, obj("VirtualService", "cart"), namespaces={"front": {"a": "b"}}
    )
    assert translation.namespaces == {"front": {"a": "b", "mesh": "shop"}}
    assert "mesh/shop/virtualService/cart.front" in specs(translation)


def test_mesh_ref_is_accepted_when_it_matches() -> None:
    good = obj("VirtualService", "cart", spec="{meshRef: {name: shop, uid: abc}}")
    assert "mesh/shop/virtualService/cart.front" in specs(run(MESH, good))
    bad = obj("VirtualService", "cart", spec="{meshRef: {name: other}}")
    assert error(MESH, bad) == (
        "test.yaml#1 VirtualService front/cart: spec.meshRef.name: names mesh other, but "
        "namespace front belongs to mesh shop"
    )


def test_objects_default_to_the_default_namespace() -> None:
    document = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: cart}
"""
    assert "mesh/shop/virtualService/cart.default" in specs(run(MESH, document))


# --- references ----------------------------------------------------------------------------


def test_references_resolve_to_aws_names_in_the_referrers_namespace_by_default() -> None:
    translation = run(
        MESH,
        NODE,
        obj(
            "VirtualService",
            "cart",
            spec="{provider: {virtualNode: {virtualNodeRef: {name: cart}}}}",
        ),
        obj(
            "VirtualService",
            "checkout",
            namespace="back",
            spec="""{awsName: checkout.local, provider: {virtualRouter: {virtualRouterRef:
              {name: checkout}}}}""",
        ),
        obj(
            "VirtualRouter",
            "checkout",
            namespace="back",
            spec="""
  listeners: [{portMapping: {port: 80, protocol: http}}]
  routes:
    - name: main
      priority: 10
      httpRoute:
        match: {prefix: /}
        action: {weightedTargets: [{virtualNodeRef: {name: cart, namespace: front}, weight: 1}]}
""",
        ),
        obj(
            "VirtualNode",
            "web",
            spec="{backends: [{virtualService: {virtualServiceRef: {name: checkout, namespace: back}}}]}",
        ),
    )
    result = specs(translation)
    assert result["mesh/shop/virtualService/cart.front"] == {
        "provider": {"virtualNode": {"virtualNodeName": "cart_front"}}
    }
    assert result["mesh/shop/virtualService/checkout.local"] == {
        "provider": {"virtualRouter": {"virtualRouterName": "checkout_back"}}
    }
    assert result["mesh/shop/virtualRouter/checkout_back/route/main"] == {
        "priority": 10,
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {"weightedTargets": [{"virtualNode": "cart_front", "weight": 1}]},
        },
    }
    assert result["mesh/shop/virtualNode/web_front"] == {
        "backends": [{"virtualService": {"virtualServiceName": "checkout.local"}}]
    }


def test_missing_reference_names_the_ref() -> None:
    node = obj(
        "VirtualNode",
        "web",
        spec="{backends: [{virtualService: {virtualServiceRef: {name: nope}}}]}",
    )
    assert error(MESH, node) == (
        "test.yaml#1 VirtualNode front/web: spec.backends[0].virtualService.virtualServiceRef: "
        "refers to VirtualService front/nope, which is not among the manifests"
    )


def test_reference_into_another_mesh_is_refused() -> None:
    other = mesh("other", "{matchLabels: {mesh: other}}")
    node = obj(
        "VirtualNode",
        "web",
        spec="{backends: [{virtualService: {virtualServiceRef: {name: cart, namespace: o}}}]}",
    )
    message = error(
        MESH,
        other,
        obj("VirtualService", "cart", namespace="o"),
        node,
        namespaces={**LABELS, "o": {"mesh": "other"}},
    )
    assert message == (
        "test.yaml#3 VirtualNode front/web: spec.backends[0].virtualService.virtualServiceRef: "
        "refers to VirtualService o/cart of mesh other, but this object is in mesh shop"
    )


ARN = "arn:aws:appmesh:eu-west-1:111122223333:mesh/shop"


def test_arn_references_are_parsed_for_the_name() -> None:
    translation = run(
        MESH,
        obj(
            "VirtualNode",
            "web",
            spec=f"{{backends: [{{virtualService: {{virtualServiceARN: '{ARN}/virtualService/ext.example.com'}}}}]}}",
        ),
        obj(
            "VirtualService",
            "a",
            spec=f"{{provider: {{virtualNode: {{virtualNodeARN: '{ARN}/virtualNode/n1'}}}}}}",
        ),
        obj(
            "VirtualService",
            "b",
            spec=f"{{provider: {{virtualRouter: {{virtualRouterARN: '{ARN}/virtualRouter/r1'}}}}}}",
        ),
        obj(
            "VirtualRouter",
            "r",
            spec=f"""
  listeners: [{{portMapping: {{port: 80, protocol: tcp}}}}]
  routes:
    - name: tcp
      tcpRoute:
        action: {{weightedTargets: [{{virtualNodeARN: '{ARN}/virtualNode/n2', weight: 100}}]}}
""",
        ),
    )
    result = specs(translation)
    assert result["mesh/shop/virtualNode/web_front"] == {
        "backends": [{"virtualService": {"virtualServiceName": "ext.example.com"}}]
    }
    assert result["mesh/shop/virtualService/a.front"] == {
        "provider": {"virtualNode": {"virtualNodeName": "n1"}}
    }
    assert result["mesh/shop/virtualService/b.front"] == {
        "provider": {"virtualRouter": {"virtualRouterName": "r1"}}
    }
    assert result["mesh/shop/virtualRouter/r_front/route/tcp"] == {
        "tcpRoute": {"action": {"weightedTargets": [{"virtualNode": "n2", "weight": 100}]}}
    }


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        ("nonsense", "invalid ARN 'nonsense'"),
        (
            "arn:aws:appmesh:eu-west-1:111122223333:mesh/shop",
            "invalid App Mesh resource 'mesh/shop' in ARN (expected mesh/<mesh>/virtualNode/<name>)",
        ),
        (f"{ARN}/virtualRouter/r1", "expected a virtualNode ARN, got a virtualRouter ARN"),
    ],
)
def test_bad_arns(arn: str, message: str) -> None:
    service = obj(
        "VirtualService", "a", spec=f"{{provider: {{virtualNode: {{virtualNodeARN: '{arn}'}}}}}}"
    )
    assert error(MESH, service) == (
        f"test.yaml#1 VirtualService front/a: spec.provider.virtualNode.virtualNodeARN: {message}"
    )


def test_ref_and_arn_are_exclusive_and_one_is_required() -> None:
    both = obj(
        "VirtualService",
        "a",
        spec=f"{{provider: {{virtualNode: {{virtualNodeARN: '{ARN}/virtualNode/x', virtualNodeRef: {{name: x}}}}}}}}",
    )
    assert error(MESH, both).endswith(
        "spec.provider.virtualNode: only one of virtualNodeRef or virtualNodeARN may be set"
    )
    neither = obj("VirtualService", "a", spec="{provider: {virtualNode: {}}}")
    assert error(MESH, neither).endswith(
        "spec.provider.virtualNode: one of virtualNodeRef or virtualNodeARN is required"
    )


# --- BackendGroups -------------------------------------------------------------------------


def test_backend_groups_expand_into_deduplicated_backends() -> None:
    translation = run(
        MESH,
        obj("VirtualService", "a"),
        obj("VirtualService", "b"),
        obj("VirtualService", "c", namespace="back"),
        obj("VirtualService", "d", namespace="back"),
        obj(
            "BackendGroup",
            "group",
            spec="{virtualservices: [{name: b}, {name: a}, {name: c, namespace: back}]}",
        ),
        obj(
            "VirtualNode",
            "web",
            spec="""
  backends: [{virtualService: {virtualServiceRef: {name: a}}}]
  backendGroups: [{name: group}, {name: '*', namespace: back}]
""",
        ),
    )
    assert specs(translation)["mesh/shop/virtualNode/web_front"] == {
        "backends": [
            {"virtualService": {"virtualServiceName": "a.front"}},
            {"virtualService": {"virtualServiceName": "b.front"}},
            {"virtualService": {"virtualServiceName": "c.back"}},
            {"virtualService": {"virtualServiceName": "d.back"}},
        ]
    }
    assert not any(r.origin.kind == "BackendGroup" for r in translation.resources)


def test_missing_backend_group() -> None:
    node = obj("VirtualNode", "web", spec="{backendGroups: [{name: nope}]}")
    assert error(MESH, node) == (
        "test.yaml#1 VirtualNode front/web: spec.backendGroups[0]: refers to BackendGroup "
        "front/nope, which is not among the manifests"
    )


def test_backend_group_with_missing_service() -> None:
    group = obj("BackendGroup", "g", spec="{virtualservices: [{name: nope}]}")
    node = obj("VirtualNode", "web", spec="{backendGroups: [{name: g}]}")
    assert error(MESH, group, node) == (
        "test.yaml#2 VirtualNode front/web: spec.backendGroups[0]: spec.virtualservices[0] of "
        "BackendGroup front/g refers to VirtualService front/nope, which is not among the manifests"
    )


# --- gateways ------------------------------------------------------------------------------


GATEWAY_LISTENERS = "listeners: [{portMapping: {port: 8080, protocol: http}}]"


def gateway(name: str, spec: str, namespace: str = "edge") -> str:
    if "listeners" not in spec:
        spec = "{" + GATEWAY_LISTENERS + (", " + spec[1:] if spec != "{}" else "}")
    return obj("VirtualGateway", name, namespace=namespace, spec=spec)


ROUTE = obj("GatewayRoute", "r", spec=GR_SPEC, labels="{tier: public}")
SERVICE = obj("VirtualService", "cart")


def test_gateway_routes_join_the_gateway_whose_selectors_match() -> None:
    translation = run(
        MESH,
        SERVICE,
        gateway(
            "public",
            "{namespaceSelector: {matchLabels: {mesh: shop}}, gatewayRouteSelector: {matchLabels: {tier: public}}}",
        ),
        gateway(
            "private",
            "{namespaceSelector: {}, gatewayRouteSelector: {matchLabels: {tier: private}}}",
        ),
        gateway("elsewhere", "{namespaceSelector: {matchLabels: {x: y}}}"),
        gateway("nothing", "{}"),
        ROUTE,
    )
    assert "mesh/shop/virtualGateway/public_edge/gatewayRoute/r_front" in specs(translation)


def test_no_gateway_selects_the_route() -> None:
    message = error(
        MESH, SERVICE, gateway("g", "{namespaceSelector: {matchLabels: {x: y}}}"), ROUTE
    )
    assert message.startswith(
        "test.yaml#3 GatewayRoute front/r: no VirtualGateway selects this GatewayRoute"
    )


def test_several_gateways_select_the_route() -> None:
    message = error(
        MESH,
        SERVICE,
        gateway("a", "{namespaceSelector: {}}"),
        gateway("b", "{namespaceSelector: {}}"),
        ROUTE,
    )
    assert message == (
        "test.yaml#4 GatewayRoute front/r: several VirtualGateways select this GatewayRoute "
        "(edge/a, edge/b): make their selectors exclusive or set spec.virtualGatewayRef"
    )


def test_explicit_virtual_gateway_ref() -> None:
    route = obj(
        "GatewayRoute", "r", spec="{virtualGatewayRef: {name: b, namespace: edge}, " + GR_SPEC[1:]
    )
    translation = run(
        MESH,
        SERVICE,
        gateway("a", "{namespaceSelector: {}}"),
        gateway("b", "{namespaceSelector: {}}"),
        route,
    )
    assert "mesh/shop/virtualGateway/b_edge/gatewayRoute/r_front" in specs(translation)
    missing = obj("GatewayRoute", "r", spec="{virtualGatewayRef: {name: zz}, " + GR_SPEC[1:])
    assert error(MESH, SERVICE, missing) == (
        "test.yaml#2 GatewayRoute front/r: spec.virtualGatewayRef: refers to VirtualGateway "
        "front/zz, which is not among the manifests"
    )


def test_grpc_gateway_route_with_rewrite_and_arn_target() -> None:
    route = obj(
        "GatewayRoute",
        "g",
        spec=f"""
  priority: 5
  grpcRoute:
    match: {{serviceName: shop.Cart, port: 8080}}
    action:
      target: {{virtualService: {{virtualServiceARN: '{ARN}/virtualService/cart.front'}}, port: 9000}}
      rewrite: {{hostname: {{defaultTargetHostname: DISABLED}}}}
""",
    )
    result = specs(run(MESH, gateway("gw", "{namespaceSelector: {}}"), route))
    assert result["mesh/shop/virtualGateway/gw_edge/gatewayRoute/g_front"] == {
        "priority": 5,
        "grpcRoute": {
            "match": {"serviceName": "shop.Cart", "port": 8080},
            "action": {
                "target": {"virtualService": {"virtualServiceName": "cart.front"}, "port": 9000},
                "rewrite": {"hostname": {"defaultTargetHostname": "DISABLED"}},
            },
        },
    }


# --- field mapping -------------------------------------------------------------------------


def test_tls_fields_are_renamed_to_the_api_spelling() -> None:
    node = obj(
        "VirtualNode",
        "web",
        spec="""
  podSelector: {matchLabels: {app: web}}
  listeners:
    - portMapping: {port: 443, protocol: http}
      tls:
        mode: STRICT
        certificate: {acm: {certificateARN: arn:aws:acm:eu-west-1:111122223333:certificate/c}}
  serviceDiscovery: {dns: {hostname: web}}
  backendDefaults:
    clientPolicy:
      tls:
        ports: [443]
        validation:
          trust: {acm: {certificateAuthorityARNs: [arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/ca]}}
          subjectAlternativeNames: {match: {exact: [web.front]}}
  logging: {accessLog: {file: {path: /dev/stdout, format: {json: [{key: status, value: "%RESPONSE_CODE%"}]}}}}
""",
    )
    assert specs(run(MESH, node))["mesh/shop/virtualNode/web_front"] == {
        "listeners": [
            {
                "portMapping": {"port": 443, "protocol": "http"},
                "tls": {
                    "mode": "STRICT",
                    "certificate": {
                        "acm": {
                            "certificateArn": "arn:aws:acm:eu-west-1:111122223333:certificate/c"
                        }
                    },
                },
            }
        ],
        "serviceDiscovery": {"dns": {"hostname": "web"}},
        "backendDefaults": {
            "clientPolicy": {
                "tls": {
                    "ports": [443],
                    "validation": {
                        "trust": {
                            "acm": {
                                "certificateAuthorityArns": [
                                    "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/ca"
                                ]
                            }
                        },
                        "subjectAlternativeNames": {"match": {"exact": ["web.front"]}},
                    },
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


def test_gateway_listener_acm_trust_is_refused() -> None:
    document = gateway(
        "gw",
        """
  listeners:
    - portMapping: {port: 443, protocol: http}
      tls:
        mode: STRICT
        certificate: {sds: {secretName: gw}}
        validation: {trust: {acm: {certificateAuthorityARNs: [x]}}}
""",
    )
    assert error(MESH, document) == (
        "test.yaml#1 VirtualGateway edge/gw: spec.listeners[0].tls.validation.trust.acm: the "
        "App Mesh API has no ACM trust for virtual gateway listeners: use file or sds"
    )


# --- errors --------------------------------------------------------------------------------


def router(routes: str) -> str:
    return f"""
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualRouter
metadata: {{name: app-router, namespace: consumer}}
spec:
  listeners: [{{portMapping: {{port: 8085, protocol: http}}}}]
  routes: {routes}
"""


def test_error_message_names_file_document_object_and_field() -> None:
    documents = manifests(
        MESH,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: consumer, labels: {mesh: shop}}",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}",
        router("[{name: r, httpRoute: {match: {prefix: x}, action: {weightedTargets: []}}}]"),
        source="webapp.yaml",
    )
    with pytest.raises(ManifestError) as raised:
        translate(documents, namespaces={})
    assert str(raised.value) == (
        "webapp.yaml#3 VirtualRouter consumer/app-router: spec.routes[0].httpRoute.match.prefix: "
        "must start with '/'"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "{listeners: [{portMaping: {port: 1}}]}",
            "spec.listeners[0].portMaping: unknown field (did you mean portMapping?)",
        ),
        (
            "{listeners: [{portMapping: {port: '80', protocol: http}}]}",
            "spec.listeners[0].portMapping.port: must be an integer, not a string",
        ),
        (
            "{listeners: [{portMapping: {protocol: http}}]}",
            "spec.listeners[0].portMapping.port: required",
        ),
        ("{listeners: {}}", "spec.listeners: must be a list, not a mapping"),
        ("[]", "spec: must be a mapping, not a list"),
        (
            "{podSelector: {matchLabels: {app: 1}}}",
            "spec.podSelector.matchLabels.app: must be a string (quote it)",
        ),
        (
            "{podSelector: {matchExpressions: [{key: a, operator: Maybe}]}}",
            "spec.podSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist",
        ),
        (
            "{listeners: [{portMapping: {port: 80, protocol: http}}]}",
            "spec.serviceDiscovery: required when listeners are given (ServiceDiscovery must be "
            "specified when a listener is specified)",
        ),
        (
            "{serviceDiscovery: {dns: {hostname: x}}, listeners: [{portMapping: {port: 80, protocol: http}, connectionPool: {http: {maxConnections: 1}, tcp: {maxConnections: 1}}}]}",
            "spec.listeners[0].connectionPool: only one type of connection pool is allowed",
        ),
        (
            "{backends: [{virtualService: {virtualServiceRef: {name: a}}}, {virtualService: {virtualServiceRef: {name: a, namespace: front}}}]}",
            "spec.backends[1].virtualService.virtualServiceRef: duplicate backend: the same virtual service is spec.backends[0]",
        ),
        (
            "{backends: [{virtualService: {virtualServiceRef: {}}}]}",
            "spec.backends[0].virtualService.virtualServiceRef.name: required",
        ),
    ],
)
def test_virtual_node_errors(spec: str, message: str) -> None:
    assert error(MESH, obj("VirtualNode", "web", spec=spec)) == (
        f"test.yaml#1 VirtualNode front/web: {message}"
    )


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        (
            "[{name: a, tcpRoute: {action: {weightedTargets: [{virtualNodeARN: 'arn:aws:appmesh:r:1:mesh/m/virtualNode/n', weight: 1}]}}}, {name: a, tcpRoute: {action: {weightedTargets: []}}}]",
            "spec.routes[1].name: duplicate route name 'a' (also spec.routes[0])",
        ),
        (
            "[{name: a, httpRoute: {match: {}, action: {weightedTargets: []}}}]",
            "spec.routes[0].httpRoute.match: either prefix or path must be specified",
        ),
        (
            "[{name: a, http2Route: {match: {prefix: /, path: {exact: /a}}, action: {weightedTargets: []}}}]",
            "spec.routes[0].http2Route.match: only one of prefix or path may be specified",
        ),
        (
            "[{name: a, httpRoute: {match: {path: {}}, action: {weightedTargets: []}}}]",
            "spec.routes[0].httpRoute.match.path: exactly one of exact or regex must be specified",
        ),
        (
            "[{name: a, httpRoute: {match: {prefix: /, headers: [{name: h, match: {exact: a, prefix: b}}]}, action: {weightedTargets: []}}}]",
            "spec.routes[0].httpRoute.match.headers[0].match: exactly one of exact, prefix, range, regex or suffix must be specified",
        ),
        (
            "[{name: a, httpRoute: {match: {prefix: /, headers: [{name: h, match: {range: {start: 5, end: 5}}}]}, action: {weightedTargets: []}}}]",
            "spec.routes[0].httpRoute.match.headers[0].match.range: end must be greater than start",
        ),
        ("[{httpRoute: {}}]", "spec.routes[0].name: required"),
    ],
)
def test_virtual_router_errors(routes: str, message: str) -> None:
    assert error(MESH, router(routes), namespaces={"consumer": {"mesh": "shop"}}) == (
        f"test.yaml#1 VirtualRouter consumer/app-router: {message}"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{}", "spec: one of httpRoute, http2Route or grpcRoute is required"),
        (
            "{httpRoute: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceRef: {name: a}}}}}, http2Route: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceRef: {name: a}}}}}}",
            "spec: only one route type is allowed, found httpRoute and http2Route",
        ),
        (
            "{httpRoute: {match: {}, action: {target: {virtualService: {virtualServiceRef: {name: a}}}}}}",
            "spec.httpRoute.match: either prefix, path or hostname must be specified",
        ),
        (
            "{httpRoute: {match: {hostname: {exact: a, suffix: b}}, action: {target: {virtualService: {virtualServiceRef: {name: a}}}}}}",
            "spec.httpRoute.match.hostname: exactly one of exact or suffix must be specified",
        ),
        (
            "{httpRoute: {match: {prefix: /, queryParameters: [{name: q, match: {}}]}, action: {target: {virtualService: {virtualServiceRef: {name: a}}}}}}",
            "spec.httpRoute.match.queryParameters[0].match: exact is required when match is given (leave match out to match any value)",
        ),
        (
            "{httpRoute: {match: {prefix: /}, action: {rewrite: {prefix: {value: /a}}, target: {virtualService: {virtualServiceRef: {name: a}}}}}}",
            "spec.httpRoute.action.rewrite.prefix.value: must start and end with '/'",
        ),
        (
            "{httpRoute: {match: {prefix: /}, action: {rewrite: {prefix: {value: /a/, defaultPrefix: ENABLED}}, target: {virtualService: {virtualServiceRef: {name: a}}}}}}",
            "spec.httpRoute.action.rewrite.prefix: only one of defaultPrefix or value may be specified",
        ),
        (
            "{httpRoute: {match: {prefix: /}, action: {rewrite: {}, target: {virtualService: {virtualServiceRef: {name: a}}}}}}",
            "spec.httpRoute.action.rewrite: one of prefix, path or hostname must be specified",
        ),
        (
            "{grpcRoute: {match: {}, action: {target: {virtualService: {virtualServiceRef: {name: a}}}}}}",
            "spec.grpcRoute.match: either serviceName or hostname must be specified",
        ),
        (
            "{httpRoute: {match: {prefix: /}, action: {target: {}}}}",
            "spec.httpRoute.action.target.virtualService: required",
        ),
    ],
)
def test_gateway_route_errors(spec: str, message: str) -> None:
    assert error(MESH, obj("GatewayRoute", "r", spec=spec)) == (
        f"test.yaml#1 GatewayRoute front/r: {message}"
    )


def test_unsupported_versions_and_kinds() -> None:
    old = "apiVersion: appmesh.k8s.aws/v1beta1\nkind: Mesh\nmetadata: {name: m}"
    assert error(old) == (
        "test.yaml#0 Mesh m: apiVersion: appmesh.k8s.aws/v1beta1 is not supported: meshplane "
        "reads appmesh.k8s.aws/v1beta2 manifests"
    )
    unknown = "apiVersion: appmesh.k8s.aws/v1beta2\nkind: Route\nmetadata: {name: r, namespace: x}"
    assert error(unknown) == (
        "test.yaml#0 Route x/r: kind: appmesh.k8s.aws/v1beta2 has no kind Route (it has Mesh, "
        "VirtualNode, VirtualService, VirtualRouter, VirtualGateway, GatewayRoute, BackendGroup)"
    )
    top = "apiVersion: appmesh.k8s.aws/v1beta2\nkind: Mesh\nmetadata: {name: m}\nspex: {}"
    assert error(top) == "test.yaml#0 Mesh m: spex: unknown field (did you mean spec?)"


def test_all_problems_are_reported_together() -> None:
    message = error(
        MESH,
        obj("VirtualNode", "a", spec="{listeners: 1}"),
        obj("VirtualService", "b", spec="{provider: {virtualThing: {}}}"),
    )
    assert message.splitlines() == [
        "test.yaml#1 VirtualNode front/a: spec.listeners: must be a list, not a number",
        "test.yaml#2 VirtualService front/b: spec.provider.virtualThing: unknown field (did you "
        "mean virtualNode?)",
    ]


def test_two_objects_with_one_aws_name() -> None:
    message = error(
        MESH,
        obj("VirtualService", "a", spec="{awsName: same}"),
        obj("VirtualService", "b", spec="{awsName: same}"),
    )
    assert message == (
        "test.yaml#2 VirtualService front/b: VirtualService mesh/shop/virtualService/same is "
        "also produced by test.yaml#1 VirtualService front/a: give one of them another "
        "spec.awsName"
    )


# --- skipped kinds, determinism --------------------------------------------------------------


def test_non_mesh_kinds_are_skipped_with_a_reason() -> None:
    translation = run(
        MESH,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: front}\ndata: {a: b}",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}",
    )
    assert [(m.ref(), why) for m, why in translation.skipped] == [
        ("test.yaml#1 ConfigMap front/c", "not an App Mesh resource (v1/ConfigMap)"),
        ("test.yaml#2 Ingress i", "not an App Mesh resource (networking.k8s.io/v1/Ingress)"),
    ]


def test_output_is_deterministic_and_independent_of_input_order() -> None:
    documents = manifests(
        MESH,
        NODE,
        obj(
            "VirtualService",
            "cart",
            spec="{provider: {virtualNode: {virtualNodeRef: {name: cart}}}}",
        ),
        gateway("gw", "{namespaceSelector: {}}", namespace="front"),
        obj("GatewayRoute", "r", spec=GR_SPEC),
        router(
            "[{name: b, tcpRoute: {action: {weightedTargets: [{virtualNodeRef: {name: cart, namespace: front}, weight: 1}]}}}, {name: a, tcpRoute: {action: {weightedTargets: [{virtualNodeRef: {name: cart, namespace: front}, weight: 1}]}}}]"
        ),
    )
    labels = {**LABELS, "consumer": {"mesh": "shop"}}
    first = translate(documents, namespaces=labels)
    assert translate(documents, namespaces=labels) == first
    shuffled = list(documents)
    random.Random(7).shuffle(shuffled)
    again = translate(shuffled, namespaces=labels)
    assert [(r.key, r.spec) for r in again.resources] == [(r.key, r.spec) for r in first.resources]
    assert [r.key.name for r in first.resources if r.key.kind == "route"] == ["a", "b"]


def test_an_object_given_again_counts_once_the_last_winning() -> None:
    first = obj("VirtualService", "cart")
    second = obj(
        "VirtualService",
        "cart",
        spec="{provider: {virtualNode: {virtualNodeARN: 'arn:aws:appmesh:r:1:mesh/shop/virtualNode/x'}}}",
    )
    translation = run(MESH, first, MESH, second)
    assert specs(translation)["mesh/shop/virtualService/cart.front"] == {
        "provider": {"virtualNode": {"virtualNodeName": "x"}}
    }
    assert translation.owners[translation.resources[-1].key].index == 3


# --- API validation, reported at the manifest's paths -----------------------------------------


def test_api_model_problems_are_reported_at_crd_paths() -> None:
    node = obj(
        "VirtualNode",
        "web",
        spec="{listeners: [{portMapping: {port: 70000, protocol: http}}], serviceDiscovery: {dns: {hostname: x}}}",
    )
    assert error(MESH, node) == (
        "test.yaml#1 VirtualNode front/web: spec.listeners[0].portMapping.port: must be at most "
        "65535 (got 70000)"
    )


def test_api_problems_in_routes_point_into_the_router() -> None:
    routes = "[{name: a, httpRoute: {match: {prefix: /}, action: {weightedTargets: []}}}]"
    assert error(MESH, router(routes), namespaces={"consumer": {"mesh": "shop"}}) == (
        "test.yaml#1 VirtualRouter consumer/app-router: spec.routes[0].httpRoute.action."
        "weightedTargets: must have at least 1 item(s) (got 0)"
    )


def test_api_problems_under_renamed_fields_name_both_spellings() -> None:
    document = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: m}
spec: {meshServiceDiscovery: {ipPreference: IPv5}}
"""
    assert error(document) == (
        "test.yaml#0 Mesh m: spec.meshServiceDiscovery.ipPreference: must be one of "
        "'IPv6_PREFERRED', 'IPv4_PREFERRED', 'IPv4_ONLY', 'IPv6_ONLY' (got 'IPv5') "
        "(App Mesh API field spec.serviceDiscovery.ipPreference)"
    )


def test_names_follow_kubernetes_rules() -> None:
    assert error(MESH, obj("VirtualService", "Cart")) == (
        "test.yaml#1 VirtualService front/Cart: metadata.name: 'Cart' is not a valid name: at "
        "most 253 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"
    )
    assert error(MESH, obj("VirtualService", "cart", namespace="a.b")) == (
        "test.yaml#1 VirtualService a.b/cart: metadata.namespace: 'a.b' is not a valid name: at "
        "most 63 lowercase letters, digits or '-', starting and ending with a letter or digit"
    )


def test_odd_field_names_are_quoted_and_kept_on_one_line() -> None:
    document = obj("VirtualService", "cart", spec='{"new\\nline": 1}')
    assert error(MESH, document) == (
        'test.yaml#1 VirtualService front/cart: spec["new\\nline"]: unknown field (known here: '
        "awsName, provider, meshRef)"
    )


def test_app_mesh_names_have_at_most_255_characters() -> None:
    long_name = "n" * 250
    assert error(MESH, obj("VirtualNode", long_name)) == (
        f"test.yaml#1 VirtualNode front/{long_name}: metadata.name: the App Mesh name "
        f"'{long_name}_front' must have 1 to 255 characters; set a shorter spec.awsName"
    )
    routes = f"[{{name: '{'r' * 256}', tcpRoute: {{action: {{weightedTargets: [{{virtualNodeARN: '{ARN}/virtualNode/x', weight: 1}}]}}}}}}]"
    assert error(MESH, router(routes), namespaces={"consumer": {"mesh": "shop"}}).startswith(
        "test.yaml#1 VirtualRouter consumer/app-router: spec.routes[0].name: the App Mesh name"
    )
