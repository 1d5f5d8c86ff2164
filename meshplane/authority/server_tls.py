"""A certificate for the control plane's own API and xDS ports, issued by meshplane.

``meshplane serve --tls-issue`` needs no operator PKI: the server keeps a control-plane CA in
``<data dir>/tls`` (``ca.pem``, readable; ``ca-key.pem``, mode 0600, never served) and issues
itself a server certificate (``server.pem``, ``server-key.pem``, mode 0600) whose SANs are
``localhost``, ``127.0.0.1``, ``::1``, the address it binds (when it binds every address: the
host name and the addresses it resolves to) and any ``--tls-name``.  Clients trust ``ca.pem``:
the CLI's ``--tls-ca``, boto3's ``verify=``, ``meshplane envoy --xds-ca``.

The CA lasts ten years.  The server certificate lasts a year and is issued again at start-up
when fewer than 90 days are left, when it names other hosts than asked, when the CA changed, or
when a file is missing or unreadable.  This control-plane CA is separate from the mesh CAs
(:mod:`meshplane.authority.mesh_cas`): a proxy certificate never authenticates a server, nor
the reverse.

Used by :mod:`meshplane.server.run`.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshplane.authority.ca import CLOCK_SKEW, key_usage, private_pem, self_signed_ca
from meshplane.authority.files import write_file
from meshplane.errors import MeshplaneError

CA_LIFETIME = timedelta(days=3650)
SERVER_LIFETIME = timedelta(days=365)
RENEW_BEFORE = timedelta(days=90)
_CA_NAME = "meshplane control plane CA"
_WILDCARDS = ("0.0.0.0", "::", "")


class ServerTlsError(MeshplaneError):
    """The TLS directory cannot be read or written."""


@dataclass(frozen=True, slots=True)
class ServerTlsFiles:
    """Where the issued files are."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def cert_file(self) -> Path:
        return self.folder / "server.pem"

    @property
    def key_file(self) -> Path:
        return self.folder / "server-key.pem"


def server_names(host: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The SANs of the server certificate for a server bound to ``host``."""
    names = ["localhost", "127.0.0.1", "::1"]
    if host in _WILDCARDS:
        hostname = socket.gethostname()
        names.append(hostname)
        names.extend(_addresses(hostname))
    else:
        names.append(host)
    names.extend(extra)
    return tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))


def _addresses(hostname: str) -> list[str]:
    """The addresses ``hostname`` resolves to here (a server bound to every address is
    reached by them); none when it does not resolve."""
    try:
        found = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return sorted({str(info[4][0]).split("%")[0] for info in found})


def ensure_server_certificate(
    folder: Path, names: Iterable[str], now: datetime | None = None
) -> ServerTlsFiles:
    """The control-plane CA and a server certificate for ``names`` in ``folder``, made or
    renewed as the module docstring says; the files are returned."""
    now = now or datetime.now(UTC)
    files = ServerTlsFiles(folder)
    wanted = tuple(names)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        ca, ca_key = _load_or_create_ca(files, now)
        if _needs_server_certificate(files, ca, wanted, now):
            _issue(files, ca, ca_key, wanted, now)
    except OSError as error:
        where = error.filename or folder
        raise ServerTlsError(f"{where}: {error.strerror or error}") from None
    return files


def _load_or_create_ca(
    files: ServerTlsFiles, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if files.ca_file.exists() and files.ca_key_file.exists():
        try:
            ca = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
            key = serialization.load_pem_private_key(files.ca_key_file.read_bytes(), None)
        except ValueError as error:
            raise ServerTlsError(
                f"{files.folder}: ca.pem or ca-key.pem is not a PEM certificate/key ({error});"
                " move the folder away to make a new CA"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ServerTlsError(f"{files.ca_key_file}: not an EC private key")
        if ca.not_valid_after_utc - now > RENEW_BEFORE:
            return ca, key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _CA_NAME)])
    ca, key = self_signed_ca(name, now, CA_LIFETIME)
    write_file(files.ca_key_file, private_pem(key), 0o600)
    write_file(files.ca_file, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    files.cert_file.unlink(missing_ok=True)  # signed by the old CA: issue again
    return ca, key


def _needs_server_certificate(
    files: ServerTlsFiles, ca: x509.Certificate, names: tuple[str, ...], now: datetime
) -> bool:
    if not (files.cert_file.exists() and files.key_file.exists()):
        return True
    try:
        cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
        serialization.load_pem_private_key(files.key_file.read_bytes(), None)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return True
    have = {str(n).lower() for n in sans.get_values_for_type(x509.DNSName)}
    have |= {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return (
        cert.issuer != ca.subject
        or cert.not_valid_after_utc - now < RENEW_BEFORE
        or have != {_normal(n) for n in names}
    )


def _issue(
    files: ServerTlsFiles,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: tuple[str, ...],
    now: datetime,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + SERVER_LIFETIME, ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_file(files.key_file, private_pem(key), 0o600)
    write_file(files.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _normal(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()
