"""The control loop serves SDS secrets from the mesh CA: only the proxy's own identity and its
mesh's trust bundle, rotated at the rotation point and on CA rotation, without translating
again.  No sockets: embedded_store -> control loop -> snapshot cache, with a fake clock for the CA."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from prometheus_client import CollectorRegistry

from meshplane.authority import CaSettings, CertificateAuthorities
from meshplane.control import ControlLoop
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.service.arns import Partition
from meshplane.service.resources import Caller, ResourceService
from meshplane.store import SqlStore
from meshplane.translate import MTLS_TAG
from meshplane.xds import Snapshot, SnapshotCache, types
from tests.support.control import settle
from tests.support.xds import connection


def _caller() -> Caller:
    try:  # API authentication gives callers a principal
        from meshplane.service.access import ANONYMOUS
    except ImportError:
        return Caller("000000000000")  # type: ignore[call-arg]
    return Caller("000000000000", ANONYMOUS)


CALLER = _caller()
WEB = "spiffe://meshplane.local/mesh/m/virtualNode/web"
BUNDLE = "spiffe://meshplane.local"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def node_spec(host: str) -> dict[str, Any]:
    return {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": host}},
    }


def secret(snapshot: Snapshot | None, name: str) -> secret_pb2.Secret:
    assert snapshot is not None
    resource = snapshot.get(types.SECRET)[name]
    assert isinstance(resource.message, secret_pb2.Secret)
    return resource.message


def leaf(snapshot: Snapshot | None, name: str = WEB) -> x509.Certificate:
    chain = secret(snapshot, name).tls_certificate.certificate_chain.inline_bytes
    return x509.load_pem_x509_certificates(chain)[0]


def mesh_with(
    embedded_store: SqlStore, tags: list[dict[str, str]], web: dict[str, Any]
) -> ResourceService:
    service = ResourceService(embedded_store, Partition("us-east-1", "000000000000"))
    service.create(ResourceKey(Kind.MESH, "m", "m"), None, caller=CALLER, tags=tags)
    service.create(ResourceKey(Kind.VIRTUAL_NODE, "m", "web"), web, caller=CALLER)
    return service


async def test_mesh_mtls_snapshots_carry_the_proxy_identity_and_rotate(
    embedded_store: SqlStore, tmp_path: Path
) -> None:
    mesh_with(embedded_store, [{"key": MTLS_TAG, "value": "STRICT"}], node_spec("10.0.0.1"))
    clock = Clock()
    identities = CertificateAuthorities(
        tmp_path / "ca", CaSettings(cert_lifetime=timedelta(hours=2)), clock
    )
    cache = SnapshotCache()
    registry = CollectorRegistry()
    loop = ControlLoop(
        embedded_store, cache, registry=registry, debounce=0.01, authorities=identities
    )
    await loop.start()
    try:
        await loop.proxy_connected(connection(1, "mesh/m/virtualNode/web"))
        first = cache.get("mesh/m/virtualNode/web")
        assert first is not None
        assert set(first.get(types.SECRET)) == {WEB, BUNDLE}
        first.consistent()
        cert = leaf(first)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [WEB]
        bundle = secret(first, BUNDLE).validation_context.trusted_ca.inline_bytes
        cert.verify_directly_issued_by(x509.load_pem_x509_certificates(bundle)[0])
        assert loop.problems(1) == ()
        translated = registry.get_sample_value("meshplane_translations_total")

        # nothing due: nothing republished
        assert loop.refresh_secrets() == 0
        assert cache.get("mesh/m/virtualNode/web") is first
        # at the rotation point a new certificate goes out with the same other resources
        clock.now += timedelta(hours=1, seconds=1)
        assert loop.refresh_secrets() == 1
        second = cache.get("mesh/m/virtualNode/web")
        assert second is not None and second is not first
        assert leaf(second).serial_number != cert.serial_number
        assert second.version(types.LISTENER) == first.version(types.LISTENER)
        assert second.version(types.CLUSTER) == first.version(types.CLUSTER)
        assert registry.get_sample_value("meshplane_translations_total") == translated

        # a CA rotation puts both roots in the bundle at once (the rotation task wakes up)
        identities.rotate_ca("m")
        for _ in range(200):
            third = cache.get("mesh/m/virtualNode/web")
            if third is not second:
                break
            await asyncio.sleep(0.01)
        bundle = secret(third, BUNDLE).validation_context.trusted_ca.inline_bytes
        assert len(x509.load_pem_x509_certificates(bundle)) == 2
        assert leaf(third).serial_number == leaf(second).serial_number  # old root still signs

        await loop.proxy_disconnected(connection(1, "mesh/m/virtualNode/web"))
        assert identities.next_change() != leaf(third).not_valid_after_utc  # forgotten
    finally:
        await loop.stop()


async def test_a_proxy_gets_no_other_identity(embedded_store: SqlStore, tmp_path: Path) -> None:
    stolen = {
        "mode": "STRICT",
        "certificate": {"sds": {"secretName": "spiffe://meshplane.local/mesh/m/virtualNode/db"}},
        "validation": {"trust": {"sds": {"secretName": "my-own-ca"}}},
    }
    web = node_spec("10.0.0.1")
    web["listeners"][0]["tls"] = stolen
    mesh_with(embedded_store, [], web)
    identities = CertificateAuthorities(tmp_path / "ca", CaSettings(), Clock())
    cache = SnapshotCache()
    loop = ControlLoop(embedded_store, cache, debounce=0.01, authorities=identities)
    await loop.start()
    try:
        await loop.proxy_connected(connection(1, "mesh/m/virtualNode/web"))
        snapshot = cache.get("mesh/m/virtualNode/web")
        assert snapshot is not None
        assert not snapshot.get(types.SECRET)
        problems = loop.problems(1)
        assert any("virtualNode/db" in p and "not served" in p for p in problems)
        assert any("'my-own-ca'" in p for p in problems)
    finally:
        await loop.stop()


async def test_the_mtls_tag_is_followed_live(embedded_store: SqlStore, tmp_path: Path) -> None:
    service = mesh_with(embedded_store, [], node_spec("10.0.0.1"))
    loop = ControlLoop(
        embedded_store,
        SnapshotCache(),
        debounce=0.01,
        authorities=CertificateAuthorities(tmp_path / "ca", CaSettings(), Clock()),
    )
    await loop.start()
    try:
        await loop.proxy_connected(connection(1, "mesh/m/virtualNode/web"))
        assert not loop.cache.get("mesh/m/virtualNode/web").get(types.SECRET)  # type: ignore[union-attr]
        arn = "arn:aws:appmesh:us-east-1:000000000000:mesh/m"
        who = {"caller": CALLER} if "caller" in inspect.signature(service.tag).parameters else {}
        await asyncio.to_thread(service.tag, arn, [{"key": MTLS_TAG, "value": "PERMISSIVE"}], **who)
        await settle(loop, embedded_store)
        snapshot = loop.cache.get("mesh/m/virtualNode/web")
        assert snapshot is not None and set(snapshot.get(types.SECRET)) == {WEB, BUNDLE}
        await asyncio.to_thread(service.tag, arn, [{"key": MTLS_TAG, "value": "bogus"}], **who)
        await settle(loop, embedded_store)
        assert any(MTLS_TAG in p for p in loop.problems(1))
    finally:
        await loop.stop()
