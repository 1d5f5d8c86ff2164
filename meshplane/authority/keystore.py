"""Where the mesh CAs live on disk: ``<data dir>/ca/<mesh>/``.

Per mesh directory (mode 0700):

- ``root-<serial>.pem``: a root certificate; ``root-<serial>.key``: its key (PKCS#8 PEM, mode
  0600, created with that mode, never readable by anyone else, never served);
- ``roots.json``: which roots the mesh has, when each signs and until when it is trusted.

Writes go to a temporary file that is renamed over the old one, so a crash leaves either the
old state or the new one.  Creating a mesh's first CA holds an exclusive lock on
``<data dir>/ca/.create.lock``: the xDS worker processes of one server (``--xds-workers``)
share the directory, and the first to need a mesh's CA makes it; the others load that one.
A mesh name that is not a plain file name (App Mesh names have no pattern) is stored under
``~<hex of its UTF-8 bytes>``.

An operator-supplied CA (certificate file and key file, see
:class:`~meshplane.authority.mesh_cas.CaSettings`) is read from where the operator keeps
it and never copied.

Replicas that share a database keep their CAs there instead: :class:`VaultKeyStore` stores each
mesh's authority as one JSON value (``ca/<mesh>``: the roots' certificate and key PEMs and their
dates) in a :class:`Vault` (``meshplane.store.vault``: sealed under the key-encryption key).

Used by :mod:`meshplane.authority.mesh_cas`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshplane.authority.ca import AuthorityError, MeshAuthority, Root, private_pem
from meshplane.authority.files import write_file

_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")
STATE_FILE = "roots.json"


def mesh_directory(base: Path, mesh: str) -> Path:
    """The directory of one mesh's CA under ``base``."""
    return base / (mesh if _PLAIN.match(mesh) else "~" + mesh.encode().hex())


