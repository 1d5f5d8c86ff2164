"""API authentication and per-mesh roles against a real server that requires credentials:
boto3 signing with SigV4 (token id + secret) and httpx sending bearer tokens.  Every refused
call is a 401/403 ForbiddenException and leaves the store exactly as it was."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.auth import Token, auth_server, create_token, fingerprint
from tests.support.server import MeshplaneServer

NODE_SPEC = {
    "listeners": [{"portMapping": {"port": 80, "protocol": "http"}}],
    "serviceDiscovery": {"dns": {"hostname": "n.local"}},
}
ROUTER_SPEC = {"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]}


class World:
    def __init__(self, server: MeshplaneServer, root: Token) -> None:
        self.server = server
        self.root = root
        self.admin = root.http(server)
        self.tokens: dict[tuple[str, str], Token] = {}

    def token(self, mesh: str, role: str) -> Token:
        if (mesh, role) not in self.tokens:
            self.tokens[(mesh, role)] = create_token(self.admin, mesh, role)
        return self.tokens[(mesh, role)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, backend_url: str | None) -> Iterator[World]:
    server, root = auth_server(tmp_path_factory.mktemp("auth") / "data", database_url=backend_url)
    try:
        w = World(server, root)
        appmesh = root.boto3(server)
        for mesh in ("x", "y"):
            appmesh.create_mesh(meshName=mesh)
            appmesh.create_virtual_node(meshName=mesh, virtualNodeName="n", spec=NODE_SPEC)
            appmesh.create_virtual_router(meshName=mesh, virtualRouterName="r", spec=ROUTER_SPEC)
        yield w
    finally:
        w.admin.close()
        server.stop()


def refused(world: World, call: Callable[[], Any], status: int = 403) -> None:
    """``call`` raises a ForbiddenException with ``status`` and changes nothing."""
    before = fingerprint(world.admin)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call()
    error = raised.value.response
    assert error["Error"]["Code"] == "ForbiddenException", error
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert fingerprint(world.admin) == before


def refused_http(world: World, response: httpx.Response, status: int = 403) -> None:
    assert response.status_code == status, response.text
    assert response.headers["x-amzn-errortype"] == "ForbiddenException:"
    assert response.json()["message"]


# --- authentication ---------------------------------------------------------------------------


def test_no_or_wrong_credentials_get_401(world: World) -> None:
    server = world.server
    refused(world, lambda: server.boto3().list_meshes(), 401)  # unknown access key id
    wrong = Token(world.root.id, "not-the-secret", "*", "admin")
    refused(world, lambda: wrong.boto3(server).create_mesh(meshName="z"), 401)
    with httpx.Client(base_url=server.url) as anonymous:
        response = anonymous.put("/v20190125/meshes", json={"meshName": "z"})
        refused_http(world, response, 401)
        assert "Bearer" in response.headers["www-authenticate"]
        refused_http(world, anonymous.get("/meshplane/v1/manifests"), 401)
        for header in ("Bearer", "Bearer nope", f"Bearer {world.root.id}.x", "Basic dTpw", "x"):
            response = anonymous.get("/v20190125/meshes", headers={"Authorization": header})
            refused_http(world, response, 401)
        assert anonymous.get("/healthz").status_code == 200  # public
        assert anonymous.get("/openapi.json").status_code == 200
    assert world.admin.get("/v20190125/meshes/z").status_code == 404


def test_boto3_sigv4_and_bearer_both_authenticate(world: World) -> None:
    viewer = world.token("x", "viewer")
    described = viewer.boto3(world.server).describe_virtual_node(meshName="x", virtualNodeName="n")
    assert described["virtualNode"]["virtualNodeName"] == "n"
    with viewer.http(world.server) as http:
        response = http.get("/v20190125/meshes/x/virtualNodes/n")
        assert response.status_code == 200
        assert response.json()["virtualNodeName"] == "n"


def _signed(token: Token, server: MeshplaneServer, body: bytes) -> AWSRequest:
    request = AWSRequest(
        method="PUT",
        url=f"{server.url}/v20190125/meshes/x/virtualNodes",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(token.id, token.secret), "appmesh", "us-east-1").add_auth(request)
    return request


def test_tampered_or_stale_sigv4_requests_get_401(world: World) -> None:
    editor = world.token("x", "editor")
    body = json.dumps({"virtualNodeName": "signed", "spec": NODE_SPEC}).encode()
    request = _signed(editor, world.server, body)
    headers = dict(request.headers.items())
    with httpx.Client(base_url=world.server.url) as http:
        before = fingerprint(world.admin)
        other = body.replace(b"signed", b"forged")
        response = http.put("/v20190125/meshes/x/virtualNodes", content=other, headers=headers)
        refused_http(world, response, 401)
        assert "signature does not match" in response.json()["message"]
        response = http.put("/v20190125/meshes/y/virtualNodes", content=body, headers=headers)
        refused_http(world, response, 401)  # the signature covers the path
        old = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)).strftime(
            "%Y%m%dT%H%M%SZ"
        )
        response = http.put(
            "/v20190125/meshes/x/virtualNodes",
            content=body,
            headers={**headers, "X-Amz-Date": old},
        )
        refused_http(world, response, 401)
        assert fingerprint(world.admin) == before
        response = http.put("/v20190125/meshes/x/virtualNodes", content=body, headers=headers)
        assert response.status_code == 200, response.text  # the genuine request works


def test_revoked_token_stops_working_at_once(world: World) -> None:
    token = create_token(world.admin, "x", "viewer")
    client = token.boto3(world.server)
    assert client.list_virtual_nodes(meshName="x")["virtualNodes"]
    assert world.admin.delete(f"/meshplane/v1/tokens/{token.id}").status_code == 200
    refused(world, lambda: client.list_virtual_nodes(meshName="x"), 401)
    with token.http(world.server) as http:
        refused_http(world, http.get("/v20190125/meshes/x"), 401)


# --- authorization ----------------------------------------------------------------------------


def test_token_for_one_mesh_cannot_read_or_change_another(world: World) -> None:
    for role in ("viewer", "editor", "admin"):
        client = world.token("x", role).boto3(world.server)
        calls: list[Callable[[], Any]] = [
            lambda c=client: c.describe_mesh(meshName="y"),
            lambda c=client: c.list_virtual_nodes(meshName="y"),
            lambda c=client: c.describe_virtual_node(meshName="y", virtualNodeName="n"),
            lambda c=client: c.describe_virtual_node(meshName="y", virtualNodeName="absent"),
            lambda c=client: c.create_virtual_node(
                meshName="y", virtualNodeName="m", spec=NODE_SPEC
            ),
            lambda c=client: c.update_virtual_node(
                meshName="y", virtualNodeName="n", spec={"listeners": []}
            ),
            lambda c=client: c.delete_virtual_node(meshName="y", virtualNodeName="n"),
            lambda c=client: c.delete_virtual_router(meshName="y", virtualRouterName="r"),
            lambda c=client: c.delete_mesh(meshName="y"),
            lambda c=client: c.update_mesh(meshName="y", spec={}),
            lambda c=client: c.create_mesh(meshName="y2"),
            lambda c=client: c.tag_resource(
                resourceArn="arn:aws:appmesh:us-east-1:000000000000:mesh/y/virtualNode/n",
                tags=[{"key": "k", "value": "v"}],
            ),
            lambda c=client: c.list_tags_for_resource(
                resourceArn="arn:aws:appmesh:us-east-1:000000000000:mesh/y"
            ),
        ]
        for call in calls:
            refused(world, call)
        meshes = [m["meshName"] for m in client.list_meshes()["meshes"]]
        assert meshes == ["x"]


def test_viewer_cannot_write(world: World) -> None:
    client = world.token("x", "viewer").boto3(world.server)
    arn = "arn:aws:appmesh:us-east-1:000000000000:mesh/x/virtualNode/n"
    for call in [
        lambda: client.create_virtual_node(meshName="x", virtualNodeName="m", spec=NODE_SPEC),
        lambda: client.update_virtual_node(meshName="x", virtualNodeName="n", spec=NODE_SPEC),
        lambda: client.delete_virtual_node(meshName="x", virtualNodeName="n"),
        lambda: client.create_route(
            meshName="x",
            virtualRouterName="r",
            routeName="rt",
            spec={
                "httpRoute": {
                    "match": {"prefix": "/"},
                    "action": {"weightedTargets": [{"virtualNode": "n", "weight": 1}]},
                }
            },
        ),
        lambda: client.delete_mesh(meshName="x"),
        lambda: client.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "v"}]),
        lambda: client.untag_resource(resourceArn=arn, tagKeys=["k"]),
    ]:
        refused(world, call)
    assert client.describe_virtual_node(meshName="x", virtualNodeName="n")
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == []


def test_editor_writes_resources_but_not_the_mesh_tags_or_tokens(world: World) -> None:
    token = world.token("x", "editor")
    client = token.boto3(world.server)
    client.create_virtual_node(meshName="x", virtualNodeName="e1", spec=NODE_SPEC)
    client.update_virtual_node(meshName="x", virtualNodeName="e1", spec={"listeners": []})
    client.delete_virtual_node(meshName="x", virtualNodeName="e1")
    refused(world, lambda: client.delete_mesh(meshName="x"))
    refused(world, lambda: client.update_mesh(meshName="x", spec={}))
    refused(
        world,
        lambda: client.tag_resource(
            resourceArn="arn:aws:appmesh:us-east-1:000000000000:mesh/x/virtualNode/n",
            tags=[{"key": "k", "value": "v"}],
        ),
    )
    with token.http(world.server) as http:
        before = fingerprint(world.admin)
        refused_http(world, http.post("/meshplane/v1/tokens", json={"mesh": "x", "role": "viewer"}))
        assert fingerprint(world.admin) == before


def test_mesh_admin_owns_its_mesh_and_its_tokens_only(world: World) -> None:
    token = world.token("x2", "admin")
    client = token.boto3(world.server)
    client.create_mesh(meshName="x2")  # the admin of a mesh may create it
    arn = client.describe_mesh(meshName="x2")["mesh"]["metadata"]["arn"]
    client.tag_resource(resourceArn=arn, tags=[{"key": "team", "value": "a"}])
    client.untag_resource(resourceArn=arn, tagKeys=["team"])
    with token.http(world.server) as http:
        viewer = http.post("/meshplane/v1/tokens", json={"mesh": "x2", "role": "viewer"})
        assert viewer.status_code == 200, viewer.text
        before = fingerprint(world.admin)
        for mesh in ("x", "*"):
            response = http.post("/meshplane/v1/tokens", json={"mesh": mesh, "role": "viewer"})
            refused_http(world, response)
        listed = http.get("/meshplane/v1/tokens").json()["tokens"]
        assert {t["mesh"] for t in listed} == {"x2"}
        assert all("secret" not in t for t in listed)
        refused_http(world, http.delete(f"/meshplane/v1/tokens/{world.root.id}"))
        refused_http(world, http.get("/meshplane/v1/tokens", params={"mesh": "x"}))
        assert fingerprint(world.admin) == before
        assert http.delete(f"/meshplane/v1/tokens/{viewer.json()['id']}").status_code == 200
    client.delete_mesh(meshName="x2")


def test_global_roles(world: World) -> None:
    viewer = world.token("*", "viewer").boto3(world.server)
    assert {m["meshName"] for m in viewer.list_meshes()["meshes"]} >= {"x", "y"}
    refused(world, lambda: viewer.create_mesh(meshName="g"))
    editor = world.token("*", "editor").boto3(world.server)
    editor.create_virtual_node(meshName="y", virtualNodeName="g", spec=NODE_SPEC)
    editor.delete_virtual_node(meshName="y", virtualNodeName="g")
    refused(world, lambda: editor.create_mesh(meshName="g"))


def _apply(http: httpx.Client, text: str, dry_run: bool = False) -> httpx.Response:
    return http.post(
        "/meshplane/v1/apply",
        json={"documents": [{"source": "t.yaml", "text": text}], "dryRun": dry_run},
    )


MESH_YAML = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {{name: {mesh}}}
spec:
  namespaceSelector: {{matchLabels: {{mesh: {mesh}}}}}
"""

