"""The OpenAPI document is complete and as strict as the server (finding 9), checked with a
real schemathesis run (fixed seed, fixed number of examples, bounded time) against a real
server that requires credentials: no 5xx, no response outside the document, no request the
document forbids accepted, 405 answers with ``Allow``, every request without valid
credentials refused.

``positive_data_acceptance`` is left out: the models' cross-field rules (a connection pool
must fit its listener's protocol, service discovery is required with a listener, ...) are
beyond what JSON Schema can say, so a schema-valid request may rightly get a 400; the rules
JSON Schema can say (names, client tokens, ARNs, page tokens, one route type, a gateway
listener) are in the document.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Route

from meshplane.api.openapi import openapi_document
from tests.support.server import MeshplaneServer

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MeshplaneServer, str]]:
    data = tmp_path_factory.mktemp("abuse-openapi") / "data"
    made = subprocess.run(
        [
            *(sys.executable, "-m", "meshplane", "token", "create", "--data-dir", str(data)),
            *("--mesh", "*", "--role", "admin", "-o", "json"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    token = json.loads(made.stdout)["token"]
    srv = MeshplaneServer(data, extra_args=["--require-auth"]).start(timeout=120)
    try:
        yield srv, token
    finally:
        srv.stop()


def test_the_document_names_every_endpoint_the_server_answers(
    guarded: tuple[MeshplaneServer, str],
) -> None:
    from meshplane.server.run import Application
    from meshplane.server.settings import Settings

    server, _ = guarded
    document = openapi_document()
    settings = Settings.load(data_dir=server.data_dir.parent / "probe", api_port=1, xds_port=2)
    application = Application(settings)
    try:
        served = {
            (route.path, method.lower())
            for route in application.app.routes
            if isinstance(route, Route) and not route.path.endswith("{rest:path}")
            for method in route.methods or ()
            if method != "HEAD"
        }
        served = {(path.replace("{name:path}", "{name}"), method) for path, method in served}
    finally:
        application.close()
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    missing = sorted(served - documented)
    assert not missing, f"served but not documented: {missing}"
    assert ("/v20190125/meshes", "put") in documented
    assert {"/healthz", "/metrics", "/openapi.json", "/"} <= set(document["paths"])


def test_schemathesis_finds_no_5xx_and_no_response_outside_the_document(
    guarded: tuple[MeshplaneServer, str], tmp_path: Path
) -> None:
    server, token = guarded
    st = VENV_BIN / "st"
    assert st.exists(), f"schemathesis is not installed in {VENV_BIN} (pip install -e '.[test]')"
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--exclude-operation-id",
            "ConsoleEvents",  # a never-ending event stream by design (it has its own bounds)
            "--exclude-operation-id",
            "Tap",  # likewise a never-ending stream of tapped requests
            "--max-examples",
            "2",
            "--seed",
            "20261203",
            "--phases",
            "examples,fuzzing",
            "--max-time",
            "60",
            "--workers",
            "2",
            "--no-shrink",
            "--no-color",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested is not None and int(tested.group(1)) >= 50, summary
    assert "failures" not in summary.splitlines()[-1], summary
