"""Store backends for tests: ``BACKENDS`` and the ``postgres``, ``database_url`` and ``store``
fixtures (registered in ``tests/conftest.py``).

``database_url`` is a new, empty database of each backend in :data:`BACKENDS`, so every test
that takes it (or ``store``, a store opened on it) runs once per backend: the conformance suite
``tests/test_store.py`` does.  ``embedded_store`` is the default SQLite store alone, for the
tests of what sits on the store (the control loop).  Adding a backend means
adding its name to :data:`BACKENDS` and a branch in :func:`database_url` that creates a
database of it (the API suites of ``tests/conftest.py`` then run against it too).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshplane.store import Store, open_store
from tests.support.postgres import PostgresServer

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (each test takes its own database)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database of each backend: the store's conformance parameter."""
    if request.param == "sqlite":
        data = tmp_path / "sqlite"
        data.mkdir()
        return f"sqlite:///{data / 'meshplane.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
def embedded_store(tmp_path: Path) -> Iterator[Store]:
    """The embedded SQLite store in a fresh data directory (what ``meshplane serve`` opens by
    default): for tests of what sits on the store, run on one backend."""
    opened = open_store(data_dir=tmp_path / "store")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A store on a new database of each backend, closed after the test."""
    opened = open_store(url=database_url)
    try:
        yield opened
    finally:
        opened.close()
