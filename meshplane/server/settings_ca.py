"""The ``ca`` settings of ``meshplane serve``: the trust domain, the lifetime and rotation of
the proxies' certificates, and the mesh CAs (supplied by the operator, or made, rotated and
propagated by meshplane).

Declarations only (:class:`~meshplane.server.setting.Setting`), their defaults those of
:class:`meshplane.authority.CaSettings`; part of :data:`meshplane.server.settings.SETTINGS`,
whose ``Settings.load`` builds the ``CaSettings`` from them.
"""

from __future__ import annotations

from meshplane.authority import CaSettings
from meshplane.server.setting import Kind, Setting

_IDENTITY = CaSettings()

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "trust_domain",
        "--trust-domain",
        "MESHPLANE_TRUST_DOMAIN",
        Kind.TEXT,
        "SPIFFE trust domain of proxy identities.",
        "ca",
        default=_IDENTITY.trust_domain,
    ),
    Setting(
        "cert_lifetime",
        "--cert-lifetime",
        "MESHPLANE_CERT_LIFETIME",
        Kind.DURATION,
        "Lifetime of proxy certificates, e.g. 24h, 90m.",
        "ca",
        default=_IDENTITY.cert_lifetime,
        metavar="DURATION",
    ),
    Setting(
        "cert_rotate_after",
        "--cert-rotate-after",
        "MESHPLANE_CERT_ROTATE_AFTER",
        Kind.FRACTION,
        "Fraction of its lifetime after which a proxy certificate is replaced.",
        "ca",
        default=_IDENTITY.rotate_after,
    ),
    Setting(
        "ca_cert",
        "--ca-cert",
        "MESHPLANE_CA_CERT",
        Kind.FILE,
        "An operator CA certificate (PEM) that signs proxy certificates of every mesh, "
        "instead of one generated CA per mesh.",
        "ca",
    ),
    Setting(
        "ca_key",
        "--ca-key",
        "MESHPLANE_CA_KEY",
        Kind.FILE,
        "The EC private key (PEM) of --ca-cert.",
        "ca",
    ),
    Setting(
        "ca_propagation",
        "--ca-propagation",
        "MESHPLANE_CA_PROPAGATION",
        Kind.DURATION,
        "After 'meshplane ca rotate', how long the new root is only trusted before it signs.",
        "ca",
        default=_IDENTITY.ca_propagation,
        metavar="DURATION",
    ),
    Setting(
        "ca_overlap",
        "--ca-overlap",
        "MESHPLANE_CA_OVERLAP",
        Kind.DURATION,
        "How long the old root stays trusted once the new one signs.",
        "ca",
        default_text="the `--cert-lifetime`",
        metavar="DURATION",
    ),
    Setting(
        "ca_lifetime",
        "--ca-lifetime",
        "MESHPLANE_CA_LIFETIME",
        Kind.DURATION,
        "Lifetime of a generated mesh CA root.",
        "ca",
        default=_IDENTITY.ca_lifetime,
        metavar="DURATION",
    ),
    Setting(
        "ca_rotate_before",
        "--ca-rotate-before",
        "MESHPLANE_CA_ROTATE_BEFORE",
        Kind.DURATION,
        "A generated mesh CA root this close to its expiry is rotated on its own (by the "
        "replica that holds the fleet's duty lease).",
        "ca",
        default=_IDENTITY.ca_rotate_before,
        metavar="DURATION",
    ),
)
