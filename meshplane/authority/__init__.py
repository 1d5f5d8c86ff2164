"""The control plane's authority over proxies: a certificate authority per mesh, SPIFFE IDs,
proxy tokens.  (Who a proxy *is* lives in :mod:`meshplane.model.proxy`; who calls the API,
in :mod:`meshplane.api.auth`.)

- :mod:`~meshplane.authority.spiffe`: SPIFFE IDs of proxies and the SDS secret names that
  carry them (pure; translation uses these names).
- :mod:`~meshplane.authority.ca`: one mesh's CA (roots, trust bundle, leaf issuance,
  rotation with overlap), pure over an explicit clock.
- :mod:`~meshplane.authority.keystore`: CA files under ``<data dir>/ca/<mesh>/`` (keys 0600).
- :mod:`~meshplane.authority.mesh_cas`: :class:`CertificateAuthorities`, the CA-per-mesh service the
  control loop asks for certificates and trust bundles.
- :mod:`~meshplane.authority.tokens`: HMAC-signed, expiring proxy tokens scoped to one proxy;
  :mod:`~meshplane.authority.revocations`: the ones revoked before they expire.
- :mod:`~meshplane.authority.server_tls`: the control plane's own CA and server certificate
  (``serve --tls-issue``).
- :mod:`~meshplane.authority.files`: atomic writes with their permissions from the start.

Sits just above ``meshplane.model`` in the layers: of meshplane it imports only
``meshplane.errors``.
Built by ``meshplane.server``; used by the control loop, the API and translation (names).
"""

from meshplane.authority.ca import AuthorityError, IssuedCertificate, MeshAuthority
from meshplane.authority.mesh_cas import CaSettings, CertificateAuthorities
from meshplane.authority.spiffe import DEFAULT_TRUST_DOMAIN, spiffe_id, trust_bundle_name
from meshplane.authority.tokens import InvalidTokenError, TokenClaims, TokenKey

__all__ = [
    "DEFAULT_TRUST_DOMAIN",
    "AuthorityError",
    "CaSettings",
    "CertificateAuthorities",
    "InvalidTokenError",
    "IssuedCertificate",
    "MeshAuthority",
    "TokenClaims",
    "TokenKey",
    "spiffe_id",
    "trust_bundle_name",
]
