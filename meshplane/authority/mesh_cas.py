"""The mesh identities service: a CA per mesh, created on first use, and proxy certificates.

:class:`CertificateAuthorities` is what the control loop asks for a proxy's certificate
(:meth:`~CertificateAuthorities.certificate`) and a mesh's trust bundle
(:meth:`~CertificateAuthorities.trust_bundle`).  It loads a mesh's CA from the
:class:`~meshplane.authority.keystore.KeyStore` or creates it the first time the mesh needs one
(or uses the operator's CA for every mesh when :class:`CaSettings` names one), keeps
each issued certificate until its rotation point (``rotate_after`` of its lifetime, half by
default) and issues a new one after that, or as soon as the mesh's signing root changes.
:meth:`~CertificateAuthorities.next_change` tells the control loop when to come back.

:meth:`~CertificateAuthorities.rotate_ca` starts a CA rotation (see
:mod:`meshplane.authority.ca`); :meth:`~CertificateAuthorities.rotate_if_due` rotates a
generated CA whose signing root is within ``ca_rotate_before`` of its expiry (the fleet's
singleton duty ``meshplane.service.ca_rotation`` calls it on the replica holding the duty
lease).

Thread-safe (one lock); the clock is injected.  Built by ``meshplane.server`` from settings;
used by the control loop and the API (CA rotation).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from meshplane.authority.ca import (
    AuthorityError,
    IssuedCertificate,
    MeshAuthority,
    Root,
    new_root,
    operator_root,
)
from meshplane.authority.keystore import AuthorityStore, KeyStore
from meshplane.authority.spiffe import DEFAULT_TRUST_DOMAIN, check_trust_domain, spiffe_id

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CaSettings:
    """How the mesh CAs issue proxy identities."""

    trust_domain: str = DEFAULT_TRUST_DOMAIN
    cert_lifetime: timedelta = timedelta(hours=24)
    rotate_after: float = 0.5
    """Fraction of a certificate's lifetime after which it is replaced (0 < x < 1)."""
    ca_lifetime: timedelta = timedelta(days=3650)
    ca_rotate_before: timedelta = timedelta(days=30)
    """A CA root this close to its expiry is rotated automatically."""
    ca_propagation: timedelta = timedelta(seconds=30)
    """After a CA rotation, how long the new root is only trusted before it signs."""
    ca_overlap: timedelta | None = None
    """How long the old root stays trusted after the new one signs (default: the
    certificate lifetime, so no live certificate outlasts its root's trust)."""
    ca_certificate_file: Path | None = None
    """An operator-supplied CA certificate (PEM, optionally followed by its issuers) used for
    every mesh instead of a generated one; needs ``ca_key_file``."""
    ca_key_file: Path | None = None

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        if not 0 < self.rotate_after < 1:
            raise ValueError("rotate_after must be between 0 and 1")
        if self.cert_lifetime <= timedelta(0):
            raise ValueError("cert_lifetime must be positive")
        if not timedelta(0) <= self.ca_rotate_before < self.ca_lifetime:
            raise ValueError("--ca-rotate-before must be shorter than --ca-lifetime")
        if (self.ca_certificate_file is None) != (self.ca_key_file is None):
            raise ValueError("an operator CA needs both a certificate file and a key file")

    @property
    def overlap(self) -> timedelta:
        return self.ca_overlap if self.ca_overlap is not None else self.cert_lifetime


