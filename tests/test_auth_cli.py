"""``meshplane token`` and ``--token``/``MESHPLANE_TOKEN`` with a real server that requires
credentials: the first admin token made offline, tokens made, listed and revoked through the
API, and the CLI refused without a token."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.auth import Token, run_cli
from tests.support.server import MeshplaneServer


def test_token_lifecycle_through_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = run_cli("token", "create", "--data-dir", str(data), "--mesh", "*", "--role", "admin")
    assert first.returncode == 0, first.stderr
    assert "created: admin on every mesh" in first.stdout
    bearer = next(line.split()[2] for line in first.stdout.splitlines() if "bearer token" in line)
    assert "shown only now" in first.stderr
    server = MeshplaneServer(data, extra_args=["--require-auth"]).start()
    try:
        plain = {"MESHPLANE_SERVER": server.url}
        refused = run_cli("get", "meshes", env=plain)
        assert refused.returncode == 1
        assert "missing credentials" in refused.stderr
        assert "ForbiddenException" in refused.stderr
        wrong = run_cli("--token", "MPTNOPE.nope", "get", "meshes", env=plain)
        assert wrong.returncode == 1
        assert "invalid or revoked token" in wrong.stderr
        assert run_cli("--token", bearer, "get", "meshes", env=plain).returncode == 0
        admin = {**plain, "MESHPLANE_TOKEN": bearer}

        made = run_cli(
            "token",
            "create",
            "--mesh",
            "web",
            "--role",
            "editor",
            "-d",
            "CI",
            "-o",
            "json",
            env=admin,
        )
        assert made.returncode == 0, made.stderr
        editor = Token.from_json(json.loads(made.stdout))
        assert (editor.mesh, editor.role) == ("web", "editor")
        listed = run_cli("token", "list", "-o", "json", env=admin)
        tokens = json.loads(listed.stdout)
        assert {(t["mesh"], t["role"]) for t in tokens} == {("*", "admin"), ("web", "editor")}
        assert not any("secret" in t for t in tokens)
        assert editor.secret not in listed.stdout
        table = run_cli("token", "list", "--mesh", "web", env=admin)
        assert editor.id in table.stdout
        assert "CI" in table.stdout

        as_editor = {**plain, "MESHPLANE_TOKEN": editor.bearer}
        denied = run_cli("token", "create", "--mesh", "web", "--role", "admin", env=as_editor)
        assert denied.returncode == 1
        assert "admin role on mesh 'web'" in denied.stderr
        mesh = run_cli("get", "meshes", env=as_editor)
        assert mesh.returncode == 0, mesh.stderr

        locked = run_cli("token", "list", "--data-dir", str(data))
        assert locked.returncode == 5  # a local problem
        assert "in use by another meshplane process (pid " in locked.stderr

        revoked = run_cli("token", "revoke", editor.id, env=admin)
        assert revoked.returncode == 0, revoked.stderr
        assert f"token {editor.id} revoked" in revoked.stdout
        after = run_cli("get", "meshes", env=as_editor)
        assert after.returncode == 1
        assert "invalid or revoked token" in after.stderr
        again = run_cli("token", "revoke", editor.id, env=admin)
        assert again.returncode == 1
        assert "not found" in again.stderr
    finally:
        server.stop()
    offline = run_cli("token", "list", "--data-dir", str(data), "-o", "json")
    assert offline.returncode == 0, offline.stderr
    [remaining] = json.loads(offline.stdout)
    assert remaining["role"] == "admin"
    gone = run_cli("token", "revoke", remaining["id"], "--data-dir", str(data))
    assert gone.returncode == 0, gone.stderr
    assert json.loads(run_cli("token", "list", "--data-dir", str(data), "-o", "json").stdout) == []
