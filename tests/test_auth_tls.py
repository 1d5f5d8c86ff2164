"""TLS on the API and xDS ports with an operator-supplied certificate (made here with a
throwaway CA): boto3 and the CLI verify it and authenticate over it; plaintext clients and
clients that do not trust the CA get nowhere; xDS accepts only TLS channels."""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.auth import Token, offline_token, run_cli
from tests.support.server import MeshplaneServer


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a CA and a server certificate for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("meshplane test CA"))
        .issuer_name(_name("meshplane test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("meshplane"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MeshplaneServer, Token, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    ca, cert, key = write_certificates(folder)
    admin = offline_token(folder / "data")
    server = MeshplaneServer(
        folder / "data",
        https=True,
        extra_args=["--require-auth", "--tls-cert", str(cert), "--tls-key", str(key)],
    ).start()
    try:
        yield server, admin, ca
    finally:
        server.stop()


def test_boto3_over_tls_with_sigv4(tls: tuple[MeshplaneServer, Token, Path]) -> None:
    server, admin, ca = tls
    appmesh = admin.boto3(server, verify=str(ca))
    appmesh.create_mesh(meshName="secure")
    assert [m["meshName"] for m in appmesh.list_meshes()["meshes"]] == ["secure"]
    untrusting = admin.boto3(server)  # the system CAs do not know ours
    with pytest.raises(botocore.exceptions.SSLError):
        untrusting.list_meshes()
    assert "https://" in server.log()


def test_plaintext_http_gets_no_answer(tls: tuple[MeshplaneServer, Token, Path]) -> None:
    server, _, _ = tls
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url.replace("https://", "http://") + "/healthz", timeout=5)


def test_cli_verifies_the_server_with_its_ca(tls: tuple[MeshplaneServer, Token, Path]) -> None:
    server, admin, ca = tls
    env = {"MESHPLANE_SERVER": server.url, "MESHPLANE_TOKEN": admin.bearer}
    result = run_cli("--tls-ca", str(ca), "get", "meshes", "-o", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)
    untrusted = run_cli("get", "meshes", env=env)
    assert untrusted.returncode == 3
    assert "cannot reach" in untrusted.stderr
    via_env = run_cli("get", "meshes", env={**env, "MESHPLANE_TLS_CA": str(ca)})
    assert via_env.returncode == 0, via_env.stderr


def test_xds_port_speaks_tls_only(tls: tuple[MeshplaneServer, Token, Path]) -> None:
    server, _, ca = tls
    target = f"127.0.0.1:{server.xds_port}"
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    with grpc.secure_channel(target, credentials) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=2)


def test_tls_needs_both_files(tmp_path: Path) -> None:
    result = run_cli("serve", "--data-dir", str(tmp_path), "--tls-cert", str(tmp_path / "c.pem"))
    assert result.returncode == 2
    assert "--tls-cert and --tls-key go together" in result.stderr
