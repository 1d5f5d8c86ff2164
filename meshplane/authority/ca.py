"""One mesh's certificate authority: its roots, the trust bundle, and leaf certificates.

A :class:`MeshAuthority` is immutable.  It holds one or more :class:`Root` s: the one that
signs now, and others that are still trusted (the previous root during a CA rotation's
overlap) or not signing yet (the next root, trusted first so that every proxy trusts it before
any certificate it signed is shown to them).  :meth:`MeshAuthority.issue` makes a short-lived
EC P-256 leaf whose only SAN is the proxy's SPIFFE ID URI, valid for client and server
authentication; :meth:`MeshAuthority.trust_bundle` is the PEM of every root trusted now.

A rotation (:meth:`MeshAuthority.rotated`) adds a new root that signs from ``now +
propagation`` and keeps the old one trusted until ``overlap`` after that, so that:

1. every proxy gets a bundle with both roots, while leaves are still signed by the old one;
2. leaves are re-issued by the new root (the control loop re-issues when the signing root
   changes), and peers already trust it;
3. the old root leaves the bundle once no live leaf can depend on it.

Pure: no I/O, no clock (every method takes ``now``).  Persisted by
:mod:`meshplane.authority.keystore`; used by :mod:`meshplane.authority.mesh_cas`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshplane.errors import MeshplaneError

CLOCK_SKEW = timedelta(minutes=5)
"""Leaves and roots are valid from this long before they are made (clock skew between hosts)."""


class AuthorityError(MeshplaneError):
    """A CA that cannot sign (no root, an unusable operator-supplied certificate or key)."""


@dataclass(frozen=True, slots=True)
class Root:
    """A CA certificate with its key, and when it signs and is trusted."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    sign_from: datetime
    """Leaves are signed by the newest root whose ``sign_from`` has passed."""
    trusted_until: datetime | None = None
    """None: trusted until it expires."""
    chain: tuple[x509.Certificate, ...] = ()
    """Certificates sent after a leaf, up to the trust anchor (an operator CA's issuers)."""
    operator: bool = False
    """Supplied by the operator (never rotated by meshplane)."""

    @property
    def serial(self) -> int:
        return int(self.certificate.serial_number)

    @property
    def anchor(self) -> x509.Certificate:
        """The certificate peers trust: the last of the chain, or the root itself."""
        return self.chain[-1] if self.chain else self.certificate

    def trusted(self, now: datetime) -> bool:
        return (self.trusted_until is None or now < self.trusted_until) and (
            now < self.certificate.not_valid_after_utc
        )


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A leaf certificate and its key, as PEM, with the times that matter."""

    spiffe_id: str
    certificate_chain: bytes
    """The leaf followed by its issuers up to (not including) a self-signed anchor."""
    private_key: bytes
    not_before: datetime
    not_after: datetime
    rotate_at: datetime
    """When a fresh certificate should replace this one."""
    issuer_serial: int


def new_root(mesh: str, now: datetime, lifetime: timedelta, *, trust_domain: str = "") -> Root:
    """A fresh self-signed EC P-256 root for ``mesh``, signing from ``now``."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshplane"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, (trust_domain or "mesh")[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, f"mesh CA {mesh}"[:64]),
        ]
    )
    certificate, key = self_signed_ca(name, now, lifetime)
    return Root(certificate=certificate, key=key, sign_from=now)