class CertificateAuthorities:
    """CAs by mesh and the current certificate of every proxy identity."""

    def __init__(
        self,
        directory: Path,
        settings: CaSettings | None = None,
        clock: Clock = utc_now,
        *,
        keystore: AuthorityStore | None = None,
    ) -> None:
        self.settings = settings or CaSettings()
        self.keystore: AuthorityStore = keystore or KeyStore(directory)
        self.clock = clock
        self._lock = threading.RLock()
        self._stale: set[str] = set()
        """Meshes whose CA another replica changed: read again at the next use.  Guarded by
        its own lock, never held while waiting: :meth:`reload` runs on the store's writer
        thread, which a caller of the keystore holding ``_lock`` may be waiting for."""
        self._stale_all = False
        self._stale_lock = threading.Lock()
        self._authorities: dict[str, MeshAuthority] = {}
        self._issued: dict[str, IssuedCertificate] = {}
        self._operator: Root | None = None
        self._listeners: list[Callable[[], None]] = []
        if self.settings.ca_certificate_file is not None:
            assert self.settings.ca_key_file is not None
            try:
                certificate = self.settings.ca_certificate_file.read_bytes()
                key = self.settings.ca_key_file.read_bytes()
            except OSError as error:
                raise AuthorityError(f"cannot read the CA files: {error}") from None
            self._operator = operator_root(certificate, key, clock())

    @property
    def trust_domain(self) -> str:
        return self.settings.trust_domain

    def spiffe_id(self, mesh: str, kind: str, name: str) -> str:
        return spiffe_id(self.trust_domain, mesh, kind, name)

    def authority(self, mesh: str) -> MeshAuthority:
        """The CA of ``mesh``, created (and stored) on first use."""
        with self._lock:
            self._drop_stale()
            now = self.clock()
            authority = self._authorities.get(mesh)
            if authority is None:
                authority = self._load_or_create(mesh, now)
                self._authorities[mesh] = authority
            return authority

    def _due(self, authority: MeshAuthority, now: datetime) -> bool:
        return (
            authority.next_change(now) is None  # no rotation under way
            and not any(r.operator for r in authority.roots)
            and authority.expires(now) - now < self.settings.ca_rotate_before
        )

    def rotate_if_due(self, mesh: str) -> tuple[MeshAuthority, MeshAuthority] | None:
        """Rotate the CA of ``mesh`` if its signing root is within ``ca_rotate_before`` of its
        expiry and no rotation is under way: (the CA before, the CA after), or None.  Never
        creates a CA; reads the keystore again before rotating (another replica may have)."""
        if self._operator is not None:  # the operator rotates their CA's files
            return None
        with self._lock:
            self._drop_stale()
            now = self.clock()
            authority = self._authorities.get(mesh)
            if authority is not None and not self._due(authority, now):
                return None
            current = self.keystore.load(mesh, self.trust_domain)
            if current is None:
                return None
            self._authorities[mesh] = current
            if not self._due(current, now):
                return None
            rotated = self._rotate(current, now)
            self._authorities[mesh] = rotated
        for listener in self._listeners:
            listener()
        return current, rotated

    def _load_or_create(self, mesh: str, now: datetime) -> MeshAuthority:
        td = self.trust_domain
        if self._operator is not None:
            return MeshAuthority(mesh, td, [self._operator])
        authority = self.keystore.load(mesh, td)
        if authority is None:
            root = new_root(mesh, now, self.settings.ca_lifetime, trust_domain=td)
            authority = self.keystore.create(MeshAuthority(mesh, td, [root]))
        return authority

    def reload(self, meshes: set[str] | None = None) -> None:
        """Another replica (or the main process of an xDS worker) changed the CAs of
        ``meshes`` (None: any; made or rotated one): read them again at their next use, and
        tell the listeners (the control loop re-sends trust bundles and certificates).  Never
        waits for ``_lock`` (see ``_stale``)."""
        with self._stale_lock:
            if meshes is None:
                self._stale_all = True
            else:
                self._stale |= meshes
        for listener in self._listeners:
            listener()

    def _drop_stale(self) -> None:
        """Under ``_lock``: forget the CAs another replica changed."""
        with self._stale_lock:
            stale, self._stale = self._stale, set()
            every, self._stale_all = self._stale_all, False
        for mesh in set(self._authorities) if every else stale:
            self._authorities.pop(mesh, None)

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (from any thread) after a CA rotation is started."""
        self._listeners.append(listener)

    def rotate_ca(self, mesh: str) -> MeshAuthority:
        """Start a rotation of the CA of ``mesh`` (see :meth:`MeshAuthority.rotated`)."""
        with self._lock:
            authority = self._rotate(self.authority(mesh), self.clock())
            self._authorities[mesh] = authority
        for listener in self._listeners:
            listener()
        return authority

    def _rotate(self, authority: MeshAuthority, now: datetime) -> MeshAuthority:
        rotated = authority.rotated(
            now,
            lifetime=self.settings.ca_lifetime,
            propagation=self.settings.ca_propagation,
            overlap=self.settings.overlap,
        )
        self.keystore.save(rotated)
        return rotated

    def trust_bundle(self, mesh: str) -> bytes:
        """PEM of the roots proxies of ``mesh`` trust now."""
        return self.authority(mesh).trust_bundle(self.clock())

    def certificate(self, mesh: str, kind: str, name: str) -> IssuedCertificate:
        """The current certificate of the proxy ``mesh/<mesh>/<kind>/<name>``: the one issued
        before if it is not due for rotation and its root still signs, else a fresh one."""
        identity = self.spiffe_id(mesh, kind, name)
        with self._lock:
            authority = self.authority(mesh)
            now = self.clock()
            issued = self._issued.get(identity)
            if (
                issued is None
                or now >= issued.rotate_at
                or issued.issuer_serial != authority.signing_root(now).serial
            ):
                issued = authority.issue(
                    identity, now, self.settings.cert_lifetime, self.settings.rotate_after
                )
                self._issued[identity] = issued
            return issued

    def forget(self, mesh: str, kind: str, name: str) -> None:
        """Drop the cached certificate of a proxy that is gone."""
        with self._lock:
            self._issued.pop(self.spiffe_id(mesh, kind, name), None)

    def forget_mesh(self, mesh: str) -> None:
        """Drop the in-memory CA of a deleted mesh (its files stay for a re-created mesh)."""
        with self._lock:
            self._authorities.pop(mesh, None)

    def next_change(self) -> datetime | None:
        """The earliest time a cached certificate is due or a CA's roots change by themselves."""
        with self._lock:
            self._drop_stale()
            now = self.clock()
            times = [c.rotate_at for c in self._issued.values()]
            times += [t for a in self._authorities.values() if (t := a.next_change(now))]
            return min(times) if times else None