class Vault(Protocol):
    """Named secret values kept where every replica reads them (``meshplane.store.vault``)."""

    def read(self, name: str) -> bytes | None: ...

    def write(self, name: str, data: bytes) -> None: ...

    def create(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The value of ``name``; if there is none, ``make()`` is stored first (by whichever
        replica comes first: every caller gets the stored value)."""
        ...


class AuthorityStore(Protocol):
    """Where :class:`~meshplane.authority.mesh_cas.CertificateAuthorities` keeps the mesh CAs."""

    def load(self, mesh: str, trust_domain: str) -> MeshAuthority | None: ...

    def create(self, authority: MeshAuthority) -> MeshAuthority:
        """Store a mesh's first authority, unless one was stored meanwhile: the stored one."""
        ...

    def save(self, authority: MeshAuthority) -> None: ...

    @property
    def location(self) -> str: ...


class KeyStore:
    """Loads and saves the authorities of meshes under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def location(self) -> str:
        return str(self.directory)

    def create(self, authority: MeshAuthority) -> MeshAuthority:
        """Store ``authority`` as the mesh's first CA, unless another process of this server
        (an xDS worker) stored one first: then that one."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.directory / ".create.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            found = self.load(authority.mesh, authority.trust_domain)
            if found is not None:
                return found
            self.save(authority)
        return authority

    def load(self, mesh: str, trust_domain: str) -> MeshAuthority | None:
        """The stored authority of ``mesh``, or None if it has none yet."""
        folder = mesh_directory(self.directory, mesh)
        state_path = folder / STATE_FILE
        if not state_path.exists():
            return None
        try:
            state = json.loads(state_path.read_text())
            roots = [_load_root(folder, entry) for entry in state["roots"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise AuthorityError(
                f"the CA of mesh {mesh!r} in {folder} is unreadable: {error}"
            ) from None
        return MeshAuthority(mesh, trust_domain, roots)

    def save(self, authority: MeshAuthority) -> None:
        """Write ``authority``: new key and certificate files, then the state file."""
        folder = mesh_directory(self.directory, authority.mesh)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        os.chmod(folder, 0o700)
        entries = []
        for root in authority.roots:
            if root.operator:
                continue
            stem = f"root-{root.serial:x}"
            key_path = folder / f"{stem}.key"
            if not key_path.exists():
                write_file(key_path, private_pem(root.key), 0o600)
            cert_path = folder / f"{stem}.pem"
            if not cert_path.exists():
                write_file(
                    cert_path, root.certificate.public_bytes(serialization.Encoding.PEM), 0o644
                )
            entries.append(
                {
                    "certificate": cert_path.name,
                    "key": key_path.name,
                    "signFrom": root.sign_from.isoformat(),
                    "trustedUntil": root.trusted_until.isoformat() if root.trusted_until else None,
                }
            )
        state = {"mesh": authority.mesh, "roots": entries}
        write_file(folder / STATE_FILE, (json.dumps(state, indent=1) + "\n").encode(), 0o644)
        kept = {e["certificate"] for e in entries} | {e["key"] for e in entries}
        for stale in folder.glob("root-*"):
            if stale.name not in kept:
                stale.unlink(missing_ok=True)


def _load_root(folder: Path, entry: dict[str, str | None]) -> Root:
    cert_name, key_name = str(entry["certificate"]), str(entry["key"])
    if "/" in cert_name or "/" in key_name:
        raise ValueError("file names must not contain '/'")
    certificate = x509.load_pem_x509_certificate((folder / cert_name).read_bytes())
    key = serialization.load_pem_private_key((folder / key_name).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_name} is not an EC key")
    until = entry.get("trustedUntil")
    return Root(
        certificate=certificate,
        key=key,
        sign_from=datetime.fromisoformat(str(entry["signFrom"])),
        trusted_until=datetime.fromisoformat(until) if until else None,
    )


def _root_entry(root: Root) -> dict[str, Any]:
    return {
        "certificate": root.certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "key": private_pem(root.key).decode(),
        "signFrom": root.sign_from.isoformat(),
        "trustedUntil": root.trusted_until.isoformat() if root.trusted_until else None,
    }


def _root_from_entry(entry: dict[str, Any]) -> Root:
    key = serialization.load_pem_private_key(str(entry["key"]).encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("a CA key is not an EC key")
    until = entry.get("trustedUntil")
    return Root(
        certificate=x509.load_pem_x509_certificate(str(entry["certificate"]).encode()),
        key=key,
        sign_from=datetime.fromisoformat(str(entry["signFrom"])),
        trusted_until=datetime.fromisoformat(str(until)) if until else None,
    )


class VaultKeyStore:
    """The mesh CAs as sealed values of a shared :class:`Vault` (one per mesh)."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    @property
    def location(self) -> str:
        return "the database (sealed under the key-encryption key)"

    @staticmethod
    def name(mesh: str) -> str:
        return f"ca/{mesh}"

    @staticmethod
    def _encode(authority: MeshAuthority) -> bytes:
        roots = [_root_entry(r) for r in authority.roots if not r.operator]
        return json.dumps({"mesh": authority.mesh, "roots": roots}).encode()

    def _decode(self, mesh: str, trust_domain: str, data: bytes) -> MeshAuthority:
        try:
            state = json.loads(data)
            roots = [_root_from_entry(entry) for entry in state["roots"]]
        except (ValueError, KeyError, TypeError) as error:
            raise AuthorityError(
                f"the CA of mesh {mesh!r} in the database is unreadable: {error}"
            ) from None
        return MeshAuthority(mesh, trust_domain, roots)

    def load(self, mesh: str, trust_domain: str) -> MeshAuthority | None:
        data = self.vault.read(self.name(mesh))
        return None if data is None else self._decode(mesh, trust_domain, data)

    def create(self, authority: MeshAuthority) -> MeshAuthority:
        data = self.vault.create(self.name(authority.mesh), lambda: self._encode(authority))
        return self._decode(authority.mesh, authority.trust_domain, data)

    def save(self, authority: MeshAuthority) -> None:
        self.vault.write(self.name(authority.mesh), self._encode(authority))
