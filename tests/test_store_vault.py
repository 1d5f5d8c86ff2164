"""Identity state sealed in the store under the key-encryption key, on both backends: one value
for every replica, another KEK refused with both ids named, values bound to their names,
``meshplane db rekey`` (KEK rotation), and KEKs that are malformed or readable by others."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshplane.authority.sealing import Kek, KekError, KekMismatchError
from meshplane.store import SqlStore
from meshplane.store.vault import PROXY_TOKEN_KEY, SealedVault

OLD = Kek.parse("11" * 32, "test")
NEW = Kek.parse("22" * 32, "test")


def test_replicas_share_sealed_values_and_another_kek_is_refused(database_url: str) -> None:
    a, b = SqlStore(database_url, follow=True), SqlStore(database_url, follow=True)
    try:
        SealedVault(a, OLD).check()
        SealedVault(b, OLD).check()
        key_a = SealedVault(a, OLD).random_key(PROXY_TOKEN_KEY)
        key_b = SealedVault(b, OLD).random_key(PROXY_TOKEN_KEY)  # the first one made wins
        assert key_a == key_b and len(key_a) == 32
        sealed = a.secret(PROXY_TOKEN_KEY)
        assert sealed is not None and key_a.hex() not in sealed  # never stored in clear
        with pytest.raises(KekMismatchError, match=f"sealed under key-encryption key {OLD.id}"):
            SealedVault(b, NEW).check()
        with pytest.raises(Exception, match="damaged or was moved"):
            OLD.open("another-name", sealed)
    finally:
        a.close()
        b.close()


def test_db_rekey_reseals_everything_under_the_new_kek(database_url: str, tmp_path: Path) -> None:
    store = SqlStore(database_url)
    try:
        vault = SealedVault(store, OLD)
        vault.check()
        key = vault.random_key(PROXY_TOKEN_KEY)
    finally:
        store.close()
    old_file, new_file = tmp_path / "kek", tmp_path / "kek.new"
    for path, text in ((old_file, "11" * 32), (new_file, "22" * 32)):
        path.write_text(text + "\n")
        path.chmod(0o600)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshplane",
            "db",
            "rekey",
            "--database-url",
            database_url,
            "--kek-file",
            str(old_file),
            "--new-kek-file",
            str(new_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("MESHPLANE_")},
    )
    assert run.returncode == 0, run.stderr
    assert f"re-sealed 2 values under key-encryption key {NEW.id} (was {OLD.id})" in run.stdout
    store = SqlStore(database_url)
    try:
        with pytest.raises(KekMismatchError):
            SealedVault(store, OLD).check()
        vault = SealedVault(store, NEW)
        vault.check()
        assert vault.random_key(PROXY_TOKEN_KEY) == key
    finally:
        store.close()


def test_a_malformed_or_exposed_kek_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KekError, match="MESHPLANE_KEK: not a key-encryption key"):
        Kek.load(None, "not a key")
    exposed = tmp_path / "kek"
    exposed.write_text("11" * 32)
    exposed.chmod(0o644)
    with pytest.raises(KekError, match="readable by others"):
        Kek.load(exposed, None)
    with pytest.raises(KekError, match="give the key-encryption key once"):
        Kek.load(exposed, "11" * 32)
    assert Kek.load(None, None) is None
