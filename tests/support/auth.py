"""API tokens for tests: the first admin token made offline, clients that send a token as a
bearer (httpx) or as SigV4 credentials (boto3), and a fingerprint of everything a call could
change (to prove that a refused call changed nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import TEST_KEK, MeshplaneServer


@dataclass(frozen=True)
class Token:
    id: str
    secret: str
    mesh: str
    role: str

    @property
    def bearer(self) -> str:
        return f"{self.id}.{self.secret}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Token:
        return cls(data["id"], data["secret"], data["mesh"], data["role"])

    def http(self, server: MeshplaneServer, **options: Any) -> httpx.Client:
        return httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {self.bearer}"},
            timeout=30,
            **options,
        )

    def boto3(self, server: MeshplaneServer, **options: Any) -> Any:
        return server.boto3(self.id, self.secret, **options)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    for name in ("MESHPLANE_SERVER", "MESHPLANE_TOKEN"):
        if env is None or name not in env:
            environ.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "meshplane", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


def offline_token(
    data_dir: Path, mesh: str = "*", role: str = "admin", *, database_url: str | None = None
) -> Token:
    """A token written straight into a stopped server's data directory (or into the database
    at ``database_url``, sealed under the test replicas' KEK)."""
    env = {"MESHPLANE_KEK": TEST_KEK} if database_url else None
    where = ["--database-url", database_url] if database_url else []
    result = run_cli(
        "token",
        "create",
        "--data-dir",
        str(data_dir),
        *where,
        "--mesh",
        mesh,
        "--role",
        role,
        "-o",
        "json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return Token.from_json(json.loads(result.stdout))


def create_token(admin: httpx.Client, mesh: str, role: str) -> Token:
    response = admin.post("/meshplane/v1/tokens", json={"mesh": mesh, "role": role})
    assert response.status_code == 200, response.text
    return Token.from_json(response.json())


def fingerprint(admin: httpx.Client) -> tuple[Any, ...]:
    """Everything a request could change, read with a global admin token."""
    revision = admin.get("/healthz").json()["revision"]
    entries = admin.get("/meshplane/v1/audit", params={"limit": "1000"}).json()
    while entries["next"] is not None:
        entries = admin.get(
            "/meshplane/v1/audit", params={"limit": "1000", "after": str(entries["next"])}
        ).json()
    last = entries["entries"][-1]["seq"] if entries["entries"] else None
    tokens = sorted(t["id"] for t in admin.get("/meshplane/v1/tokens").json()["tokens"])
    namespaces = admin.get("/meshplane/v1/namespaces").json()
    manifests = admin.get("/meshplane/v1/manifests").json()
    return revision, last, tokens, json.dumps(namespaces), json.dumps(manifests, sort_keys=True)


def auth_server(
    data_dir: Path, *extra_args: str, database_url: str | None = None
) -> tuple[MeshplaneServer, Token]:
    """A started server that requires credentials (on the database at ``database_url`` if
    given, else SQLite in ``data_dir``), and its first (global admin) token."""
    admin = offline_token(data_dir, database_url=database_url)
    server = MeshplaneServer(
        data_dir, extra_args=["--require-auth", *extra_args], database_url=database_url
    ).start()
    return server, admin
