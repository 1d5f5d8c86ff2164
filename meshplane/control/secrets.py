"""SDS secrets for one proxy: its mesh-issued identity and its mesh's trust bundle.

Translation only *names* secrets (SPIFFE style, see :mod:`meshplane.authority.spiffe`); the
control loop asks :func:`proxy_secrets` for the ones a proxy's resources reference.  A proxy
gets exactly two kinds, and only its own:

- the secret named after its SPIFFE ID: a ``tls_certificate`` with the certificate chain and
  private key the mesh CA issued it (never another proxy's: a resource naming another
  identity gets nothing, and the reason is in ``problems``);
- the secret named ``spiffe://<trust domain>``: a ``validation_context`` with the PEM of every
  root of its mesh's CA trusted now (two during a CA rotation).

:class:`CertificateIssuer` is the seam to the CAs
(:class:`meshplane.authority.CertificateAuthorities` implements it).  Called by
:mod:`meshplane.control.loop`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from meshplane.authority import AuthorityError, IssuedCertificate, spiffe_id, trust_bundle_name
from meshplane.model.proxy import ProxyIdentity

log = logging.getLogger(__name__)


class CertificateIssuer(Protocol):
    """What the control loop needs from the mesh certificate authorities."""

    @property
    def trust_domain(self) -> str: ...

    def certificate(self, mesh: str, kind: str, name: str) -> IssuedCertificate: ...

    def trust_bundle(self, mesh: str) -> bytes: ...

    def next_change(self) -> datetime | None: ...

    def forget(self, mesh: str, kind: str, name: str) -> None: ...

    def add_listener(self, listener: Callable[[], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class ProxySecrets:
    secrets: tuple[secret_pb2.Secret, ...]
    problems: tuple[str, ...]


def proxy_secrets(
    authorities: CertificateIssuer | None, target: ProxyIdentity, wanted: Iterable[str]
) -> ProxySecrets:
    """The secrets among ``wanted`` that ``target`` may have, and why the others are absent."""
    names = sorted(set(wanted))
    if not names:
        return ProxySecrets((), ())
    if authorities is None:
        return ProxySecrets(
            (), ("TLS needs SDS secrets but this server has no certificate authority",)
        )
    td = authorities.trust_domain
    own = spiffe_id(td, target.mesh, target.kind.value, target.name)
    bundle = trust_bundle_name(td)
    secrets: list[secret_pb2.Secret] = []
    problems: list[str] = []
    for name in names:
        try:
            if name == own:
                issued = authorities.certificate(target.mesh, target.kind.value, target.name)
                secrets.append(certificate_secret(name, issued))
            elif name == bundle:
                secrets.append(trust_secret(name, authorities.trust_bundle(target.mesh)))
            else:
                problems.append(
                    f"SDS secret {name!r} is not served: meshplane serves this proxy's own"
                    f" identity {own!r} and its mesh's trust bundle {bundle!r}"
                )
        except (AuthorityError, OSError) as error:
            log.error("cannot issue SDS secret %s for %s: %s", name, target, error)
            problems.append(f"SDS secret {name!r}: the mesh CA failed: {error}")
    return ProxySecrets(tuple(secrets), tuple(problems))


def certificate_secret(name: str, issued: IssuedCertificate) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=name,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=issued.certificate_chain),
            private_key=base_pb2.DataSource(inline_bytes=issued.private_key),
        ),
    )


def trust_secret(name: str, bundle: bytes) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=name,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=bundle)
        ),
    )
