"""Property-based tests: every App Mesh operation and every meshplane endpoint, called with
valid and invalid credentials (none, garbage, wrong secrets, revoked tokens, tampered or
wrongly signed SigV4 requests, tokens of every role on this mesh, another mesh or every mesh)
against a real server that requires credentials.

Whatever the request: never a 500; bad credentials get 401 and change nothing; a caller
without the role an operation needs gets 400/403 and changes nothing; a refused request
changes nothing; and every change that does happen is in the audit log, attributed to the
caller, in a mesh where the caller holds the role that change needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meshplane.api.routing import OPERATIONS, Action, Operation
from meshplane.errors import BadRequestError
from meshplane.model.kinds import Kind
from meshplane.service.arns import parse_arn
from tests.support.auth import Token, auth_server, create_token, fingerprint
from tests.support.server import MeshplaneServer

RANKS = {"viewer": 1, "editor": 2, "admin": 3}
MODELED = {
    "BadRequestException",
    "NotFoundException",
    "ConflictException",
    "ResourceInUseException",
    "LimitExceededException",
    "TooManyTagsException",
    "ForbiddenException",
}
ACCOUNT = "000000000000"

SPECS: dict[Kind, dict[str, Any]] = {
    Kind.MESH: {},
    Kind.VIRTUAL_NODE: {
        "listeners": [{"portMapping": {"port": 80, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": "n.local"}},
    },
    Kind.VIRTUAL_ROUTER: {"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]},
    Kind.ROUTE: {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {"weightedTargets": [{"virtualNode": "n", "weight": 1}]},
        }
    },
    Kind.VIRTUAL_SERVICE: {"provider": {"virtualNode": {"virtualNodeName": "n"}}},
    Kind.VIRTUAL_GATEWAY: {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]},
    Kind.GATEWAY_ROUTE: {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {"target": {"virtualService": {"virtualServiceName": "s"}}},
        }
    },
}

MESH_MANIFEST = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {{name: {mesh}}}
spec: {{namespaceSelector: {{matchLabels: {{mesh: {mesh}}}}}}}
"""


@dataclass(frozen=True)
class Credential:
    """How a request authenticates; ``token`` is None for credentials that are not valid."""

    kind: str  # none | bearer | sigv4 | garbage | wrong-secret | tampered | unknown-key
    token: Token | None
    label: str

    def __repr__(self) -> str:
        return f"Credential({self.kind}, {self.label})"


class Fuzzed:
    def __init__(self, server: MeshplaneServer, root: Token) -> None:
        self.server = server
        self.auditor = root.http(server)  # reads the state; never part of the fuzzed pool
        self.root = root
        self.tokens: dict[str, Token] = {}

    def add(self, label: str, mesh: str, role: str) -> Token:
        self.tokens[label] = create_token(self.auditor, mesh, role)
        return self.tokens[label]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    server, root = auth_server(tmp_path_factory.mktemp("authfuzz") / "data")
    world = Fuzzed(server, root)
    try:
        admin = world.auditor
        text = MESH_MANIFEST.format(mesh="m") + "---" + MESH_MANIFEST.format(mesh="o")
        applied = admin.post("/meshplane/v1/apply", json={"documents": [{"text": text}]})
        assert applied.status_code == 200, applied.text
        for mesh in ("m", "o"):
            admin.put(f"/meshplane/v1/namespaces/ns-{mesh}", json={"labels": {"mesh": mesh}})
            for kind in (Kind.VIRTUAL_NODE, Kind.VIRTUAL_ROUTER):
                body = {kind.name_field: "n" if kind is Kind.VIRTUAL_NODE else "r"}
                response = admin.put(
                    f"/v20190125/meshes/{mesh}/{kind.plural}", json={**body, "spec": SPECS[kind]}
                )
                assert response.status_code == 200, response.text
        for mesh in ("m", "o", "*"):
            for role in ("viewer", "editor", "admin"):
                world.add(f"{mesh}-{role}", mesh, role)
        world.add("spare", "m", "viewer")
        revoked = world.add("revoked", "m", "admin")
        assert admin.delete(f"/meshplane/v1/tokens/{revoked.id}").status_code == 200
        yield world
    finally:
        world.auditor.close()
        server.stop()


