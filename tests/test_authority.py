"""The mesh certificate authority, its files, certificate rotation and proxy tokens."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshplane.authority import (
    AuthorityError,
    CaSettings,
    CertificateAuthorities,
    InvalidTokenError,
    TokenKey,
    spiffe_id,
    trust_bundle_name,
)
from meshplane.authority.keystore import mesh_directory
from meshplane.authority.spiffe import InvalidTrustDomainError

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def identities(tmp_path: Path, clock: Clock, **settings: object) -> CertificateAuthorities:
    return CertificateAuthorities(tmp_path / "ca", CaSettings(**settings), clock)  # type: ignore[arg-type]


def certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def uris(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


# --- SPIFFE names -------------------------------------------------------------------------


def test_spiffe_ids_and_secret_names() -> None:
    assert spiffe_id("meshplane.local", "demo", "virtualNode", "blue") == (
        "spiffe://meshplane.local/mesh/demo/virtualNode/blue"
    )
    assert spiffe_id("td", "m", "virtualGateway", "a b/c") == (
        "spiffe://td/mesh/m/virtualGateway/a%20b%2Fc"
    )
    assert trust_bundle_name("example.org") == "spiffe://example.org"
    with pytest.raises(InvalidTrustDomainError):
        CaSettings(trust_domain="Not/A/Domain")


# --- the CA and its files ------------------------------------------------------------------


def test_a_mesh_ca_is_created_on_first_use_with_private_key_files(tmp_path: Path) -> None:
    clock = Clock()
    ids = identities(tmp_path, clock)
    folder = mesh_directory(tmp_path / "ca", "demo")
    assert not folder.exists()
    bundle = ids.trust_bundle("demo")
    (root,) = certs(bundle)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    keys = list(folder.glob("*.key"))
    assert len(keys) == 1
    assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600
    # the key never appears in what is served
    assert b"PRIVATE" not in bundle
    # a new service over the same directory loads the same CA
    again = identities(tmp_path, clock)
    assert again.trust_bundle("demo") == bundle
    # another mesh gets its own CA
    assert ids.trust_bundle("other") != bundle


def test_odd_mesh_names_get_a_safe_directory(tmp_path: Path) -> None:
    assert mesh_directory(tmp_path, "../etc").name == "~" + b"../etc".hex()
    assert mesh_directory(tmp_path, "demo-1.x").name == "demo-1.x"
    ids = identities(tmp_path, Clock())
    ids.trust_bundle("../x")
    assert (tmp_path / "ca" / ("~" + b"../x".hex()) / "roots.json").exists()
    assert not (tmp_path / "x").exists()


def test_issued_certificates_are_spiffe_identities_signed_by_the_mesh_ca(tmp_path: Path) -> None:
    clock = Clock()
    ids = identities(tmp_path, clock, trust_domain="example.org")
    issued = ids.certificate("demo", "virtualNode", "blue")
    (leaf,) = certs(issued.certificate_chain)
    (root,) = certs(ids.trust_bundle("demo"))
    leaf.verify_directly_issued_by(root)
    assert uris(leaf) == ["spiffe://example.org/mesh/demo/virtualNode/blue"]
    assert issued.spiffe_id == uris(leaf)[0]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    assert leaf.not_valid_after_utc - T0 == timedelta(hours=24)
    assert issued.rotate_at == T0 + timedelta(hours=12)  # half of the lifetime from issuance
    key = serialization.load_pem_private_key(issued.private_key, password=None)
    assert key.public_key() == leaf.public_key()
    gateway = ids.certificate("demo", "virtualGateway", "ingress")
    assert uris(certs(gateway.certificate_chain)[0]) == [
        "spiffe://example.org/mesh/demo/virtualGateway/ingress"
    ]


def test_certificates_are_kept_until_their_rotation_point(tmp_path: Path) -> None:
    clock = Clock()
    ids = identities(tmp_path, clock, cert_lifetime=timedelta(seconds=8), rotate_after=0.5)
    first = ids.certificate("demo", "virtualNode", "blue")
    assert first.rotate_at == T0 + timedelta(seconds=4)  # short lifetimes rotate in time too
    assert ids.next_change() == first.rotate_at
    clock.advance(seconds=3)
    assert ids.certificate("demo", "virtualNode", "blue") is first
    clock.now = first.rotate_at
    second = ids.certificate("demo", "virtualNode", "blue")
    assert second is not first
    assert second.not_after > first.not_after
    assert (
        certs(second.certificate_chain)[0].serial_number
        != certs(first.certificate_chain)[0].serial_number
    )


def test_ca_rotation_trusts_both_roots_during_the_overlap(tmp_path: Path) -> None:
    clock = Clock()
    ids = identities(
        tmp_path,
        clock,
        cert_lifetime=timedelta(hours=1),
        ca_propagation=timedelta(minutes=1),
        ca_overlap=timedelta(hours=2),
    )
    before = ids.certificate("demo", "virtualNode", "blue")
    (old_root,) = certs(ids.trust_bundle("demo"))
    ids.rotate_ca("demo")
    # 1. both roots are trusted at once; the old one still signs
    bundle = certs(ids.trust_bundle("demo"))
    assert len(bundle) == 2 and old_root in bundle
    assert ids.certificate("demo", "virtualNode", "blue") is before
    assert ids.next_change() == T0 + timedelta(minutes=1)
    # 2. after the propagation delay the new root signs: certificates are re-issued by it
    clock.advance(minutes=1)
    after = ids.certificate("demo", "virtualNode", "blue")
    assert after is not before
    new_root = next(c for c in bundle if c != old_root)
    certs(after.certificate_chain)[0].verify_directly_issued_by(new_root)
    assert len(certs(ids.trust_bundle("demo"))) == 2
    # 3. after the overlap only the new root is trusted, and its files are all that is left
    clock.advance(hours=2)
    assert certs(ids.trust_bundle("demo")) == [new_root]
    reloaded = identities(tmp_path, clock, ca_overlap=timedelta(hours=2))
    assert certs(reloaded.trust_bundle("demo")) == [new_root]
    ids.rotate_ca("demo")  # a second rotation drops the long-gone root's files
    folder = mesh_directory(tmp_path / "ca", "demo")
    assert len(list(folder.glob("root-*.key"))) == 2


def test_a_ca_near_its_expiry_rotates_itself(tmp_path: Path) -> None:
    clock = Clock()
    ids = identities(
        tmp_path, clock, ca_lifetime=timedelta(days=60), ca_rotate_before=timedelta(days=30)
    )
    assert len(certs(ids.trust_bundle("demo"))) == 1
    assert ids.rotate_if_due("demo") is None  # not yet
    assert ids.rotate_if_due("other") is None  # no CA: none is made
    clock.advance(days=31)
    before, after = ids.rotate_if_due("demo") or (None, None)
    assert before is not None and after is not None and len(after.roots) == 2
    assert len(certs(ids.trust_bundle("demo"))) == 2
    assert ids.rotate_if_due("demo") is None  # a rotation is under way


def _operator_ca(tmp_path: Path) -> tuple[Path, Path, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(T0 - timedelta(days=1))
        .not_valid_after(T0 + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "op.pem", tmp_path / "op.key"
    cert_path.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, root


def test_an_operator_supplied_ca_signs_for_every_mesh(tmp_path: Path) -> None:
    cert_path, key_path, root = _operator_ca(tmp_path)
    clock = Clock()
    ids = identities(tmp_path, clock, ca_certificate_file=cert_path, ca_key_file=key_path)
    for mesh in ("a", "b"):
        assert certs(ids.trust_bundle(mesh)) == [root]
        (leaf,) = certs(ids.certificate(mesh, "virtualNode", "n").certificate_chain)
        leaf.verify_directly_issued_by(root)
    assert not (tmp_path / "ca").exists()  # nothing copied
    with pytest.raises(AuthorityError, match="operator-supplied"):
        ids.rotate_ca("a")
    other = ec.generate_private_key(ec.SECP256R1())
    key_path.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(AuthorityError, match="does not belong"):
        identities(tmp_path, clock, ca_certificate_file=cert_path, ca_key_file=key_path)


# --- proxy tokens -------------------------------------------------------------------------


def test_proxy_tokens_are_scoped_signed_and_expire(tmp_path: Path) -> None:
    path = tmp_path / "proxy-token.key"
    key = TokenKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TokenKey.load_or_create(path).verify(key.issue("s", 0, 10)[0], 5).subject == "s"
    token, claims = key.issue("mesh/demo/virtualNode/blue", 1000, 3600)
    assert claims.expires_at == 4600
    assert key.verify(token, 4599) == claims
    with pytest.raises(InvalidTokenError, match="expired"):
        key.verify(token, 4600)
    head, payload, signature = token.split(".")
    forged = payload.replace(payload[5], "A" if payload[5] != "A" else "B")
    with pytest.raises(InvalidTokenError):
        key.verify(f"{head}.{forged}.{signature}", 2000)
    with pytest.raises(InvalidTokenError, match="signature"):
        TokenKey(b"x" * 32).verify(token, 2000)
    for junk in ("", "Bearer x", "mpx1.a.b", "mpx1..", "a.b.c.d"):
        with pytest.raises(InvalidTokenError):
            key.verify(junk, 2000)
    with pytest.raises(ValueError):
        key.issue("s", 0, 0)


def test_reload_never_waits_for_a_caller_of_the_keystore(tmp_path: Path) -> None:
    """``reload`` runs on the store's writer thread; a thread holding the CAs' lock may be
    waiting for that thread (it creates or rotates a CA): reload must not wait for the lock."""
    import threading

    clock = Clock()
    ids = identities(tmp_path, clock)
    first = ids.authority("demo")
    ids.keystore.save(
        first.rotated(
            clock(),
            lifetime=ids.settings.ca_lifetime,
            propagation=ids.settings.ca_propagation,
            overlap=ids.settings.overlap,
        )
    )  # another replica's rotation
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with ids._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    reloaded = threading.Thread(target=ids.reload, args=({"demo"},))
    reloaded.start()
    reloaded.join(5)
    finished = not reloaded.is_alive()
    release.set()
    thread.join()
    assert finished, "reload waited for the lock"
    assert len(ids.authority("demo").roots) == 2  # read again at its next use