NODE_YAML = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  listeners: [{{portMapping: {{port: 80, protocol: http}}}}]
  serviceDiscovery: {{dns: {{hostname: {name}.local}}}}
"""


def test_apply_needs_editor_on_every_mesh_it_touches(world: World) -> None:
    admin = world.root.http(world.server)
    assert (
        _apply(admin, MESH_YAML.format(mesh="kx") + "---" + MESH_YAML.format(mesh="ky")).status_code
        == 200
    )
    for mesh in ("kx", "ky"):
        response = admin.put(f"/meshplane/v1/namespaces/ns-{mesh}", json={"labels": {"mesh": mesh}})
        assert response.status_code == 200, response.text
    editor = world.token("kx", "editor").http(world.server)
    viewer = world.token("kx", "viewer").http(world.server)
    both = (
        NODE_YAML.format(name="a", namespace="ns-kx")
        + "---"
        + NODE_YAML.format(name="b", namespace="ns-ky")
    )
    before = fingerprint(admin)
    response = _apply(editor, both)
    refused_http(world, response)
    assert "ky" in response.json()["message"]
    refused_http(world, _apply(viewer, NODE_YAML.format(name="a", namespace="ns-kx")))
    refused_http(world, viewer.put("/meshplane/v1/namespaces/ns-kx", json={"labels": {"k": "v"}}))
    # relabelling would move nothing here, but an editor of kx may not claim ky's namespace
    assert fingerprint(admin) == before
    diff = _apply(viewer, NODE_YAML.format(name="a", namespace="ns-kx"), dry_run=True)
    assert diff.status_code == 200, diff.text  # a viewer may see what an apply would change
    assert [(a["kind"], a["op"]) for a in diff.json()["actions"]] == [
        ("mesh", "unchanged"),
        ("virtualNode", "created"),
    ]
    assert fingerprint(admin) == before
    ok = _apply(editor, NODE_YAML.format(name="a", namespace="ns-kx"))
    assert ok.status_code == 200, ok.text
    actions = ok.json()["actions"]
    assert {a["mesh"] for a in actions} == {"kx"}  # nothing of ky is shown to kx's editor
    manifests = editor.get("/meshplane/v1/manifests").json()["manifests"]
    assert {(m["kind"], m["name"]) for m in manifests} == {("Mesh", "kx"), ("VirtualNode", "a")}
    response = _apply(admin, NODE_YAML.format(name="b", namespace="ns-ky"))
    assert response.status_code == 200
    before = fingerprint(admin)
    deleting = editor.post(
        "/meshplane/v1/delete",
        json={
            "documents": [
                {"source": "t.yaml", "text": NODE_YAML.format(name="b", namespace="ns-ky")}
            ]
        },
    )
    refused_http(world, deleting)
    moving = editor.put("/meshplane/v1/namespaces/ns-ky", json={"labels": {"mesh": "kx"}})
    refused_http(world, moving)  # would move ky's node into kx
    assert fingerprint(admin) == before
    for client in (editor, viewer, admin):
        client.close()


def test_paths_beyond_the_api_need_a_global_role(world: World) -> None:
    with world.token("x", "admin").http(world.server) as mesh_admin:
        refused_http(world, mesh_admin.get("/metrics"))
        refused_http(world, mesh_admin.get("/meshplane/v1/something-new"))
        assert mesh_admin.get("/meshplane/v1/proxies").json() == {"proxies": []}
        assert mesh_admin.get("/meshplane/v1/namespaces").status_code == 200
    with world.token("*", "viewer").http(world.server) as viewer:
        assert viewer.get("/metrics").status_code == 200


def test_a_server_on_a_non_loopback_address_requires_credentials(tmp_path: Path) -> None:
    server = MeshplaneServer(tmp_path / "data", extra_args=["--host", "0.0.0.0"]).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            refused = http.get("/v20190125/meshes")
            assert refused.status_code == 401
            assert refused.headers["x-amzn-errortype"] == "ForbiddenException:"
        assert "API authentication: required" in server.log()
        assert "no API token exists yet" in server.log()
    finally:
        server.stop()


def test_loopback_server_stays_open_and_honours_tokens(fresh_server: MeshplaneServer) -> None:
    fresh_server.boto3().create_mesh(meshName="open")  # anonymous, as before
    with httpx.Client(base_url=fresh_server.url) as http:
        created = http.post("/meshplane/v1/tokens", json={"mesh": "open", "role": "viewer"})
        assert created.status_code == 200, created.text
    viewer = Token.from_json(created.json())
    refused = viewer.boto3(fresh_server)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        refused.delete_mesh(meshName="open")  # a token acts as itself, even on an open server
    assert raised.value.response["Error"]["Code"] == "ForbiddenException"
