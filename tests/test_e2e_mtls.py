"""End to end with real Envoy sidecars: mesh identity, mTLS and proxy authentication.

One control plane for the module, started with ``--require-proxy-auth`` (every sidecar
presents a proxy token) and ``--cert-lifetime 8s`` (proxy certificates rotate every 4 s, so
every test below also runs through certificate rotations).

- STRICT (mesh tag ``meshplane.io/mtls``): a meshed client gets through; a plain-text client,
  a TLS client without a certificate and a client holding a certificate from another CA do
  not (the application never sees them), while a client holding a mesh-issued certificate
  does (so the refusal is about the CA).  The provider presents its SPIFFE identity.
- PERMISSIVE: plain text and mTLS both get through.
- A virtual gateway reaches STRICT providers with its own identity (``virtualGateway/gw``).
- App Mesh TLS spelled out (listener ``tls`` + backend ``clientPolicy.tls``): a consumer whose
  SAN list names the provider connects, one whose SAN list excludes it refuses to
  (``ssl.fail_verify_san``).
- Rotation under continuous load fails no request, and the proxies' admin ``/certs`` shows new
  certificates.  So does a CA rotation: the proxies trust both roots, then only the new one.
- A proxy holding a token for node A that claims node B gets nothing (PERMISSION_DENIED).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from meshplane.authority import IssuedCertificate, MeshAuthority, spiffe_id
from meshplane.authority.ca import new_root
from meshplane.authority.keystore import KeyStore
from meshplane.xds import types
from tests.support.apps import App
from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port
from tests.support.xds import AdsClient, request

pytestmark = pytest.mark.e2e

LIFETIME = 8
PROPAGATION = 2
OVERLAP = 6
TD = "meshplane.local"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(
        tmp_path_factory.mktemp("mtls"),
        server_args=[
            "--require-proxy-auth",
            "--cert-lifetime",
            f"{LIFETIME}s",
            "--ca-propagation",
            f"{PROPAGATION}s",
            "--ca-overlap",
            f"{OVERLAP}s",
        ],
    )
    try:
        yield m
    finally:
        m.close()


@dataclass
class Provider:
    mesh: str
    app: App
    sidecar: Sidecar
    address: str
    port: int

    @property
    def identity(self) -> str:
        return spiffe_id(TD, self.mesh, "virtualNode", "web")


def provider(mesh: Mesh, name: str, tags: list[dict[str, str]], tls: Any = None) -> Provider:
    """Mesh ``name`` with node ``web`` (behind virtual service ``web.local``) and its app."""
    api = mesh.appmesh
    api.create_mesh(meshName=name, tags=tags)
    app = mesh.app(f"{name}-web")
    address, port = next_address(), free_port()
    listener: dict[str, Any] = {"portMapping": {"port": port, "protocol": "http"}}
    if tls is not None:
        listener["tls"] = tls
    api.create_virtual_node(
        meshName=name,
        virtualNodeName="web",
        spec={"listeners": [listener], "serviceDiscovery": {"dns": {"hostname": address}}},
    )
    api.create_virtual_service(
        meshName=name,
        virtualServiceName="web.local",
        spec={"provider": {"virtualNode": {"virtualNodeName": "web"}}},
    )
    sidecar = mesh.sidecar(f"mesh/{name}/virtualNode/web", address=address, app_port=app.port)
    return Provider(name, app, sidecar, address, port)


def consumer(mesh: Mesh, name: str, node: str, client_policy: Any = None) -> Sidecar:
    backend: dict[str, Any] = {"virtualServiceName": "web.local"}
    if client_policy is not None:
        backend["clientPolicy"] = client_policy
    mesh.appmesh.create_virtual_node(
        meshName=name, virtualNodeName=node, spec={"backends": [{"virtualService": backend}]}
    )
    return mesh.sidecar(f"mesh/{name}/virtualNode/{node}")


def via(sidecar: Sidecar) -> httpx.Response:
    with httpx.Client(timeout=5) as http:
        return http.get(f"http://127.0.0.1:{sidecar.egress_port}/", headers={"host": "web.local"})


def plain(p: Provider) -> httpx.Response | Exception:
    try:
        with httpx.Client(timeout=5) as http:
            return http.get(f"http://{p.address}:{p.port}/", headers={"host": "web.local"})
    except httpx.HTTPError as error:
        return error


@dataclass
class TlsResult:
    status: int | None
    error: str | None
    peer_uris: list[str]


def tls_get(
    p: Provider, tmp: Path, cert: IssuedCertificate | None, ca: str | None = None
) -> TlsResult:
    """One GET over a fresh TLS connection to the provider's sidecar, as a client outside
    the mesh: with ``cert`` as client certificate, checking the server against ``ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    if ca is None:
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cadata=ca)
    if cert is not None:
        chain, key = tmp / f"c{time.monotonic_ns()}.pem", tmp / f"k{time.monotonic_ns()}.pem"
        chain.write_bytes(cert.certificate_chain)
        key.write_bytes(cert.private_key)
        context.load_cert_chain(chain, key)
    uris: list[str] = []
    try:
        with (
            socket.create_connection((p.address, p.port), timeout=5) as raw,
            context.wrap_socket(raw) as conn,
        ):
            peer = conn.getpeercert() or {}
            uris = [v for k, v in peer.get("subjectAltName", ()) if k == "URI"]
            conn.sendall(b"GET / HTTP/1.1\r\nHost: web.local\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    except (OSError, ssl.SSLError) as error:
        return TlsResult(None, repr(error), uris)
    if not data.startswith(b"HTTP/1.1 "):
        return TlsResult(None, f"no HTTP answer: {data[:80]!r}", uris)
    return TlsResult(int(data.split(b" ", 2)[1]), None, uris)


def mesh_issued(mesh: Mesh, name: str, node: str) -> IssuedCertificate:
    """A certificate from the mesh's own CA (read from the server's data directory)."""
    authority = KeyStore(mesh.server.data_dir / "ca").load(name, TD)
    assert authority is not None
    return authority.issue(
        spiffe_id(TD, name, "virtualNode", node), datetime.now(UTC), timedelta(minutes=5)
    )


def foreign_issued(name: str, node: str) -> IssuedCertificate:
    """A certificate with a plausible SPIFFE ID from a CA the mesh has never seen."""
    now = datetime.now(UTC)
    authority = MeshAuthority(name, TD, [new_root(name, now, timedelta(days=1))])
    return authority.issue(spiffe_id(TD, name, "virtualNode", node), now, timedelta(minutes=5))


def trust_bundle(mesh: Mesh, name: str) -> str:
    response = httpx.get(f"{mesh.server.url}/meshplane/v1/meshes/{name}/ca", timeout=10)
    return str(response.json()["trustBundle"])


def served(response: httpx.Response | Exception, app: App) -> bool:
    return (
        isinstance(response, httpx.Response)
        and response.status_code == 200
        and (response.json()["app"] == app.name)
    )


def stat(sidecar: Sidecar, name: str) -> int:
    return sidecar.stats().get(name, 0)


# --- STRICT and PERMISSIVE ------------------------------------------------------------------


def test_strict_mtls_admits_only_meshed_clients(mesh: Mesh, tmp_path: Path) -> None:
    web = provider(mesh, "strict", [{"key": "meshplane.io/mtls", "value": "STRICT"}])
    client = consumer(mesh, "strict", "client")
    mesh.wait(lambda: served(via(client), web.app), "the meshed client through mTLS")
    for _ in range(5):
        assert served(via(client), web.app)
    # the provider's listener did the TLS handshakes
    assert stat(web.sidecar, f"listener.{web.address}_{web.port}.ssl.handshake") >= 1

    before = web.app.requests
    refused = {
        "plain text": plain(web),
        "TLS without a certificate": tls_get(web, tmp_path, None),
        "a certificate from another CA": tls_get(web, tmp_path, foreign_issued("strict", "x")),
    }
    for what, result in refused.items():
        if isinstance(result, TlsResult):
            assert result.status is None, f"{what}: {result}"
        else:
            assert not isinstance(result, httpx.Response), f"{what}: {result}"
    assert web.app.requests == before, "a refused client reached the application"
    ssl_stats = f"listener.{web.address}_{web.port}.ssl"
    assert stat(web.sidecar, f"{ssl_stats}.fail_verify_no_cert") >= 1
    assert stat(web.sidecar, f"{ssl_stats}.fail_verify_error") >= 1  # unknown CA

    # the same kind of client with a mesh-issued certificate gets in, and sees the provider's
    # SPIFFE identity signed by the mesh CA
    admitted = tls_get(
        web, tmp_path, mesh_issued(mesh, "strict", "tester"), ca=trust_bundle(mesh, "strict")
    )
    assert admitted.status == 200, admitted
    assert admitted.peer_uris == [web.identity]
    assert web.app.requests == before + 1


def test_permissive_mtls_admits_plain_text_and_mtls(mesh: Mesh, tmp_path: Path) -> None:
    web = provider(mesh, "permissive", [{"key": "meshplane.io/mtls", "value": "PERMISSIVE"}])
    client = consumer(mesh, "permissive", "client")
    mesh.wait(lambda: served(via(client), web.app), "the meshed client")
    mesh.wait(lambda: served(plain(web), web.app), "a plain-text client")
    admitted = tls_get(
        web,
        tmp_path,
        mesh_issued(mesh, "permissive", "tester"),
        ca=trust_bundle(mesh, "permissive"),
    )
    assert admitted.status == 200, admitted
    assert admitted.peer_uris == [web.identity]
    # the meshed client's traffic was encrypted: the provider counted TLS handshakes
    assert stat(web.sidecar, f"listener.{web.address}_{web.port}.ssl.handshake") >= 2


def test_a_gateway_reaches_strict_providers_with_its_own_identity(mesh: Mesh) -> None:
    name = "gateway"
    web = provider(mesh, name, [{"key": "meshplane.io/mtls", "value": "STRICT"}])
    api = mesh.appmesh
    port = free_port()
    api.create_virtual_gateway(
        meshName=name,
        virtualGatewayName="gw",
        spec={"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]},
    )
    api.create_gateway_route(
        meshName=name,
        virtualGatewayName="gw",
        gatewayRouteName="web",
        spec={
            "httpRoute": {
                "match": {"prefix": "/"},
                "action": {"target": {"virtualService": {"virtualServiceName": "web.local"}}},
            }
        },
    )
    address = next_address()
    gateway = mesh.sidecar(f"mesh/{name}/virtualGateway/gw", address=address)

    def through_gateway() -> httpx.Response:
        with httpx.Client(timeout=5) as http:
            return http.get(f"http://{address}:{port}/")

    mesh.wait(lambda: served(through_gateway(), web.app), "the gateway through mTLS")
    uris = {u for _, found in _serials(gateway) for u in found}
    assert uris == {spiffe_id(TD, name, "virtualGateway", "gw")}
    assert stat(web.sidecar, f"listener.{web.address}_{web.port}.ssl.handshake") >= 1
    assert not isinstance(plain(web), httpx.Response)  # the provider itself stays STRICT


# --- App Mesh TLS spelled out: SAN checks -------------------------------------------------


def test_a_consumer_refuses_a_provider_outside_its_san_list(mesh: Mesh) -> None:
    name = "explicit"
    own = spiffe_id(TD, name, "virtualNode", "web")
    bundle = f"spiffe://{TD}"
    web = provider(
        mesh,
        name,
        [],
        tls={
            "mode": "STRICT",
            "certificate": {"sds": {"secretName": own}},
            "validation": {"trust": {"sds": {"secretName": bundle}}},
        },
    )

    def policy(node: str, sans: list[str]) -> dict[str, Any]:
        return {
            "tls": {
                "certificate": {"sds": {"secretName": spiffe_id(TD, name, "virtualNode", node)}},
                "validation": {
                    "trust": {"sds": {"secretName": bundle}},
                    "subjectAlternativeNames": {"match": {"exact": sans}},
                },
            }
        }

    good = consumer(mesh, name, "good", policy("good", [own]))
    wrong = consumer(
        mesh, name, "wrong", policy("wrong", [spiffe_id(TD, name, "virtualNode", "impostor")])
    )
    mesh.wait(lambda: served(via(good), web.app), "the consumer that names the provider")
    cluster = f"cluster.cds_egress_{name}_web_http_{web.port}"
    mesh.wait(
        lambda: (
            via(wrong).status_code == 503 and stat(wrong, f"{cluster}.ssl.fail_verify_san") >= 1
        ),
        "the consumer whose SAN list excludes the provider to refuse it",
    )
    before = web.app.requests
    for _ in range(3):
        assert via(wrong).status_code == 503
        assert served(via(good), web.app)
    assert web.app.requests == before + 3  # only the good consumer's requests arrived


# --- rotation under load ----------------------------------------------------------------


def _serials(sidecar: Sidecar) -> list[tuple[str, list[str]]]:
    """(serial, SAN URIs) of the certificates a proxy holds (admin ``/certs``)."""
    out = []
    for entry in json.loads(sidecar.admin_get("/certs")[1]).get("certificates", []):
        for cert in entry.get("cert_chain", []):
            uris = [s["uri"] for s in cert.get("subject_alt_names", []) if "uri" in s]
            out.append((cert["serial_number"], uris))
    return out


def test_rotation_under_load_fails_no_request(mesh: Mesh, tmp_path: Path) -> None:
    web = provider(mesh, "rotation", [{"key": "meshplane.io/mtls", "value": "STRICT"}])
    client = consumer(mesh, "rotation", "client")
    mesh.wait(lambda: served(via(client), web.app), "the meshed client")
    mesh.wait(lambda: _serials(web.sidecar) and _serials(client), "certificates in /certs")
    bundle = trust_bundle(mesh, "rotation")
    tester = mesh_issued(mesh, "rotation", "tester")
    seen: dict[str, set[str]] = {"web": set(), "client": set()}
    failures: list[str] = []
    counts = {"meshed": 0, "fresh tls": 0}
    stop = threading.Event()

    def meshed_load() -> None:
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                try:
                    r = http.get(
                        f"http://127.0.0.1:{client.egress_port}/", headers={"host": "web.local"}
                    )
                    if r.status_code != 200:
                        failures.append(f"meshed: {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as error:
                    failures.append(f"meshed: {error!r}")
                counts["meshed"] += 1

    def fresh_tls_load() -> None:  # a new handshake each time: sees every new server cert
        while not stop.is_set():
            result = tls_get(web, tmp_path, tester, ca=bundle)
            if result.status != 200:
                failures.append(f"fresh tls: {result}")
            counts["fresh tls"] += 1
            time.sleep(0.02)

    threads = [threading.Thread(target=meshed_load) for _ in range(4)]
    threads.append(threading.Thread(target=fresh_tls_load))
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 2.5 * LIFETIME  # about five rotations
        while time.monotonic() < deadline:
            for who, sidecar in (("web", web.sidecar), ("client", client)):
                for serial, uris in _serials(sidecar):
                    if uris:  # the leaf (the CA itself has no URI SAN)
                        seen[who].add(serial)
                        expected = spiffe_id(TD, "rotation", "virtualNode", who)
                        assert uris == [expected], uris
            time.sleep(0.25)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    assert not failures, failures[:10]
    assert counts["meshed"] > 100 and counts["fresh tls"] > 20, counts
    # both proxies went through several certificates, as their admin API shows
    assert len(seen["web"]) >= 3, seen
    assert len(seen["client"]) >= 3, seen


def _roots(sidecar: Sidecar) -> frozenset[str]:
    """Serials of the CA certificates a proxy trusts (admin ``/certs``)."""
    return frozenset(
        cert["serial_number"].lower().lstrip("0")
        for entry in json.loads(sidecar.admin_get("/certs")[1]).get("certificates", [])
        for cert in entry.get("ca_cert", [])
    )


def test_ca_rotation_under_load_fails_no_request(mesh: Mesh) -> None:
    name = "carotation"
    web = provider(mesh, name, [{"key": "meshplane.io/mtls", "value": "STRICT"}])
    client = consumer(mesh, name, "client")
    mesh.wait(lambda: served(via(client), web.app), "the meshed client")
    ca_url = f"{mesh.server.url}/meshplane/v1/meshes/{name}/ca"
    (old,) = [r["serial"].lstrip("0") for r in httpx.get(ca_url, timeout=10).json()["roots"]]
    mesh.wait(lambda: _roots(web.sidecar) == {old} == _roots(client), "the first root in use")
    failures: list[str] = []
    count = [0]
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                try:
                    r = http.get(
                        f"http://127.0.0.1:{client.egress_port}/", headers={"host": "web.local"}
                    )
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                count[0] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    trusted: list[frozenset[str]] = []
    try:
        time.sleep(1)
        rotated = httpx.post(f"{ca_url}/rotate", timeout=10).json()
        (new,) = [r["serial"].lstrip("0") for r in rotated["roots"] if not r["signing"]]
        deadline = time.monotonic() + PROPAGATION + OVERLAP + LIFETIME / 2 + 3
        while time.monotonic() < deadline:
            for sidecar in (web.sidecar, client):
                roots = _roots(sidecar)
                if not trusted or trusted[-1] != roots:
                    trusted.append(roots)
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    assert not failures, failures[:10]
    assert count[0] > 100
    # both proxies trusted both roots for a while, and now only the new one
    assert frozenset({old, new}) in trusted, trusted
    assert _roots(web.sidecar) == {new} == _roots(client), trusted
    assert served(via(client), web.app)


# --- proxy authentication -----------------------------------------------------------------


def test_a_token_for_node_a_gets_nothing_of_node_b(mesh: Mesh) -> None:
    name = "auth"
    web = provider(mesh, name, [{"key": "meshplane.io/mtls", "value": "STRICT"}])
    a_token = mesh.proxy_token(f"mesh/{name}/virtualNode/a")
    assert a_token is not None
    # a real Envoy claiming web with a's token: refused, it holds nothing of web's
    thief = mesh.sidecar(f"mesh/{name}/virtualNode/web", token=a_token, egress_port=free_port())
    anonymous = mesh.sidecar(f"mesh/{name}/virtualNode/web", authenticate=False)
    mesh.wait(
        lambda: "claiming mesh/auth/virtualNode/web" in mesh.server.log(),
        "the refusal in the server log",
    )
    time.sleep(2)
    for envoy in (thief, anonymous):
        dump = envoy.config_dump()
        for config in dump["configs"]:
            kind = config["@type"].rsplit(".", 1)[-1]
            dynamic = {k: v for k, v in config.items() if k.startswith("dynamic")}
            assert not any(dynamic.values()), f"{kind}: {dynamic}"
        # Envoy sets connected_state as it opens each retried stream, before the server has
        # answered (and refused) it: not connected is a moment it reads 0, not one reading
        mesh.wait(
            lambda envoy=envoy: stat(envoy, "control_plane.connected_state") == 0,
            f"{envoy.resource} not connected",
        )
    assert "refused an ADS stream claiming mesh/auth/virtualNode/web" in mesh.server.log()
    # the honest proxy of web is served all along
    assert _serials(web.sidecar)

    async def over_grpc(
        node: str, token: str | None, *, write: bool = True
    ) -> grpc.StatusCode | list[str]:
        """How a stream with ``token`` claiming ``node`` ends, or the types it is sent.  Without
        ``write`` nothing is sent: for a stream refused from its metadata alone (no token, or one
        that does not verify), before any message is read.  A write racing that refusal would
        fail in gRPC's core and end the call as INTERNAL on the client, whereas a stream refused
        for the identity its first request claims has read that request first."""
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        client = AdsClient(f"127.0.0.1:{mesh.server.xds_port}", metadata=metadata)
        try:
            if not write:
                return await client.end_code(timeout=20)
            await client.send(request(types.SECRET, [web.identity, f"spiffe://{TD}"], node=node))
            try:
                response = await client.recv(timeout=10)
            except grpc.aio.AioRpcError as error:
                return error.code()
            return [r.type_url for r in response.resources]
        finally:
            await client.close()

    web_node = f"mesh/{name}/virtualNode/web"
    assert asyncio.run(over_grpc(web_node, a_token)) == grpc.StatusCode.PERMISSION_DENIED
    assert asyncio.run(over_grpc(web_node, None, write=False)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert asyncio.run(over_grpc(web_node, "mpx1.forged.token", write=False)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # web's own token gets web's secrets
    assert asyncio.run(over_grpc(web_node, mesh.proxy_token(web_node))) == [types.SECRET] * 2