def credentials(world: Fuzzed) -> st.SearchStrategy[Credential]:
    """Valid tokens in six draws of thirteen, each kind of bad credentials in one."""
    valid = sorted(label for label in world.tokens if label != "revoked")

    @st.composite
    def draw_credential(draw: st.DrawFn) -> Credential:
        kind = draw(st.sampled_from([*["bearer", "sigv4"] * 3, *BAD_CREDENTIALS]))
        if kind in ("bearer-revoked", "sigv4-revoked"):
            return Credential(kind, world.tokens["revoked"], "revoked")
        if kind == "garbage":
            text = draw(st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40))
            return Credential(kind, None, text)
        if kind in ("none", "unknown-key"):
            return Credential(kind, None, "-")
        label = draw(st.sampled_from(valid))
        return Credential(kind, world.tokens[label], label)

    return draw_credential()


BAD_CREDENTIALS = [
    "none",
    "garbage",
    "wrong-secret",
    "tampered",
    "bearer-revoked",
    "sigv4-revoked",
    "unknown-key",
]


def _valid_token(credential: Credential, live: set[str]) -> Token | None:
    token = credential.token
    if credential.kind in ("bearer", "sigv4") and token is not None and token.id in live:
        return token
    return None


def send(
    world: Fuzzed,
    credential: Credential,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: bytes | None,
) -> httpx.Response:
    query_string = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query)
    url = f"{world.server.url}{path}" + (f"?{query_string}" if query_string else "")
    headers: dict[str, str] = {"Content-Type": "application/json"} if body is not None else {}
    token = credential.token
    kind = credential.kind
    if kind in ("bearer", "bearer-revoked") and token is not None:
        headers["Authorization"] = f"Bearer {token.bearer}"
    elif kind == "garbage":
        headers["Authorization"] = credential.label
    elif kind in ("sigv4", "sigv4-revoked", "wrong-secret", "tampered", "unknown-key"):
        key_id = token.id if token is not None else "MPTNOSUCHTOKEN000000"
        secret = token.secret if token is not None and kind != "wrong-secret" else "wrong"
        signed_body = body if kind != "tampered" else (body or b"") + b" "
        request = AWSRequest(method=method, url=url, data=signed_body, headers=headers)
        SigV4Auth(Credentials(key_id, secret), "appmesh", "us-east-1").add_auth(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
    with httpx.Client(timeout=30) as client:
        return client.request(method, url, content=body, headers=headers)


def check_answer(response: httpx.Response) -> None:
    assert response.status_code != 500, response.text
    if response.status_code >= 400:
        code = response.headers.get("x-amzn-errortype", "").split(":")[0]
        assert code in MODELED or response.status_code in (404, 405), (code, response.text)
        assert response.json()["message"]


def role_of(token: Token, mesh: str) -> int:
    return RANKS[token.role] if token.mesh in (mesh, "*") else 0


def needed_role(operation: str, mesh: str) -> str:
    if operation in ("CreateMesh", "UpdateMesh", "DeleteMesh", "TagResource", "UntagResource"):
        return "admin"
    if operation in ("CreateToken", "RevokeToken"):
        return "admin"
    return "editor"


def check_effects(
    world: Fuzzed,
    credential: Credential,
    token: Token | None,
    before: tuple[Any, ...],
    response: httpx.Response,
) -> None:
    after = fingerprint(world.auditor)
    event(f"{credential.kind}: {response.status_code}")
    if after != before:
        event("changed the store")
    if token is None:
        assert response.status_code == 401, (credential, response.status_code, response.text)
        assert response.headers["x-amzn-errortype"] == "ForbiddenException:"
    every = world.auditor.get(
        "/meshplane/v1/audit", params={"after": str(before[1] or 0), "limit": "1000"}
    ).json()["entries"]
    # the control plane's own duties (a virtual service's VIP allocated right after it
    # appears) change the store in the background, under a principal of their own
    new = [entry for entry in every if not entry["principal"].startswith("meshplane@")]
    if response.status_code >= 400:
        assert not new and after[2:] == before[2:], (
            credential,
            response.status_code,
            response.text,
        )
        if not every:
            assert after == before, (credential, response.status_code, response.text)
        return
    if after[0] != before[0] or after[2:] != before[2:]:
        assert every, "a change without an audit entry"
    assert token is not None
    for entry in new:
        assert entry["principal"] == token.id, entry
        if entry["mesh"] is None:  # namespaces and stored manifests
            assert RANKS[token.role] >= RANKS["editor"], (token, entry)
        else:
            need = RANKS[needed_role(entry["operation"], entry["mesh"])]
            assert role_of(token, entry["mesh"]) >= need, (token, entry)


# --- the App Mesh API -------------------------------------------------------------------------

MESH_NAMES = st.sampled_from(["m", "o", "new"])
NAMES = st.sampled_from(["n", "r", "new", "m"])
ANY_NAMES = st.one_of(NAMES, st.text(min_size=0, max_size=20))
ARNS = st.one_of(
    st.sampled_from(
        [
            f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/m",
            f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/o",
            f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/m/virtualNode/n",
            f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/o/virtualNode/n",
            f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/o/virtualRouter/r",
        ]
    ),
    st.text(max_size=30),
)


@st.composite
def appmesh_calls(
    draw: st.DrawFn,
) -> tuple[Operation, dict[str, str], Any, list[tuple[str, str]], bool]:
    op = draw(st.sampled_from(OPERATIONS))
    labels = {}
    for segment in op.segments:
        if segment.startswith("{"):
            pool = MESH_NAMES if segment == "{meshName}" else NAMES
            value = draw(pool if draw(st.integers(0, 3)) else ANY_NAMES)
            # an empty or dot segment would be another path (another operation) on the wire
            labels[segment[1:-1]] = "x" if value in ("", ".", "..") else value
    query: list[tuple[str, str]] = []
    if op.action in (Action.TAG, Action.UNTAG, Action.LIST_TAGS):
        query.append(("resourceArn", draw(ARNS)))
    if op.action in (Action.LIST, Action.LIST_TAGS) and draw(st.booleans()):
        query.append(("limit", draw(st.sampled_from(["1", "5", "0", "x"]))))
    well_formed = draw(st.integers(0, 3)) > 0
    body: Any = None
    if op.method == "PUT":
        if well_formed:
            kind = op.kind
            if op.action is Action.TAG:
                body = {"tags": [{"key": "k", "value": draw(st.text(max_size=5))}]}
            elif op.action is Action.UNTAG:
                body = {"tagKeys": ["k"]}
            elif kind is not None and op.action is Action.CREATE:
                name_field = "meshName" if kind is Kind.MESH else kind.name_field
                body = {
                    name_field: draw(MESH_NAMES if kind is Kind.MESH else NAMES),
                    "spec": SPECS[kind],
                }
            elif kind is not None:
                body = {"spec": SPECS[kind]}
        else:
            body = draw(
                st.one_of(
                    st.dictionaries(
                        st.sampled_from(
                            ["meshName", "spec", "tags", "virtualNodeName", "tagKeys", "junk"]
                        ),
                        st.one_of(st.none(), st.text(max_size=5), st.integers(), st.just({})),
                        max_size=3,
                    ),
                    st.lists(st.integers(), max_size=2),
                )
            )
    return op, labels, body, query, well_formed


def appmesh_need(
    op: Operation, labels: dict[str, str], body: Any, query: list[tuple[str, str]]
) -> tuple[str, str] | None:
    """(mesh, role) the operation needs, or None when it needs no role on a mesh."""
    if op.action is Action.LIST and op.kind is Kind.MESH:
        return None
    if op.action in (Action.TAG, Action.UNTAG, Action.LIST_TAGS):
        try:
            mesh = parse_arn(dict(query)["resourceArn"]).mesh
        except BadRequestError:
            return ("\0unparsable", "viewer")
        return (mesh, "viewer" if op.action is Action.LIST_TAGS else "admin")
    if op.action is Action.CREATE and op.kind is Kind.MESH:
        mesh = body.get("meshName") if isinstance(body, dict) else None
        return (mesh if isinstance(mesh, str) else "\0none", "admin")
    mesh = labels["meshName"]
    if op.action in (Action.DESCRIBE, Action.LIST):
        return (mesh, "viewer")
    return (mesh, "admin" if op.kind is Kind.MESH else "editor")


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_appmesh_operations_with_any_credentials(fuzzed: Fuzzed, data: st.DataObject) -> None:
    credential = data.draw(credentials(fuzzed), label="credential")
    op, labels, body, query, well_formed = data.draw(appmesh_calls(), label="call")
    path = op.template
    for segment in op.segments:
        if segment.startswith("{"):
            path = path.replace(segment, quote(labels[segment[1:-1]], safe=""), 1)
    before = fingerprint(fuzzed.auditor)
    token = _valid_token(credential, set(before[2]))
    content = json.dumps(body).encode() if op.method == "PUT" else None
    response = send(fuzzed, credential, op.method, path, query, content)
    check_answer(response)
    if token is not None:
        need = appmesh_need(op, labels, body, query)
        if need is not None and role_of(token, need[0]) < RANKS[need[1]]:
            assert response.status_code in (400, 403), (token, op.name, need, response.text)
            if (
                well_formed
                and need[0] in ("m", "o")
                and all(v in ("m", "o", "n", "r", "new") for v in labels.values())
            ):
                assert response.status_code == 403, (token, op.name, need, response.text)
        if op.action is Action.LIST and op.kind is Kind.MESH and response.status_code == 200:
            shown = {m["meshName"] for m in response.json()["meshes"]}
            assert all(role_of(token, mesh) >= 1 for mesh in shown), (token, shown)
    check_effects(fuzzed, credential, token, before, response)


# --- meshplane's own endpoints ----------------------------------------------------------------

NODE_MANIFEST = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  listeners: [{{portMapping: {{port: 80, protocol: http}}}}]
  serviceDiscovery: {{dns: {{hostname: {name}.local}}}}
"""


@st.composite
def manifest_texts(draw: st.DrawFn) -> str:
    docs = []
    for _ in range(draw(st.integers(1, 3))):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            docs.append(MESH_MANIFEST.format(mesh=draw(st.sampled_from(["m", "o", "p"]))))
        elif choice == 1:
            docs.append(
                yaml.safe_dump(
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {
                            "name": draw(st.sampled_from(["ns-m", "ns-o", "ns-p"])),
                            "labels": {"mesh": draw(st.sampled_from(["m", "o", "p"]))},
                        },
                    }
                )
            )
        elif choice == 2:
            docs.append(draw(st.text(max_size=40)))
        else:
            docs.append(
                NODE_MANIFEST.format(
                    name=draw(st.sampled_from(["a", "b", "c"])),
                    namespace=draw(st.sampled_from(["ns-m", "ns-o", "ns-p"])),
                )
            )
    return "\n---\n".join(docs)


@st.composite
def extension_calls(draw: st.DrawFn, world: Fuzzed) -> tuple[str, str, list[tuple[str, str]], Any]:
    choice = draw(
        st.sampled_from(
            [
                "apply",
                "delete",
                "label",
                "namespaces",
                "manifests",
                "proxies",
                "create-token",
                "tokens",
                "revoke",
                "audit",
                "metrics",
                "unknown",
            ]
        )
    )
    if choice in ("apply", "delete"):
        body = {
            "documents": [{"source": "f.yaml", "text": draw(manifest_texts())}],
            "dryRun": draw(st.booleans()),
        }
        return "POST", f"/meshplane/v1/{choice}", [], body
    if choice == "label":
        name = draw(st.sampled_from(["ns-m", "ns-o", "ns-p"]))
        labels = {"mesh": draw(st.sampled_from(["m", "o", "p"]))}
        return "PUT", f"/meshplane/v1/namespaces/{name}", [], {"labels": labels}
    if choice == "create-token":
        body = {
            "mesh": draw(st.sampled_from(["m", "o", "*", "", "a/b"])),
            "role": draw(st.sampled_from(["viewer", "editor", "admin", "root"])),
        }
        return "POST", "/meshplane/v1/tokens", [], body
    if choice == "revoke":
        ids = [t.id for label, t in world.tokens.items() if label not in ("*-admin",)]
        token_id = draw(st.one_of(st.sampled_from(ids), st.text(min_size=1, max_size=10)))
        return "DELETE", f"/meshplane/v1/tokens/{quote(token_id, safe='')}", [], None
    if choice == "tokens":
        query = [("mesh", draw(st.sampled_from(["m", "o", "*"])))] if draw(st.booleans()) else []
        return "GET", "/meshplane/v1/tokens", query, None
    if choice == "audit":
        query = (
            [("mesh", draw(st.sampled_from(["m", "o", "*", ""])))] if draw(st.booleans()) else []
        )
        if draw(st.booleans()):
            query.append(("since", draw(st.sampled_from(["0", "-5", "x", "1e300", "nan"]))))
        return "GET", "/meshplane/v1/audit", query, None
    if choice == "metrics":
        return "GET", "/metrics", [], None
    if choice == "unknown":
        return draw(st.sampled_from(["GET", "POST"])), "/meshplane/v1/unknown", [], None
    return "GET", f"/meshplane/v1/{choice}", [], None


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_meshplane_endpoints_with_any_credentials(fuzzed: Fuzzed, data: st.DataObject) -> None:
    credential = data.draw(credentials(fuzzed), label="credential")
    method, path, query, body = data.draw(extension_calls(fuzzed), label="call")
    before = fingerprint(fuzzed.auditor)
    token = _valid_token(credential, set(before[2]))
    content = (
        json.dumps(body).encode()
        if body is not None
        else (b"" if method in ("POST", "PUT") else None)
    )
    response = send(fuzzed, credential, method, path, query, content)
    if path != "/metrics" or response.status_code != 200:
        check_answer(response)
    if token is not None:
        is_global = token.mesh == "*"
        if path == "/metrics" or path.endswith("/unknown"):
            expected_ok = is_global and (path == "/metrics" or token.role == "admin")
            assert (response.status_code < 400) == expected_ok or response.status_code == 404, (
                token,
                path,
                response.status_code,
            )
        changing = method == "POST" and path.split("/")[-1] in ("apply", "delete")
        if changing and not body["dryRun"] and RANKS[token.role] < RANKS["editor"]:
            assert response.status_code == 403, (token, path, response.text)
        if path.startswith("/meshplane/v1/namespaces/") and RANKS[token.role] < RANKS["editor"]:
            assert response.status_code == 403, (token, path, response.text)
        if path == "/meshplane/v1/tokens" and method == "POST" and token.role != "admin":
            assert response.status_code in (400, 403), (token, response.text)
        if path == "/meshplane/v1/tokens" and method == "GET" and response.status_code == 200:
            assert all(
                role_of(token, t["mesh"]) == RANKS["admin"] for t in response.json()["tokens"]
            )
        if path == "/meshplane/v1/audit" and response.status_code == 200:
            for entry in response.json()["entries"]:
                mesh = entry["mesh"] if entry["mesh"] is not None else "*"
                assert role_of(token, mesh) >= 1, (token, entry)
    check_effects(fuzzed, credential, token, before, response)
