"""``meshplane serve --tls-issue``: the API and xDS ports speak TLS with a certificate issued by
meshplane's own control-plane CA.  boto3, the CLI and a real Envoy sidecar (``meshplane envoy
--xds-ca``) trust ``<data dir>/tls/ca.pem`` and work; clients that do not trust it get nowhere;
the CA key is private; a restart keeps the certificate and a new ``--tls-name`` re-issues it."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import botocore.exceptions
import grpc
import httpx
import pytest
from cryptography import x509

from meshplane.authority.server_tls import ensure_server_certificate, server_names
from tests.support.auth import run_cli
from tests.support.ports import free_port
from tests.support.server import MeshplaneServer

pytestmark = pytest.mark.e2e


def _sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in names.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in names.get_values_for_type(x509.IPAddress)
    }


def _serial(path: Path) -> int:
    return int(x509.load_pem_x509_certificate(path.read_bytes()).serial_number)


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshplaneServer]:
    data = tmp_path_factory.mktemp("issued") / "data"
    server = MeshplaneServer(
        data, https=True, extra_args=["--tls-issue", "--tls-name", "cp.meshplane.test"]
    ).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_issued_files_and_their_permissions(issued: MeshplaneServer) -> None:
    folder = issued.data_dir / "tls"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "ca-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "server-key.pem").stat().st_mode) == 0o600
    assert _sans(folder / "server.pem") >= {"localhost", "127.0.0.1", "::1", "cp.meshplane.test"}
    assert str(folder / "ca.pem") in issued.log()  # the server says what clients must trust


def test_boto3_trusts_the_issued_ca_and_nothing_else(issued: MeshplaneServer) -> None:
    ca = str(issued.data_dir / "tls" / "ca.pem")
    appmesh = issued.boto3(verify=ca)
    appmesh.create_mesh(meshName="issued")
    assert "issued" in [m["meshName"] for m in appmesh.list_meshes()["meshes"]]
    with pytest.raises(botocore.exceptions.SSLError):
        issued.boto3().list_meshes()  # the system CAs do not know meshplane's
    with pytest.raises(httpx.TransportError):
        httpx.get(issued.url.replace("https://", "http://") + "/healthz", timeout=5)


def test_the_cli_verifies_the_server_with_the_issued_ca(issued: MeshplaneServer) -> None:
    ca = str(issued.data_dir / "tls" / "ca.pem")
    env = {"MESHPLANE_SERVER": issued.url}
    ok = run_cli("--tls-ca", ca, "get", "meshes", "-o", "json", env=env)
    assert ok.returncode == 0, ok.stderr
    assert isinstance(json.loads(ok.stdout), list)
    refused = run_cli("get", "meshes", env=env)
    assert refused.returncode == 3
    assert "cannot reach" in refused.stderr


def test_a_real_envoy_gets_its_config_over_the_issued_tls(issued: MeshplaneServer) -> None:
    ca = issued.data_dir / "tls" / "ca.pem"
    appmesh = issued.boto3(verify=str(ca))
    appmesh.create_mesh(meshName="tlsxds")
    appmesh.create_virtual_node(
        meshName="tlsxds",
        virtualNodeName="web",
        spec={
            "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "web.local"}},
        },
    )
    admin, egress = free_port(), free_port()
    log = issued.data_dir.parent / "envoy-tls.log"
    with log.open("wb") as sink:
        envoy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "meshplane",
                "envoy",
                "--resource",
                "mesh/tlsxds/virtualNode/web",
                "--xds",
                f"127.0.0.1:{issued.xds_port}",
                "--xds-ca",
                str(ca),
                "--address",
                "127.0.0.41",
                "--admin-port",
                str(admin),
                "--egress-port",
                str(egress),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
    try:
        deadline = time.monotonic() + 30
        listeners: list[str] = []
        while time.monotonic() < deadline:
            assert envoy.poll() is None, log.read_text(errors="replace")
            try:
                dump = httpx.get(
                    f"http://127.0.0.1:{admin}/config_dump?resource=dynamic_listeners", timeout=2
                ).json()
                listeners = [c["name"] for c in dump.get("configs", [])]
            except (httpx.TransportError, ValueError):
                listeners = []
            if "lds_ingress_127.0.0.41_8080" in listeners:
                break
            time.sleep(0.2)
        assert "lds_ingress_127.0.0.41_8080" in listeners, log.read_text(errors="replace")
        assert f"lds_egress_127.0.0.1_{egress}" in listeners
        trust = ssl.create_default_context(cafile=str(ca))
        status = httpx.get(f"{issued.url}/meshplane/v1/proxies", verify=trust, timeout=10).json()
        assert "mesh/tlsxds/virtualNode/web" in json.dumps(status)
    finally:
        envoy.terminate()
        try:
            envoy.wait(15)
        except subprocess.TimeoutExpired:
            envoy.kill()
            envoy.wait()


def test_xds_refuses_plaintext_and_other_cas(issued: MeshplaneServer) -> None:
    target = f"127.0.0.1:{issued.xds_port}"
    good = grpc.ssl_channel_credentials((issued.data_dir / "tls" / "ca.pem").read_bytes())
    with grpc.secure_channel(target, good) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=2)


def test_renewal_rules(tmp_path: Path) -> None:
    """Kept while valid and naming the same hosts; re-issued for new names, near expiry, or
    when a file is gone; the CA is kept throughout."""
    folder = tmp_path / "tls"
    names = server_names("127.0.0.1", ["a.test"])
    files = ensure_server_certificate(folder, names)
    ca, first = _serial(files.ca_file), _serial(files.cert_file)
    assert _serial(ensure_server_certificate(folder, names).cert_file) == first
    renamed = ensure_server_certificate(folder, server_names("127.0.0.1", ["b.test"]))
    assert _serial(renamed.cert_file) != first
    assert "b.test" in _sans(renamed.cert_file) and "a.test" not in _sans(renamed.cert_file)
    later = datetime.now(UTC) + timedelta(days=300)  # under 90 days left
    again = _serial(renamed.cert_file)
    assert _serial(ensure_server_certificate(folder, names, now=later).cert_file) != again
    files.key_file.unlink()
    assert _serial(ensure_server_certificate(folder, names).cert_file) not in (first, again)
    assert _serial(files.ca_file) == ca


def test_a_restart_keeps_the_certificate(tmp_path: Path) -> None:
    server = MeshplaneServer(tmp_path / "data", https=True, extra_args=["--tls-issue"]).start()
    cert = tmp_path / "data" / "tls" / "server.pem"
    try:
        first = _serial(cert)
    finally:
        server.stop()
    server.start()
    try:
        assert _serial(cert) == first
        trust = ssl.create_default_context(cafile=str(tmp_path / "data" / "tls" / "ca.pem"))
        health = httpx.get(f"{server.url}/healthz", verify=trust, timeout=5)
        assert health.status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-issue", "--tls-cert", "c.pem", "--tls-key", "k.pem"], "not both"),
        (["--tls-name", "x.test"], "add --tls-issue"),
    ],
)
def test_contradicting_tls_flags_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("serve", "--data-dir", str(tmp_path / "data"), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "data" / "tls").exists()


def test_a_server_bound_to_every_address_is_named_by_its_host_and_addresses() -> None:
    import socket

    names = server_names("0.0.0.0", ["cp.example.internal"])
    assert names[:3] == ("localhost", "127.0.0.1", "::1")
    assert socket.gethostname().lower() in names and "cp.example.internal" in names
    resolved = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    assert resolved <= set(names)
    assert "10.1.2.3" in server_names("10.1.2.3") and "0.0.0.0" not in names
