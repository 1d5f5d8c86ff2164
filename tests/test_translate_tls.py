"""TLS translation: listener TLS modes, client TLS policies, the mesh mTLS switch, SDS names;
and the real Envoy accepts all of it (``envoy --mode validate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshplane.model import Kind
from meshplane.translate import (
    MTLS_TAG,
    MeshSecurity,
    ProxyIdentity,
    ProxyOptions,
    ProxyResources,
    translate_proxy,
)
from meshplane.xds import Snapshot, types
from tests.support.translate import (
    Json,
    MeshBuilder,
    by_name,
    client_node,
    dns,
    envoy_validate,
    http_manager,
    listener,
    provider_node,
    static_bootstrap,
)

TD = "meshplane.local"
ME = f"spiffe://{TD}/mesh/demo/virtualNode/web"
BUNDLE = f"spiffe://{TD}"
SDS_TLS: Json = {
    "certificate": {"sds": {"secretName": ME}},
    "validation": {
        "trust": {"sds": {"secretName": BUNDLE}},
        "subjectAlternativeNames": {
            "match": {"exact": [f"spiffe://{TD}/mesh/demo/virtualNode/front", "front.local"]}
        },
    },
}
CLIENT_TLS: Json = {
    "tls": {
        "validation": {
            "trust": {"sds": {"secretName": BUNDLE}},
            "subjectAlternativeNames": {"match": {"exact": [ME]}},
        }
    }
}


def translate(
    mesh: MeshBuilder,
    node: str,
    security: MeshSecurity | None = None,
    options: ProxyOptions | None = None,
) -> ProxyResources:
    return translate_proxy(
        mesh.view(), ProxyIdentity(mesh.name, Kind.VIRTUAL_NODE, node), options, security
    )


def web_mesh(
    web_tls: Json | None = None,
    *,
    client: Json | None = None,
    defaults: Json | None = None,
    protocol: str = "http",
) -> MeshBuilder:
    """``front`` calls ``web.local`` (provided by ``web`` on port 9080)."""
    mesh = MeshBuilder()
    extra: Json = {} if web_tls is None else {"tls": web_tls}
    mesh.node("web", provider_node("web.local", listener(9080, protocol, **extra)))
    mesh.service("web.local", node="web")
    backend: Json = {"virtualServiceName": "web.local"}
    if client is not None:
        backend["clientPolicy"] = client
    front: Json = {
        "backends": [{"virtualService": backend}],
        "listeners": [listener(8080)],
        "serviceDiscovery": dns("front.local"),
    }
    if defaults is not None:
        front["backendDefaults"] = {"clientPolicy": defaults}
    mesh.node("front", front)
    return mesh


def ingress(resources: ProxyResources, port: int = 9080) -> Any:
    return by_name(resources.listeners)[f"lds_ingress_127.0.0.1_{port}"]


def downstream(chain: Any) -> tls_pb2.DownstreamTlsContext:
    context = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.name == "envoy.transport_sockets.tls"
    assert chain.transport_socket.typed_config.Unpack(context)
    return context


def upstream(cluster: Any) -> tls_pb2.UpstreamTlsContext | None:
    if not cluster.HasField("transport_socket"):
        return None
    context = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(context)
    return context


def egress_cluster(resources: ProxyResources) -> Any:
    return by_name(resources.clusters)["cds_egress_demo_web_http_9080"]


# --- listeners ---------------------------------------------------------------------------


def test_strict_mutual_tls_from_sds() -> None:
    resources = translate(web_mesh({"mode": "STRICT", **SDS_TLS}), "web")
    listener_ = ingress(resources)
    (chain,) = listener_.filter_chains
    assert not listener_.listener_filters
    context = downstream(chain)
    assert context.require_client_certificate.value
    common = context.common_tls_context
    assert [c.name for c in common.tls_certificate_sds_secret_configs] == [ME]
    assert common.tls_certificate_sds_secret_configs[0].sds_config.HasField("ads")
    combined = common.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == BUNDLE
    sans = combined.default_validation_context.match_typed_subject_alt_names
    assert [(s.san_type, s.matcher.exact) for s in sans] == [
        (3, f"spiffe://{TD}/mesh/demo/virtualNode/front"),
        (2, "front.local"),
    ]  # URI, DNS
    assert list(common.alpn_protocols) == ["h2", "http/1.1"]
    assert http_manager(listener_).rds.route_config_name == "rds_ingress_http_9080"
    assert not resources.problems
    # the snapshot references exactly the proxy's identity and the trust bundle over SDS
    missing = {ref for _, ref in Snapshot(resources.all()).missing()}
    assert missing == {(types.SECRET, ME), (types.SECRET, BUNDLE)}


def test_permissive_serves_tls_and_plain_text_on_two_chains() -> None:
    tls = {"mode": "PERMISSIVE", "certificate": SDS_TLS["certificate"]}
    listener_ = ingress(translate(web_mesh(tls), "web"))
    assert [f.name for f in listener_.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    encrypted, plain = listener_.filter_chains
    assert encrypted.filter_chain_match.transport_protocol == "tls"
    assert plain.filter_chain_match.transport_protocol == "raw_buffer"
    assert not plain.HasField("transport_socket")
    context = downstream(encrypted)
    assert not context.require_client_certificate.value  # no validation: plain TLS
    assert encrypted.filters == plain.filters


def test_disabled_and_file_certificates() -> None:
    disabled = {"mode": "DISABLED", "certificate": SDS_TLS["certificate"]}
    (chain,) = ingress(translate(web_mesh(disabled), "web")).filter_chains
    assert not chain.HasField("transport_socket")
    files = {
        "mode": "STRICT",
        "certificate": {"file": {"certificateChain": "/etc/c.pem", "privateKey": "/etc/k"}},
        "validation": {"trust": {"file": {"certificateChain": "/etc/ca.pem"}}},
    }
    (chain,) = ingress(translate(web_mesh(files), "web")).filter_chains
    common = downstream(chain).common_tls_context
    assert common.tls_certificates[0].certificate_chain.filename == "/etc/c.pem"
    assert common.tls_certificates[0].private_key.filename == "/etc/k"
    assert common.validation_context.trusted_ca.filename == "/etc/ca.pem"


def test_acm_certificates_fail_closed() -> None:
    acm = {"certificate": {"acm": {"certificateArn": "arn:aws:acm:us-east-1:1:certificate/x"}}}
    strict = translate(web_mesh({"mode": "STRICT", **acm}), "web")
    assert "lds_ingress_127.0.0.1_9080" not in by_name(strict.listeners)
    assert any("ACM certificates are not supported" in p for p in strict.problems)
    assert any("left out" in p for p in strict.problems)
    permissive = translate(web_mesh({"mode": "PERMISSIVE", **acm}), "web")
    (chain,) = ingress(permissive).filter_chains
    assert not chain.HasField("transport_socket")
    assert any("plain text only" in p for p in permissive.problems)


# --- client policies -----------------------------------------------------------------------


def test_a_backend_client_policy_verifies_the_provider() -> None:
    resources = translate(web_mesh(client=CLIENT_TLS), "front")
    context = upstream(egress_cluster(resources))
    assert context is not None
    combined = context.common_tls_context.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == BUNDLE
    assert [
        s.matcher.exact for s in combined.default_validation_context.match_typed_subject_alt_names
    ] == [ME]
    assert not context.common_tls_context.tls_certificate_sds_secret_configs
    assert not resources.problems


def test_client_policy_certificate_ports_enforce_and_defaults() -> None:
    mutual = {"tls": {**CLIENT_TLS["tls"], "certificate": {"sds": {"secretName": "me"}}}}
    context = upstream(egress_cluster(translate(web_mesh(client=mutual), "front")))
    assert context is not None
    assert [c.name for c in context.common_tls_context.tls_certificate_sds_secret_configs] == ["me"]
    other_port = {"tls": {**CLIENT_TLS["tls"], "ports": [443]}}
    assert upstream(egress_cluster(translate(web_mesh(client=other_port), "front"))) is None
    this_port = {"tls": {**CLIENT_TLS["tls"], "ports": [443, 9080]}}
    assert upstream(egress_cluster(translate(web_mesh(client=this_port), "front"))) is not None
    off = {"tls": {**CLIENT_TLS["tls"], "enforce": False}}
    assert upstream(egress_cluster(translate(web_mesh(client=off), "front"))) is None
    # backendDefaults apply to backends without a policy of their own...
    assert upstream(egress_cluster(translate(web_mesh(defaults=CLIENT_TLS), "front")))
    # ...and a backend's own policy wins over them
    assert (
        upstream(egress_cluster(translate(web_mesh(client=off, defaults=CLIENT_TLS), "front")))
        is None
    )


def test_grpc_clients_offer_h2() -> None:
    mesh = web_mesh(client=CLIENT_TLS, protocol="grpc")
    cluster = by_name(translate(mesh, "front").clusters)["cds_egress_demo_web_grpc_9080"]
    context = upstream(cluster)
    assert context is not None
    assert list(context.common_tls_context.alpn_protocols) == ["h2"]


def test_acm_trust_fails_closed() -> None:
    acm = {
        "tls": {
            "validation": {
                "trust": {
                    "acm": {
                        "certificateAuthorityArns": [
                            "arn:aws:acm-pca:us-east-1:1:certificate-authority/x"
                        ]
                    }
                }
            }
        }
    }
    resources = translate(web_mesh(client=acm), "front")
    assert "cds_egress_demo_web_http_9080" not in by_name(resources.clusters)
    assert any("ACM certificate authorities are not supported" in p for p in resources.problems)


# --- the mesh's mTLS switch --------------------------------------------------------------


def test_the_mesh_switch_secures_every_listener_and_backend() -> None:
    security = MeshSecurity(trust_domain="example.org", mtls="STRICT")
    mesh = web_mesh()
    provider = translate(mesh, "web", security)
    (chain,) = ingress(provider).filter_chains
    context = downstream(chain)
    assert context.require_client_certificate.value
    common = context.common_tls_context
    assert [c.name for c in common.tls_certificate_sds_secret_configs] == [
        "spiffe://example.org/mesh/demo/virtualNode/web"
    ]
    assert common.validation_context_sds_secret_config.name == "spiffe://example.org"
    consumer = translate(mesh, "front", security)
    client = upstream(egress_cluster(consumer))
    assert client is not None
    client_common = client.common_tls_context
    assert [c.name for c in client_common.tls_certificate_sds_secret_configs] == [
        "spiffe://example.org/mesh/demo/virtualNode/front"
    ]
    combined = client_common.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "spiffe://example.org"
    assert [
        s.matcher.exact for s in combined.default_validation_context.match_typed_subject_alt_names
    ] == ["spiffe://example.org/mesh/demo/virtualNode/web"]
    # the consumer's own listener is secured too; the egress listener never is
    (front_chain,) = ingress(consumer, 8080).filter_chains
    assert front_chain.HasField("transport_socket")
    egress = by_name(consumer.listeners)["lds_egress_127.0.0.1_15001"]
    assert not egress.filter_chains[0].HasField("transport_socket")
    permissive = translate(mesh, "web", MeshSecurity(mtls="PERMISSIVE"))
    assert len(ingress(permissive).filter_chains) == 2


def test_the_mesh_switch_respects_explicit_settings() -> None:
    security = MeshSecurity(mtls="STRICT")
    disabled = {"mode": "DISABLED", "certificate": SDS_TLS["certificate"]}
    mesh = web_mesh(disabled)
    (chain,) = ingress(translate(mesh, "web", security)).filter_chains
    assert not chain.HasField("transport_socket")
    assert upstream(egress_cluster(translate(mesh, "front", security))) is None
    # a provider serving a file certificate needs an explicit client policy
    files = {
        "mode": "STRICT",
        "certificate": {"file": {"certificateChain": "/c", "privateKey": "/k"}},
    }
    assert upstream(egress_cluster(translate(web_mesh(files), "front", security))) is None
    # an explicit policy wins over the mesh's
    explicit = upstream(egress_cluster(translate(web_mesh(client=CLIENT_TLS), "front", security)))
    assert explicit is not None
    assert not explicit.common_tls_context.tls_certificate_sds_secret_configs


def test_mesh_tags_turn_the_switch() -> None:
    assert MeshSecurity.from_mesh_tags({}) == (MeshSecurity(), None)
    assert MeshSecurity.from_mesh_tags({MTLS_TAG: "strict"}, "td") == (
        MeshSecurity("td", "STRICT"),
        None,
    )
    assert MeshSecurity.from_mesh_tags({MTLS_TAG: "PERMISSIVE"})[0].mtls == "PERMISSIVE"
    assert MeshSecurity.from_mesh_tags({MTLS_TAG: "DISABLED"})[0].mtls is None
    security, problem = MeshSecurity.from_mesh_tags({MTLS_TAG: "yes"})
    assert security.mtls is None and problem is not None and "yes" in problem


# --- the real Envoy accepts it ----------------------------------------------------------


def _files(tmp_path: Path) -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = {"cert": tmp_path / "c.pem", "key": tmp_path / "k.pem"}
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {k: str(v) for k, v in paths.items()}


@pytest.mark.parametrize("mtls", [None, "STRICT", "PERMISSIVE"])
def test_envoy_accepts_every_tls_variant(mtls: str | None, tmp_path: Path) -> None:
    files = _files(tmp_path)
    file_cert = {"file": {"certificateChain": files["cert"], "privateKey": files["key"]}}
    file_trust = {
        "trust": {"file": {"certificateChain": files["cert"]}},
        "subjectAlternativeNames": {"match": {"exact": ["a.local"]}},
    }
    mesh = MeshBuilder()
    providers = {
        "strict": listener(9001, "http", tls={"mode": "STRICT", **SDS_TLS}),
        "permissive": listener(
            9002,
            "grpc",
            tls={"mode": "PERMISSIVE", "certificate": file_cert, "validation": file_trust},
        ),
        "tcp": listener(9003, "tcp", tls={"mode": "STRICT", "certificate": file_cert}),
        "plain": listener(9004, "http2"),
    }
    backends = []
    for name, spec in providers.items():
        mesh.node(name, provider_node(f"{name}.local", spec))
        mesh.service(f"{name}.local", node=name)
        backends.append({"virtualService": {"virtualServiceName": f"{name}.local"}})
    backends[0]["virtualService"]["clientPolicy"] = CLIENT_TLS
    backends[1]["virtualService"]["clientPolicy"] = {
        "tls": {"certificate": file_cert, "validation": file_trust}
    }
    mesh.node(
        "front",
        {
            **client_node(),
            "backends": backends,
            "backendDefaults": {
                "clientPolicy": {
                    "tls": {
                        "certificate": {"sds": {"secretName": ME}},
                        "validation": {"trust": {"sds": {"secretName": BUNDLE}}},
                        "ports": [9003],
                    }
                }
            },
            "listeners": [listener(8080, tls={"mode": "PERMISSIVE", **SDS_TLS})],
            "serviceDiscovery": dns("front.local"),
        },
    )
    security = MeshSecurity(mtls=mtls)  # type: ignore[arg-type]
    for node in ("front", *providers):
        resources = translate(mesh, node, security)
        assert not resources.problems, resources.problems
        result = envoy_validate(
            static_bootstrap(resources, f"mesh/demo/virtualNode/{node}"), tmp_path
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "deprecated" not in output.lower(), output
