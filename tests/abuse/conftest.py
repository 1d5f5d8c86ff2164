"""The abuse tier: a real ``meshplane serve`` attacked the way the hardening review did, with a
concurrent client (:class:`tests.support.health.HealthWatch`) that must keep getting answers.

Nothing here asserts a timing: a probe passes when it is answered within a generous bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from tests.support.health import HealthWatch
from tests.support.server import MeshplaneServer


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshplaneServer]:
    data = tmp_path_factory.mktemp("abuse") / "data"
    srv = MeshplaneServer(data, extra_args=["--require-proxy-auth"]).start(timeout=120)
    try:
        yield srv
    finally:
        srv.stop()


Healthy = Callable[[], AbstractContextManager[HealthWatch]]


@pytest.fixture
def healthy(target: MeshplaneServer) -> Healthy:
    """``with healthy() as watch: <attack>``: fails the test when a probe of /healthz or the
    App Mesh API failed or went unanswered while the attack ran."""

    @contextmanager
    def watching() -> Iterator[HealthWatch]:
        assert target.process is not None
        watch = HealthWatch(target.url, target.process.pid)
        with watch:
            yield watch
        problems = watch.problems()
        assert not problems, f"the server did not stay healthy under attack: {problems}"
        assert target.process is not None and target.process.poll() is None, "server died"

    return watching
