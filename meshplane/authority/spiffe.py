"""SPIFFE identities of proxies, and the SDS secret names that carry them.

A proxy running as ``mesh/<mesh>/virtualNode/<name>`` (or ``virtualGateway``) is
``spiffe://<trust domain>/mesh/<mesh>/virtualNode/<name>``: that URI is the only SAN of the
certificate the mesh CA issues it.  Names are percent-encoded where they hold characters a
SPIFFE path segment may not (App Mesh names have no pattern).

SDS secret names follow SPIRE's convention, which App Mesh's SDS documentation uses: a proxy's
certificate is the secret named after its SPIFFE ID, and the trust bundle of the mesh is the
secret named ``spiffe://<trust domain>``.  So a listener's ``certificate.sds.secretName`` and
a validation's ``trust.sds.secretName`` written for App Mesh with SPIRE work unchanged when the
trust domain matches.

Pure functions; used by translation (secret names in transport sockets), the control loop
(which secrets to issue), the certificate authority (URI SANs) and the API (proxy tokens).
"""

from __future__ import annotations

import re
from urllib.parse import quote

DEFAULT_TRUST_DOMAIN = "meshplane.local"
SCHEME = "spiffe://"
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]{1,255}$")


class InvalidTrustDomainError(ValueError):
    """A trust domain SPIFFE does not allow."""


def check_trust_domain(trust_domain: str) -> str:
    """``trust_domain`` if SPIFFE allows it (lower-case letters, digits, ``.``, ``-``, ``_``)."""
    if not _TRUST_DOMAIN.match(trust_domain):
        raise InvalidTrustDomainError(
            f"trust domain {trust_domain!r}: use lower-case letters, digits, '.', '-' and '_'"
        )
    return trust_domain


def spiffe_id(trust_domain: str, mesh: str, kind: str, name: str) -> str:
    """``spiffe://<trust domain>/mesh/<mesh>/<kind>/<name>`` (``kind``: ``virtualNode`` or
    ``virtualGateway``)."""
    segments = ("mesh", mesh, kind, name)
    return SCHEME + trust_domain + "/" + "/".join(quote(s, safe="") for s in segments)


def trust_bundle_name(trust_domain: str) -> str:
    """The SDS secret name of a mesh's trust bundle: ``spiffe://<trust domain>``."""
    return SCHEME + trust_domain