def self_signed_ca(
    name: x509.Name, now: datetime, lifetime: timedelta
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh self-signed EC P-256 CA certificate named ``name`` (no intermediates below it),
    valid from ``now`` (less the clock skew) for ``lifetime``, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def key_usage(*, cert_sign: bool = False, key_agreement: bool = False) -> x509.KeyUsage:
    """Digital signature, plus certificate and CRL signing (a CA) or key agreement (a leaf)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM (files are protected by their mode)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def operator_root(certificate_pem: bytes, key_pem: bytes, now: datetime) -> Root:
    """A root from an operator's CA certificate (optionally followed by its issuers) and key."""
    try:
        certificates = x509.load_pem_x509_certificates(certificate_pem)
    except ValueError as error:
        raise AuthorityError(f"the CA certificate is not PEM: {error}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as error:
        raise AuthorityError(f"the CA key is not an unencrypted PEM key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise AuthorityError("the CA key must be an EC key (P-256 recommended)")
    certificate = certificates[0]
    if certificate.public_key() != key.public_key():
        raise AuthorityError("the CA key does not belong to the CA certificate")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        raise AuthorityError("the CA certificate has no basicConstraints CA:TRUE") from None
    if not constraints.value.ca:
        raise AuthorityError("the CA certificate is not a CA (basicConstraints CA:FALSE)")
    return Root(
        certificate=certificate,
        key=key,
        sign_from=certificate.not_valid_before_utc,
        chain=tuple(certificates[1:]),
        operator=True,
    )


class MeshAuthority:
    """The roots of one mesh (see the module docstring).  Immutable."""

    __slots__ = ("mesh", "roots", "trust_domain")

    def __init__(self, mesh: str, trust_domain: str, roots: Sequence[Root]) -> None:
        if not roots:
            raise AuthorityError(f"mesh {mesh!r} has no CA root")
        self.mesh = mesh
        self.trust_domain = trust_domain
        self.roots = tuple(sorted(roots, key=lambda r: r.sign_from))

    def signing_root(self, now: datetime) -> Root:
        """The root that signs leaves at ``now`` (the newest one whose time has come)."""
        current = [r for r in self.roots if r.sign_from <= now]
        return current[-1] if current else self.roots[0]

    def trusted_roots(self, now: datetime) -> tuple[Root, ...]:
        trusted = tuple(r for r in self.roots if r.trusted(now))
        return trusted or (self.signing_root(now),)

    def trust_bundle(self, now: datetime) -> bytes:
        """PEM of every trust anchor trusted at ``now`` (signing, next and retiring roots)."""
        seen: set[bytes] = set()
        out = []
        for root in self.trusted_roots(now):
            pem = root.anchor.public_bytes(serialization.Encoding.PEM)
            if pem not in seen:
                seen.add(pem)
                out.append(pem)
        return b"".join(out)

    def next_change(self, now: datetime) -> datetime | None:
        """The next time the signing root or the trust bundle changes by itself, if any."""
        times = [r.sign_from for r in self.roots if r.sign_from > now]
        times += [r.trusted_until for r in self.roots if r.trusted_until and r.trusted_until > now]
        return min(times) if times else None

    def expires(self, now: datetime) -> datetime:
        """When the signing root expires."""
        return self.signing_root(now).certificate.not_valid_after_utc

    def issue(
        self, spiffe_id: str, now: datetime, lifetime: timedelta, rotate_after: float = 0.5
    ) -> IssuedCertificate:
        """A fresh leaf for ``spiffe_id``, valid ``lifetime`` (capped by the root's expiry);
        it should be replaced after ``rotate_after`` of its lifetime."""
        root = self.signing_root(now)
        key = ec.generate_private_key(ec.SECP256R1())
        not_before = max(now - CLOCK_SKEW, root.certificate.not_valid_before_utc)
        not_after = min(now + lifetime, root.certificate.not_valid_after_utc)
        if not_after <= now:
            raise AuthorityError(f"the CA of mesh {self.mesh!r} has expired")
        public = key.public_key()
        issuer_ski = (
            root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            if _has_ski(root.certificate)
            else None
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshplane")]))
            .issuer_name(root.certificate.subject)
            .public_key(public)
            .serial_number(_serial())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(key_agreement=True), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )
        if issuer_ski is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
                critical=False,
            )
        leaf = builder.sign(root.key, hashes.SHA256())
        chain = [leaf, root.certificate, *root.chain]
        if _self_signed(chain[-1]):
            chain.pop()  # peers hold the anchor; sending it is useless
        rotate_at = now + (not_after - now) * rotate_after  # not from the backdated start
        return IssuedCertificate(
            spiffe_id=spiffe_id,
            certificate_chain=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain),
            private_key=private_pem(key),
            not_before=not_before,
            not_after=not_after,
            rotate_at=max(rotate_at, now),
            issuer_serial=root.serial,
        )

    def rotated(
        self,
        now: datetime,
        *,
        lifetime: timedelta,
        propagation: timedelta,
        overlap: timedelta,
    ) -> MeshAuthority:
        """This authority with a new root that signs from ``now + propagation``; the current
        roots stay trusted until ``overlap`` after that.  Roots no longer trusted are dropped.
        """
        if any(r.operator for r in self.roots):
            raise AuthorityError(
                f"mesh {self.mesh!r} uses an operator-supplied CA: replace its files to rotate it"
            )
        switch = now + propagation
        fresh = new_root(self.mesh, now, lifetime, trust_domain=self.trust_domain)
        fresh = replace(fresh, sign_from=switch)
        until = switch + overlap
        kept = [
            replace(r, trusted_until=min(r.trusted_until or until, until))
            for r in self.roots
            if r.trusted(now)
        ]
        return MeshAuthority(self.mesh, self.trust_domain, [*kept, fresh])

    def without_retired(self, now: datetime) -> MeshAuthority:
        """This authority without the roots that are no longer trusted (and do not sign)."""
        signing = self.signing_root(now)
        kept = [r for r in self.roots if r is signing or r.trusted(now) or r.sign_from > now]
        return MeshAuthority(self.mesh, self.trust_domain, kept)


def _serial() -> int:
    return secrets.randbits(126) + 1


def _has_ski(certificate: x509.Certificate) -> bool:
    try:
        certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return False
    return True


def _self_signed(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject
