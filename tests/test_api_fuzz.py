"""Property-based tests: malformed and random requests thrown at the real server's App Mesh
API and at ``/meshplane/v1/apply`` never produce a 500 or a crash, every error is a modeled
App Mesh error, and a refused request changes nothing."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshplane.api.routing import OPERATIONS
from tests.support.server import MeshplaneServer

MODELED = {
    "BadRequestException",
    "NotFoundException",
    "ConflictException",
    "ResourceInUseException",
    "LimitExceededException",
    "TooManyTagsException",
    "ForbiddenException",
}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=15), children, max_size=4),
    ),
    max_leaves=25,
)
names = st.one_of(
    st.text(min_size=0, max_size=300), st.sampled_from(["m", "n", "a/b", "%2F", ".."])
)
spec_keys = st.sampled_from(
    [
        "listeners",
        "serviceDiscovery",
        "backends",
        "provider",
        "httpRoute",
        "grpcRoute",
        "tcpRoute",
        "http2Route",
        "egressFilter",
        "priority",
        "logging",
        "backendDefaults",
    ]
)
specs = st.one_of(json_values, st.dictionaries(spec_keys, json_values, max_size=4))


@pytest.fixture(scope="module")
def http(server: MeshplaneServer) -> Any:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.put("/v20190125/meshes", json={"meshName": "m"})
        client.put(
            "/v20190125/meshes/m/virtualRouters",
            json={
                "virtualRouterName": "r",
                "spec": {"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]},
            },
        )
        yield client


def revision(http: httpx.Client) -> int:
    return int(http.get("/healthz").json()["revision"])


def check(response: httpx.Response) -> None:
    assert response.status_code != 500, response.text
    if response.status_code >= 400:
        code = response.headers.get("x-amzn-errortype", "").split(":")[0]
        assert code in MODELED or response.status_code in (404, 405), (code, response.text)
        body = response.json()
        assert isinstance(body.get("message"), str)
        assert body["message"]
        assert "Traceback" not in body["message"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    op=st.sampled_from(OPERATIONS),
    labels=st.dictionaries(
        st.sampled_from(
            [
                "meshName",
                "virtualNodeName",
                "virtualRouterName",
                "routeName",
                "virtualGatewayName",
                "gatewayRouteName",
                "virtualServiceName",
            ]
        ),
        names,
    ),
    body=st.one_of(
        st.dictionaries(
            st.sampled_from(
                [
                    "meshName",
                    "spec",
                    "tags",
                    "clientToken",
                    "virtualNodeName",
                    "routeName",
                    "tagKeys",
                    "virtualServiceName",
                    "junk",
                ]
            ),
            st.one_of(specs, names),
        ),
        json_values,
    ),
    query=st.dictionaries(
        st.sampled_from(["limit", "nextToken", "meshOwner", "resourceArn"]), st.text(max_size=40)
    ),
)
def test_random_requests_never_500(
    http: httpx.Client, op: Any, labels: dict[str, str], body: Any, query: dict[str, str]
) -> None:
    path = op.template
    for segment in op.segments:
        if segment.startswith("{"):
            value = labels.get(segment[1:-1], "m")
            path = path.replace(segment, quote(value, safe="") or "x", 1)
    before = revision(http)
    response = http.request(
        op.method,
        path,
        params=query,
        content=json.dumps(body).encode() if op.method == "PUT" else None,
    )
    check(response)
    if response.status_code >= 400:
        assert revision(http) == before


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_garbage_bodies(http: httpx.Client, raw: bytes) -> None:
    before = revision(http)
    for path in (
        "/v20190125/meshes",
        "/v20190125/meshes/m/virtualNodes",
        "/v20190125/meshes/m/virtualRouter/r/routes",
    ):
        response = http.put(path, content=raw)
        check(response)
    response = http.post("/meshplane/v1/apply", content=raw)
    check(response)
    assert revision(http) == before


KINDS = [
    "Mesh",
    "VirtualNode",
    "VirtualService",
    "VirtualRouter",
    "VirtualGateway",
    "GatewayRoute",
    "BackendGroup",
    "Namespace",
    "Service",
]


@st.composite
def manifests(draw: st.DrawFn) -> str:
    docs = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(KINDS))
        doc: dict[str, Any] = {
            "apiVersion": draw(
                st.sampled_from(["appmesh.k8s.aws/v1beta2", "v1", "appmesh.k8s.aws/v1beta1", 7])
            ),
            "kind": kind,
            "metadata": draw(
                st.one_of(
                    st.fixed_dictionaries(
                        {"name": names, "namespace": st.sampled_from(["ns", "default", ""])}
                    ),
                    json_values,
                )
            ),
        }
        if draw(st.booleans()):
            doc["spec"] = draw(specs)
        docs.append(doc)
    text = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=5)) + text[cut:]
    return text


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=manifests(), dry=st.booleans())
def test_random_manifests_never_crash_apply(http: httpx.Client, text: str, dry: bool) -> None:
    before = revision(http)
    response = http.post(
        "/meshplane/v1/apply",
        json={"documents": [{"source": "fuzz.yaml", "text": text}], "dryRun": dry},
    )
    check(response)
    if response.status_code >= 400 or dry:
        assert revision(http) == before
    if response.status_code >= 400:
        assert (
            "fuzz.yaml" in response.json()["message"] or "documents" in response.json()["message"]
        )
