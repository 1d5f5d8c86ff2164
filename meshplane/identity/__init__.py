"""Mesh identity: a certificate authority per mesh, SPIFFE identities, proxy tokens.

- :mod:`~meshplane.identity.spiffe`: SPIFFE IDs of proxies and the SDS secret names that
  carry them (pure; translation uses these names).
- :mod:`~meshplane.identity.authority`: one mesh's CA (roots, trust bundle, leaf issuance,
  rotation with overlap), pure over an explicit clock.
- :mod:`~meshplane.identity.keystore`: CA files under ``<data dir>/ca/<mesh>/`` (keys 0600).
- :mod:`~meshplane.identity.identities`: :class:`MeshIdentities`, the CA-per-mesh service the
  control loop asks for certificates and trust bundles.
- :mod:`~meshplane.identity.tokens`: HMAC-signed, expiring proxy tokens scoped to one proxy;
  :mod:`~meshplane.identity.revocations`: the ones revoked before they expire.
- :mod:`~meshplane.identity.server_tls`: the control plane's own CA and server certificate
  (``serve --tls-issue``).
- :mod:`~meshplane.identity.files`: atomic writes with their permissions from the start.

Sits just above ``meshplane.model`` in the layers: of meshplane it imports only
``meshplane.errors``.
Built by ``meshplane.server``; used by the control loop, the API and translation (names).
"""

from meshplane.identity.authority import AuthorityError, IssuedCertificate, MeshAuthority
from meshplane.identity.identities import IdentitySettings, MeshIdentities
from meshplane.identity.spiffe import DEFAULT_TRUST_DOMAIN, spiffe_id, trust_bundle_name
from meshplane.identity.tokens import InvalidTokenError, TokenClaims, TokenKey

__all__ = [
    "DEFAULT_TRUST_DOMAIN",
    "AuthorityError",
    "IdentitySettings",
    "InvalidTokenError",
    "IssuedCertificate",
    "MeshAuthority",
    "MeshIdentities",
    "TokenClaims",
    "TokenKey",
    "spiffe_id",
    "trust_bundle_name",
]
