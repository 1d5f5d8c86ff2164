"""The Envoy bootstrap: App Mesh conventions, options from the environment, and Envoy's own
validation of what we generate (``envoy --mode validate``)."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshplane.proxy import (
    BootstrapError,
    BootstrapOptions,
    XdsTls,
    build_bootstrap,
    find_envoy_binary,
)

NODE = "mesh/demo/virtualNode/web"


def validate(bootstrap: dict[str, object], tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    result = subprocess.run(
        [find_envoy_binary(), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_defaults_follow_app_mesh(tmp_path: Path) -> None:
    bootstrap = build_bootstrap(BootstrapOptions(resource=NODE, xds_port=15000))
    node = bootstrap["node"]
    assert node["id"] == NODE and node["cluster"] == NODE
    assert node["metadata"]["meshplane"] == {
        "workload_address": "127.0.0.1",
        "app_port": None,
        "egress_port": 15001,
        "resource": NODE,
    }
    ads = bootstrap["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == "GRPC" and ads["transport_api_version"] == "V3"
    assert ads["grpc_services"] == [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]
    for config in ("lds_config", "cds_config"):
        assert bootstrap["dynamic_resources"][config]["ads"] == {}
        assert bootstrap["dynamic_resources"][config]["resource_api_version"] == "V3"
    [xds] = bootstrap["static_resources"]["clusters"]
    assert xds["name"] == "xds_cluster" and xds["type"] == "STATIC"
    address = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}
    admin = bootstrap["admin"]["address"]["socket_address"]
    assert admin == {"address": "127.0.0.1", "port_value": 9901}
    assert "stats_config" not in bootstrap
    validate(bootstrap, tmp_path)


def test_all_options(tmp_path: Path) -> None:
    options = BootstrapOptions(
        resource="arn:aws:appmesh:us-west-2:111122223333:mesh/demo/virtualGateway/gw",
        xds_host="control-plane.local",
        xds_port=443,
        api_type="DELTA_GRPC",
        node_cluster="gateways",
        admin_port=19901,
        workload_address="127.0.0.7",
        app_port=8080,
        egress_port=15101,
        initial_fetch_timeout=5,
        stats_tags=True,
        xds_token="secret-token",
        extra_metadata={"zone": "a"},
    )
    bootstrap = build_bootstrap(options)
    assert bootstrap["node"]["id"] == options.resource
    assert bootstrap["node"]["cluster"] == "gateways"
    meta = bootstrap["node"]["metadata"]["meshplane"]
    assert (meta["workload_address"], meta["app_port"], meta["egress_port"]) == (
        "127.0.0.7",
        8080,
        15101,
    )
    assert meta["zone"] == "a"
    ads = bootstrap["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == "DELTA_GRPC"
    assert ads["grpc_services"][0]["initial_metadata"] == [
        {"key": "authorization", "value": "Bearer secret-token"}
    ]
    assert bootstrap["dynamic_resources"]["cds_config"]["initial_fetch_timeout"] == "5.000s"
    assert bootstrap["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
    assert bootstrap["stats_config"]["stats_tags"] == [
        {"tag_name": "appmesh.mesh", "fixed_value": "demo"},
        {"tag_name": "appmesh.virtual_gateway", "fixed_value": "gw"},
    ]
    validate(bootstrap, tmp_path)


def _self_signed(tmp_path: Path) -> XdsTls:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshplane-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return XdsTls(
        ca_file=str(tmp_path / "cert.pem"),
        cert_file=str(tmp_path / "cert.pem"),
        key_file=str(tmp_path / "key.pem"),
        server_name="meshplane-test",
    )


def test_tls_to_the_control_plane(tmp_path: Path) -> None:
    tls = _self_signed(tmp_path)
    bootstrap = build_bootstrap(BootstrapOptions(resource=NODE, xds_tls=tls))
    socket = bootstrap["static_resources"]["clusters"][0]["transport_socket"]
    context = socket["typed_config"]
    assert context["sni"] == "meshplane-test"
    assert context["common_tls_context"]["tls_certificates"][0]["private_key"] == {
        "filename": tls.key_file
    }
    validate(bootstrap, tmp_path)


def test_options_from_app_mesh_environment() -> None:
    env = {
        "APPMESH_RESOURCE_ARN": "arn:aws:appmesh:eu-west-1:1:mesh/demo/virtualNode/web",
        "APPMESH_XDS_ENDPOINT": "10.0.0.5:15000",
        "ENVOY_ADMIN_ACCESS_PORT": "9902",
        "ENVOY_LOG_LEVEL": "DEBUG",
        "ENVOY_CONCURRENCY": "2",
        "ENVOY_INITIAL_FETCH_TIMEOUT": "3",
        "ENABLE_ENVOY_STATS_TAGS": "1",
        "APPMESH_RESOURCE_CLUSTER": "web-fleet",
    }
    options = BootstrapOptions.from_env(env, app_port=8080)
    assert options.resource == env["APPMESH_RESOURCE_ARN"]
    assert (options.xds_host, options.xds_port) == ("10.0.0.5", 15000)
    assert options.admin_port == 9902 and options.log_level == "debug"
    assert options.concurrency == 2 and options.initial_fetch_timeout == 3
    assert options.stats_tags and options.node_cluster == "web-fleet"
    assert options.app_port == 8080
    assert BootstrapOptions.from_env({"APPMESH_VIRTUAL_NODE_NAME": NODE}).resource == NODE
    ipv6 = BootstrapOptions.from_env(
        {"APPMESH_RESOURCE_ARN": NODE, "APPMESH_XDS_ENDPOINT": "[::1]:99"}
    )
    assert (ipv6.xds_host, ipv6.xds_port) == ("::1", 99)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "APPMESH_RESOURCE_ARN"),
        ({"APPMESH_RESOURCE_ARN": NODE, "ENVOY_ADMIN_ACCESS_PORT": "x"}, "integer"),
        ({"APPMESH_RESOURCE_ARN": NODE, "APPMESH_XDS_ENDPOINT": "nowhere"}, "<host>:<port>"),
        ({"APPMESH_RESOURCE_ARN": NODE, "ENVOY_STATS_FLUSH_INTERVAL": "soon"}, "duration"),
        ({"APPMESH_RESOURCE_ARN": NODE, "ENVOY_STATS_FLUSH_INTERVAL": "0"}, "between"),
        (
            {"APPMESH_RESOURCE_ARN": NODE, "ENABLE_ENVOY_DOG_STATSD": "1", "STATSD_PORT": "x"},
            "STATSD_PORT must be an integer",
        ),
    ],
)
def test_bad_environment(env: dict[str, str], message: str) -> None:
    with pytest.raises(BootstrapError, match=message):
        BootstrapOptions.from_env(env)


@pytest.mark.parametrize(
    "resource", ["web", "mesh/demo/virtualService/svc", "mesh/demo/virtualNode/web/x"]
)
def test_bad_resource(resource: str) -> None:
    with pytest.raises(BootstrapError, match="virtualNode"):
        build_bootstrap(BootstrapOptions(resource=resource))


def test_stats_stream_to_the_control_plane_and_dog_statsd(tmp_path: Path) -> None:
    """The metrics service sink rides the ADS cluster with the ADS token; the App Mesh image's
    DogStatsD switches add a dog_statsd sink; the flush interval follows
    ENVOY_STATS_FLUSH_INTERVAL."""
    options = BootstrapOptions.from_env(
        {
            "APPMESH_RESOURCE_ARN": NODE,
            "ENVOY_STATS_FLUSH_INTERVAL": "2s",
            "ENABLE_ENVOY_DOG_STATSD": "1",
            "STATSD_ADDRESS": "127.0.0.9",
            "STATSD_PORT": "9125",
            "ENABLE_ENVOY_STATS_TAGS": "1",
        },
        xds_token="tok",
    )
    bootstrap = build_bootstrap(options)
    metrics, dog = bootstrap["stats_sinks"]
    assert metrics["name"] == "envoy.stat_sinks.metrics_service"
    config = metrics["typed_config"]
    assert config["histogram_emit_mode"] == "HISTOGRAM"
    assert config["grpc_service"] == {
        "envoy_grpc": {"cluster_name": "xds_cluster"},
        "initial_metadata": [{"key": "authorization", "value": "Bearer tok"}],
    }
    assert dog["typed_config"]["address"]["socket_address"] == {
        "protocol": "UDP",
        "address": "127.0.0.9",
        "port_value": 9125,
    }
    assert bootstrap["stats_flush_interval"] == "2.000s"
    assert bootstrap["stats_config"]["stats_tags"][0] == {
        "tag_name": "appmesh.mesh",
        "fixed_value": "demo",
    }
    validate(bootstrap, tmp_path)
    socket = BootstrapOptions.from_env(
        {
            "APPMESH_RESOURCE_ARN": NODE,
            "ENABLE_ENVOY_DOG_STATSD": "1",
            "STATSD_SOCKET_PATH": "/run/dd.sock",
        }
    )
    [_, dog] = build_bootstrap(socket)["stats_sinks"]
    assert dog["typed_config"]["address"] == {"pipe": {"path": "/run/dd.sock"}}
    quiet = build_bootstrap(BootstrapOptions(resource=NODE, metrics_service=False))
    assert "stats_sinks" not in quiet
