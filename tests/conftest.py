"""Shared fixtures: a real meshplane server per test module, boto3 clients, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import MeshplaneServer
from tests.support.stores import BACKENDS, database_url, embedded_store, postgres, store

__all__ = [
    "database_url",
    "embedded_store",
    "postgres",
    "store",
]  # fixtures of tests.support.stores


API_SUITES = {
    "tests.test_api_boto3",
    "tests.test_api_awscli",
    "tests.test_api_fuzz",
    "tests.test_audit",
    "tests.test_auth_api",
    "tests.test_cli_manifests",
    "tests.test_cloudmap_api",
}
"""Modules whose tests run against a server on each backend (the rest: SQLite only): every
test of theirs that takes ``backend`` (or ``server``, ``backend_url``, ``fresh_server``) runs
once per backend, on one PostgreSQL server for the session and a new database per module."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__ in API_SUITES and "backend" in metafunc.fixturenames:
        # A module whose time goes to its client rather than to the server (the AWS CLI starts
        # a Python process per call) names the tests that also run on PostgreSQL.
        subset = getattr(metafunc.module, "POSTGRESQL_SUBSET", None)
        backends = BACKENDS
        if subset is not None and metafunc.function.__name__ not in subset:
            backends = ["sqlite"]
        metafunc.parametrize("backend", backends, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend of the module's server: both for :data:`API_SUITES`."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="module")
def backend_url(request: pytest.FixtureRequest, backend: str) -> str | None:
    """The database URL of the module's servers: a new database on the session's PostgreSQL
    server, or None (SQLite in the server's data directory)."""
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres").create_database())
    return None


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, backend_url: str | None
) -> Iterator[MeshplaneServer]:
    srv = MeshplaneServer(
        tmp_path_factory.mktemp("meshplane") / "data", database_url=backend_url
    ).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def appmesh(server: MeshplaneServer) -> Any:
    return server.boto3()


class Cli:
    def __init__(self, server: MeshplaneServer) -> None:
        self.server = server

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MESHPLANE_SERVER": self.server.url, "COLUMNS": "200", "NO_COLOR": "1"}
        result = subprocess.run(
            [sys.executable, "-m", "meshplane", *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"meshplane {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result


@pytest.fixture(scope="module")
def cli(server: MeshplaneServer) -> Cli:
    return Cli(server)


@pytest.fixture
def fresh_url(request: pytest.FixtureRequest, backend: str) -> str | None:
    """A new database of the module's backend for one test (None: SQLite)."""
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres").create_database())
    return None


@pytest.fixture
def fresh_server(tmp_path: Path, fresh_url: str | None) -> Iterator[MeshplaneServer]:
    """A server of its own for one test (on a new database of the module's backend)."""
    srv = MeshplaneServer(tmp_path / "data", database_url=fresh_url).start()
    try:
        yield srv
    finally:
        srv.stop()
