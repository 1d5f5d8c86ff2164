"""The audit log: every change records who made it (token id, anonymous@loopback, or the local
user working offline), when, the operation, the resource and its resulting version, written
in the same transaction as the change; ``meshplane audit`` and ``GET /meshplane/v1/audit``
show it, limited to the meshes the caller may view."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.model.kinds import Kind, ResourceKey
from meshplane.store import open_store
from tests.support.auth import Token, auth_server, create_token, run_cli
from tests.support.server import MeshplaneServer

OWNER = "000000000000"
NODE_SPEC = {
    "listeners": [{"portMapping": {"port": 80, "protocol": "http"}}],
    "serviceDiscovery": {"dns": {"hostname": "n.local"}},
}


def entries(http: httpx.Client, **params: str) -> list[dict[str, Any]]:
    response = http.get("/meshplane/v1/audit", params={"limit": "1000", **params})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["entries"]
    return found


def summary(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["principal"], e["operation"], e["resource"], e["version"], e["via"]) for e in found]


def test_store_keeps_audit_entries_only_with_their_change(tmp_path: Path) -> None:
    store = open_store(data_dir=tmp_path)
    mesh = ResourceKey(Kind.MESH, "m", "m")

    def create(tx: Any) -> None:
        record = tx.create(mesh, {}, mesh_owner=OWNER, resource_owner=OWNER)
        tx.audit("me", "CreateMesh", mesh="m", resource=str(mesh), version=record.version)

    def fail(tx: Any) -> None:
        tx.update(mesh, {"egressFilter": {"type": "ALLOW_ALL"}})
        tx.audit("me", "UpdateMesh", mesh="m", resource=str(mesh), version=2)
        raise RuntimeError("the rule check failed")

    store.transact(create)
    with pytest.raises(RuntimeError):
        store.transact(fail)
    store.close()
    store = open_store(data_dir=tmp_path)  # durable, and nothing of the failed unit of work
    try:
        [entry] = store.audit_log()
        assert (
            entry.principal,
            entry.operation,
            entry.resource,
            entry.version,
            entry.revision,
        ) == (
            "me",
            "CreateMesh",
            "mesh/m",
            1,
            1,
        )
        assert store.audit_log(meshes=["other"]) == []
        assert store.audit_log(since=entry.at + 1) == []
    finally:
        store.close()


def test_open_server_records_anonymous_changes(fresh_server: MeshplaneServer) -> None:
    before = time.time()
    appmesh = fresh_server.boto3()
    appmesh.create_mesh(meshName="open")
    appmesh.update_mesh(meshName="open", spec={"egressFilter": {"type": "ALLOW_ALL"}})
    with httpx.Client(base_url=fresh_server.url) as http:
        found = entries(http)
    assert summary(found) == [
        ("anonymous@loopback", "CreateMesh", "mesh/open", 1, "api"),
        ("anonymous@loopback", "UpdateMesh", "mesh/open", 2, "api"),
    ]
    assert before - 1 <= found[0]["at"] <= found[1]["at"] <= time.time() + 1
    assert found[0]["mesh"] == "open"
    assert found[1]["revision"] == 2
    result = run_cli("audit", env={"MESHPLANE_SERVER": fresh_server.url})
    assert result.returncode == 0, result.stderr
    assert "anonymous@loopback" in result.stdout
    assert "UpdateMesh" in result.stdout


class Audited:
    def __init__(self, server: MeshplaneServer, root: Token) -> None:
        self.server = server
        self.root = root
        self.admin = root.http(server)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, backend_url: str | None) -> Iterator[Audited]:
    server, root = auth_server(tmp_path_factory.mktemp("audit") / "data", database_url=backend_url)
    try:
        a = Audited(server, root)
        yield a
        a.admin.close()
    finally:
        server.stop()


def test_every_api_change_is_attributed_to_its_token(audited: Audited) -> None:
    admin = audited.admin
    start = entries(admin)
    assert summary(start) == [
        (start[0]["principal"], "CreateToken", f"token/{audited.root.id}", None, "offline")
    ]
    assert start[0]["principal"].startswith("local:")
    owner = create_token(admin, "a", "admin")
    editor = create_token(admin, "a", "editor")
    mesh_admin = owner.boto3(audited.server)
    mesh_admin.create_mesh(meshName="a")
    appmesh = editor.boto3(audited.server)
    appmesh.create_virtual_node(meshName="a", virtualNodeName="n", spec=NODE_SPEC)
    appmesh.update_virtual_node(
        meshName="a", virtualNodeName="n", spec={**NODE_SPEC, "backends": []}
    )
    arn = appmesh.describe_virtual_node(meshName="a", virtualNodeName="n")["virtualNode"][
        "metadata"
    ]["arn"]
    mesh_admin.tag_resource(resourceArn=arn, tags=[{"key": "team", "value": "a"}])
    mesh_admin.untag_resource(resourceArn=arn, tagKeys=["team"])
    appmesh.delete_virtual_node(meshName="a", virtualNodeName="n")
    # refused, invalid and conflicting calls, and idempotent replays, record nothing
    with pytest.raises(Exception, match="BadRequest"):
        appmesh.create_virtual_node(
            meshName="a",
            virtualNodeName="bad",
            spec={"listeners": [{"portMapping": {"port": 70000, "protocol": "http"}}]},
        )
    with pytest.raises(Exception, match="Forbidden"):
        appmesh.delete_mesh(meshName="a")
    with pytest.raises(Exception, match="Conflict"):
        mesh_admin.create_mesh(meshName="a")
    appmesh.create_virtual_node(
        meshName="a", virtualNodeName="once", spec=NODE_SPEC, clientToken="tok-1"
    )
    appmesh.create_virtual_node(
        meshName="a", virtualNodeName="once", spec=NODE_SPEC, clientToken="tok-1"
    )
    assert admin.delete(f"/meshplane/v1/tokens/{editor.id}").status_code == 200
    root = audited.root.id
    assert summary(entries(admin, after=str(start[-1]["seq"]))) == [
        (root, "CreateToken", f"token/{owner.id}", None, "api"),
        (root, "CreateToken", f"token/{editor.id}", None, "api"),
        (owner.id, "CreateMesh", "mesh/a", 1, "api"),
        (editor.id, "CreateVirtualNode", "mesh/a/virtualNode/n", 1, "api"),
        (editor.id, "UpdateVirtualNode", "mesh/a/virtualNode/n", 2, "api"),
        (owner.id, "TagResource", "mesh/a/virtualNode/n", 2, "api"),
        (owner.id, "UntagResource", "mesh/a/virtualNode/n", 2, "api"),
        (editor.id, "DeleteVirtualNode", "mesh/a/virtualNode/n", 2, "api"),
        (editor.id, "CreateVirtualNode", "mesh/a/virtualNode/once", 1, "api"),
        (root, "RevokeToken", f"token/{editor.id}", None, "api"),
    ]


MANIFESTS = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: b}
spec:
  namespaceSelector: {matchLabels: {mesh: b}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: n, namespace: ns-b}
spec:
  listeners: [{portMapping: {port: 80, protocol: http}}]
  serviceDiscovery: {dns: {hostname: n.local}}
"""


