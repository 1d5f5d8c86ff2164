"""What a newcomer and an App Mesh user meet first, through the real CLI against a real server.

- manifests with fields the App Mesh CRDs do not name apply as they did on App Mesh (the field
  ignored, a warning naming it and the closest known field); ``--strict`` and the server's
  ``--strict-manifests`` refuse them; the App Mesh REST API stays strict;
- the global options (``--server``, ``--token``, ``--tls-ca``, ``-o``) before or after the
  subcommand;
- exit codes: 5 for local problems (a file, a port, a data directory), ports in use named with
  the flag that moves them, a data directory in use named with the PID that holds it;
- ``proxy-config`` of an unknown proxy, ``get -A --mesh``, ``describe``'s times and routes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import Cli
from tests.support.ports import free_port
from tests.support.server import MeshplaneServer

EXAMPLES = Path(__file__).parents[1] / "examples"
WALKTHROUGH = EXAMPLES / "walkthrough"
WEBAPP = EXAMPLES / "webapp"
MODE = "spec.backendDefaults.clientPolicy.tls.mode"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI without MESHPLANE_SERVER: every server is named on the command line."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MESHPLANE_")}
    return subprocess.run(
        [sys.executable, "-m", "meshplane", *args],
        capture_output=True,
        text=True,
        env={**environ, "NO_COLOR": "1", **(env or {})},
        timeout=120,
    )


def meshes(appmesh: Any) -> set[str]:
    return {m["meshName"] for m in appmesh.list_meshes()["meshes"]}


def test_walkthrough_with_an_unknown_field_applies_with_a_warning_and_strict_refuses_it(
    cli: Cli, appmesh: Any
) -> None:
    strict = cli("apply", "-f", str(WALKTHROUGH), "--strict", check=False)
    assert strict.returncode == 1, strict.stderr
    assert f"mtls-sds.yaml#2 VirtualNode howto-mtls/front: {MODE}: unknown field" in strict.stderr
    assert "howto-mtls" not in meshes(appmesh)  # nothing of the set was applied
    refused_diff = cli("diff", "-f", str(WALKTHROUGH), "--strict", check=False)
    assert refused_diff.returncode == 1
    assert MODE in refused_diff.stderr

    diff = cli("diff", "-f", str(WALKTHROUGH), check=False)
    assert diff.returncode == 4, diff.stderr
    assert f"{MODE}: unknown field" in diff.stderr

    applied = cli("apply", "-f", str(WALKTHROUGH))
    warning = (
        f"warning: {WALKTHROUGH}/mtls-sds.yaml#2 VirtualNode howto-mtls/front: {MODE}: unknown "
        "field (known here: enforce, ports, certificate, validation); ignored, as App Mesh does "
        "(--strict refuses it)"
    )
    assert warning in applied.stderr
    assert "virtualNode/howto-mtls/front_howto-mtls created" in applied.stdout
    node = appmesh.describe_virtual_node(meshName="howto-mtls", virtualNodeName="front_howto-mtls")
    tls = node["virtualNode"]["spec"]["backendDefaults"]["clientPolicy"]["tls"]
    assert tls["enforce"] is True
    assert "mode" not in tls
    assert tls["validation"]["trust"]["sds"]["secretName"] == "spiffe://meshplane.local"
    again = cli("apply", "-f", str(WALKTHROUGH))
    assert "created" not in again.stdout and "configured" not in again.stdout
    assert warning in again.stderr  # said on every apply of that file


def test_a_misspelled_field_keeps_its_did_you_mean_hint(cli: Cli, tmp_path: Path) -> None:
    router = (WEBAPP / "05-virtualrouter.yaml").read_text()
    typo = tmp_path / "typo.yaml"
    typo.write_text(router.replace("weight: 100", "wieght: 100"))
    result = cli("apply", "-f", str(WEBAPP), "-f", str(typo), check=False)
    assert result.returncode == 1
    assert (
        "spec.routes[0].httpRoute.action.weightedTargets[0].weight: required (is wieght a "
        "misspelling of weight?)"
    ) in result.stderr
    optional = tmp_path / "optional.yaml"
    optional.write_text(router.replace("port: 8081", "prot: 8081"))
    dry = cli("apply", "-f", str(WEBAPP), "-f", str(optional), "--dry-run", check=False)
    assert "weightedTargets[0].prot: unknown field (did you mean port?); ignored" in dry.stderr
    strict = cli("apply", "--strict", "-f", str(WEBAPP), "-f", str(optional), check=False)
    assert "weightedTargets[0].prot: unknown field (did you mean port?)" in strict.stderr
    assert strict.returncode == 1


def test_the_app_mesh_api_stays_strict(server: MeshplaneServer) -> None:
    body = {
        "spec": {"listeners": [{"portMapping": {"port": 80, "protocol": "http"}, "mode": "X"}]},
    }
    response = httpx.put(
        f"{server.url}/v20190125/meshes/howto-api/virtualNodes",
        json={**body, "virtualNodeName": "n"},
        timeout=10,
    )
    assert response.status_code in (400, 404), response.text
    httpx.put(f"{server.url}/v20190125/meshes", json={"meshName": "howto-api"}, timeout=10)
    response = httpx.put(
        f"{server.url}/v20190125/meshes/howto-api/virtualNodes",
        json={**body, "virtualNodeName": "n"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"].startswith("BadRequestException")
    assert "mode" in response.text


def test_the_server_setting_refuses_unknown_fields_for_everyone(tmp_path: Path) -> None:
    server = MeshplaneServer(tmp_path / "data", extra_args=["--strict-manifests"]).start(timeout=90)
    try:
        refused = run("--server", server.url, "apply", "-f", str(WALKTHROUGH))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"{MODE}: unknown field" in refused.stderr
        assert "warning" not in refused.stderr
        accepted = run("apply", "-f", str(WEBAPP), "--server", server.url)
        assert accepted.returncode == 0, accepted.stderr
    finally:
        server.stop()


def test_global_options_before_or_after_the_subcommand(cli: Cli, tmp_path: Path) -> None:
    url = cli.server.url
    cli("apply", "-f", str(WEBAPP))
    nowhere = {"MESHPLANE_SERVER": "http://127.0.0.1:9"}  # the option must win over it
    after = run("get", "meshes", "-o", "json", "--server", url, env=nowhere)
    assert after.returncode == 0, after.stderr
    before = run("--server", url, "-o", "json", "get", "meshes", env=nowhere)
    assert before.returncode == 0, before.stderr
    assert json_names(after.stdout) == json_names(before.stdout)
    assert "webapp" in json_names(after.stdout)
    # the subcommand's own value wins over the group's
    both = run("--server", "http://127.0.0.1:9", "get", "meshes", "--server", url)
    assert both.returncode == 0, both.stderr
    # -o before the subcommand counts only where that format exists
    wide = run("--server", url, "-o", "wide", "describe", "mesh", "webapp")
    assert wide.returncode == 2
    assert "'wide': this command prints yaml, json" in wide.stderr
    # --token after the subcommand reaches the server
    data = tmp_path / "auth"
    made = run("token", "create", "--data-dir", str(data), "--mesh", "*", "--role", "admin")
    assert made.returncode == 0, made.stderr
    token = re.search(r"(MP[A-Z0-9]+\.\S+)", made.stdout)
    assert token is not None, made.stdout
    secured = MeshplaneServer(data, extra_args=["--require-auth"]).start(timeout=90)
    try:
        refused = run("get", "meshes", "--server", secured.url)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "ForbiddenException" in refused.stderr
        allowed = run("get", "meshes", "--server", secured.url, "--token", token.group(1))
        assert allowed.returncode == 0, allowed.stderr
    finally:
        secured.stop()
    # --tls-ca after the subcommand is read
    ca = run("get", "meshes", "--server", url.replace("http:", "https:"), "--tls-ca", "/nope")
    assert ca.returncode == 5
    assert "--tls-ca /nope: cannot read (No such file or directory)" in ca.stderr
    assert "Traceback" not in ca.stderr
    help_text = run("apply", "--help").stdout
    for option in ("--server URL", "--token TOKEN", "--tls-ca FILE", "--strict"):
        assert option in help_text


def json_names(text: str) -> list[str]:
    return sorted(item["meshName"] for item in yaml.safe_load(text))


def test_local_errors_have_their_own_exit_code(cli: Cli, tmp_path: Path) -> None:
    assert "5  a local problem" in run("--help").stdout
    missing = cli("apply", "-f", str(tmp_path / "missing.yaml"), check=False)
    assert missing.returncode == 5
    assert "missing.yaml: No such file or directory" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("apply", "-f", str(empty), check=False).returncode == 5
    assert cli("apply", "-f", str(WEBAPP), "--no-such-flag", check=False).returncode == 2
    token_file = run("envoy", "--resource", "mesh/m/virtualNode/n", "--token-file", "/nope")
    assert token_file.returncode == 5
    assert "'--token-file': File '/nope' does not exist." in token_file.stderr


def test_ports_and_data_directory_in_use_say_what_to_do(
    server: MeshplaneServer, tmp_path: Path
) -> None:
    api = str(server.api_port)
    xds = str(server.xds_port)
    other = ["--data-dir", str(tmp_path / "other")]
    taken_api = run("serve", *other, "--api-port", api, "--xds-port", str(free_port()))
    assert taken_api.returncode == 5
    assert f"127.0.0.1:{api} is already in use" in taken_api.stderr
    assert "choose another port with --api-port" in taken_api.stderr
    taken_xds = run("serve", *other, "--api-port", str(free_port()), "--xds-port", xds)
    assert taken_xds.returncode == 5
    assert "choose another port with --xds-port" in taken_xds.stderr
    assert "Traceback" not in taken_api.stderr + taken_xds.stderr

    locked = run("serve", "--data-dir", str(server.data_dir), "--api-port", api)
    assert locked.returncode == 5
    assert server.process is not None
    pid = server.process.pid
    assert (
        f"data directory {server.data_dir} is in use by another meshplane process (pid {pid}): "
        f"stop it (Ctrl-C in its terminal, or kill {pid}) or give another --data-dir"
    ) in locked.stderr


def test_smaller_things(cli: Cli) -> None:
    cli("apply", "-f", str(WEBAPP))
    nosuch = cli("proxy-config", "nosuch", check=False)
    assert nosuch.returncode == 1
    assert "no connected proxy 'nosuch'" in nosuch.stderr
    assert "NotFoundException" in nosuch.stderr

    both = cli("get", "vn", "-A", "--mesh", "webapp", check=False)
    assert both.returncode == 2
    assert "--mesh selects App Mesh names, -n/-A Kubernetes names" in both.stderr

    described = yaml.safe_load(cli("describe", "vr", "app-router", "-n", "consumer").stdout)
    assert described["routes"] == ["app-route"]
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
    assert iso.match(described["metadata"]["createdAt"]), described["metadata"]
    assert iso.match(described["metadata"]["lastUpdatedAt"])
    listed = yaml.safe_load(cli("get", "vn", "--mesh", "webapp", "-o", "json").stdout)
    assert all(iso.match(item["metadata"]["createdAt"]) for item in listed)
    gateway = yaml.safe_load(
        cli("describe", "vg", "ingress-gw_gateway-ns", "--mesh", "webapp").stdout
    )
    assert gateway["gatewayRoutes"] == ["app-route_gateway-ns"]

    again = cli("apply", "-f", str(WEBAPP))
    origin = "(" + str(WEBAPP / "01-mesh.yaml") + "#0 Mesh webapp)"
    assert f"mesh/webapp unchanged  {origin}" in again.stdout
    assert not [line for line in again.stdout.splitlines() if line != line.rstrip()]
    table = cli("get", "vn", "-A").stdout
    assert table.strip()
    assert not [line for line in table.splitlines() if line != line.rstrip()]


@pytest.fixture(autouse=True)
def _no_server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHPLANE_SERVER", raising=False)