def test_apply_delete_and_label_are_audited(audited: Audited, tmp_path: Path) -> None:
    admin = audited.admin
    mark = entries(admin)[-1]["seq"]
    owner = create_token(admin, "b", "admin")
    env = {"MESHPLANE_SERVER": audited.server.url, "MESHPLANE_TOKEN": owner.bearer}
    assert run_cli("label", "namespace", "ns-b", "mesh=b", env=env).returncode == 0
    path = tmp_path / "b.yaml"
    path.write_text(MANIFESTS)
    assert run_cli("diff", "-f", str(path), env=env).returncode == 4  # a dry run: not audited
    result = run_cli("apply", "-f", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert run_cli("apply", "-f", str(path), env=env).returncode == 0  # unchanged: no entries
    result = run_cli("delete", "-f", str(path), env=env)
    assert result.returncode == 0, result.stderr
    found = summary(entries(admin, after=str(mark)))
    who = owner.id
    assert found == [
        (audited.root.id, "CreateToken", f"token/{owner.id}", None, "api"),
        (who, "LabelNamespace", "namespace/ns-b", None, "label"),
        (who, "CreateMesh", "mesh/b", 1, "apply"),
        (who, "CreateVirtualNode", "mesh/b/virtualNode/n_ns-b", 1, "apply"),
        (who, "PutManifest", "manifest/Mesh//b", None, "apply"),
        (who, "PutManifest", "manifest/VirtualNode/ns-b/n", None, "apply"),
        (who, "DeleteVirtualNode", "mesh/b/virtualNode/n_ns-b", 1, "delete"),
        (who, "DeleteMesh", "mesh/b", 1, "delete"),
        (who, "DeleteManifest", "manifest/Mesh//b", None, "delete"),
        (who, "DeleteManifest", "manifest/VirtualNode/ns-b/n", None, "delete"),
    ]


def test_audit_shows_only_meshes_the_caller_may_view(audited: Audited) -> None:
    admin = audited.admin
    for mesh in ("c", "d"):
        create_token(admin, mesh, "admin").boto3(audited.server).create_mesh(meshName=mesh)
    viewer = create_token(admin, "c", "viewer")
    with viewer.http(audited.server) as http:
        seen = entries(http)
        assert seen
        assert {e["mesh"] for e in seen} == {"c"}
        assert [e["operation"] for e in seen] == ["CreateToken", "CreateMesh", "CreateToken"]
        refused = http.get("/meshplane/v1/audit", params={"mesh": "d"})
        assert refused.status_code == 403
        assert refused.headers["x-amzn-errortype"] == "ForbiddenException:"
        bad = http.get("/meshplane/v1/audit", params={"since": "yesterday"})
        assert bad.status_code == 400
    everything = entries(admin, mesh="d")
    assert [e["operation"] for e in everything] == ["CreateToken", "CreateMesh"]


def test_audit_command_filters_and_formats(audited: Audited) -> None:
    admin = audited.admin
    owner = create_token(admin, "e", "admin")
    owner.boto3(audited.server).create_mesh(meshName="e")
    env = {"MESHPLANE_SERVER": audited.server.url, "MESHPLANE_TOKEN": audited.root.bearer}
    result = run_cli("audit", "--mesh", "e", "--since", "1h", "-o", "json", env=env)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert [(e["principal"], e["operation"], e["resource"]) for e in found] == [
        (audited.root.id, "CreateToken", f"token/{owner.id}"),
        (owner.id, "CreateMesh", "mesh/e"),
    ]
    future = run_cli("audit", "--since", "2999-01-01T00:00", "-o", "json", env=env)
    assert json.loads(future.stdout) == []
    table = run_cli("audit", "--mesh", "e", env=env)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["TIME", "PRINCIPAL", "OPERATION", "RESOURCE", "VERSION", "VIA"]
    assert owner.id in rows[-1]
    assert "CreateMesh" in rows[-1]
    limited = run_cli("audit", "--limit", "1", "-o", "json", env=env)
    assert len(json.loads(limited.stdout)) == 1
    missing = run_cli("audit", env={"MESHPLANE_SERVER": audited.server.url})
    assert missing.returncode == 1
    assert "missing credentials" in missing.stderr
