"""Hostile JSON bodies (findings 5, 6 and 9's duplicate keys): a clear 400 naming the rule,
nothing stored, and the server keeps answering other clients meanwhile."""

from __future__ import annotations

import json

import httpx

from tests.abuse.conftest import Healthy
from tests.support.server import MeshplaneServer


def put(server: MeshplaneServer, path: str, body: bytes) -> httpx.Response:
    return httpx.put(
        f"{server.url}{path}",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )


def refused(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["x-amzn-errortype"].startswith("BadRequestException")
    message: str = response.json()["message"]
    for word in words:
        assert word in message, message
    return message


def no_mesh(server: MeshplaneServer, name: str) -> None:
    answer = httpx.get(f"{server.url}/v20190125/meshes/{name}", timeout=30)
    assert answer.status_code == 404, answer.text


def test_deeply_nested_json_is_refused_naming_the_limit(
    target: MeshplaneServer, healthy: Healthy
) -> None:
    body = '{"meshName":"deep","spec":' + '{"a":' * 990 + "1" + "}" * 991
    with healthy():
        for _ in range(20):
            refused(put(target, "/v20190125/meshes", body.encode()), "nested deeper than 64")
        # deeper than Python's own recursion limit: still a 400, never a RecursionError 500
        deeper = '{"meshName":"deep","spec":' + "[" * 100_000 + "]" * 100_000 + "}"
        refused(put(target, "/v20190125/meshes", deeper.encode()), "nested deeper than")
    no_mesh(target, "deep")


def test_a_60_mb_body_is_refused_before_it_is_read_whole(
    target: MeshplaneServer, healthy: Healthy
) -> None:
    body = b'{"meshName":"big","tags":[' + b'{"key":"k","value":"v"},' * 2_500_000 + b"{}]}"
    assert len(body) > 60_000_000
    with healthy():
        try:
            response = put(target, "/v20190125/meshes", body)
        except httpx.TransportError:
            pass  # the server may close the connection once the limit is passed
        else:
            refused(response, "larger than")
    no_mesh(target, "big")


def test_lone_surrogates_are_refused_at_the_model(
    target: MeshplaneServer, healthy: Healthy
) -> None:
    with healthy():
        refused(
            put(target, "/v20190125/meshes", b'{"meshName":"a\\ud800b"}'),
            "meshName",
            "Unicode",
        )
        refused(
            put(
                target,
                "/v20190125/meshes",
                b'{"meshName":"sur","tags":[{"key":"\\udfff","value":""}]}',
            ),
            "tags[0].key",
            "Unicode",
        )
    no_mesh(target, "sur")
    assert put(target, "/v20190125/meshes", b'{"meshName":"sur"}').status_code == 200
    node = {
        "virtualNodeName": "n",
        "spec": {
            "listeners": [{"portMapping": {"port": 80, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "a\ud800.local"}},
        },
    }
    message = refused(
        put(target, "/v20190125/meshes/sur/virtualNodes", json.dumps(node).encode()),
        "Unicode",
    )
    assert "hostname" in message
    missing = httpx.get(f"{target.url}/v20190125/meshes/sur/virtualNodes/n", timeout=30)
    assert missing.status_code == 404


def test_duplicate_json_keys_are_refused_as_in_manifests(target: MeshplaneServer) -> None:
    refused(
        put(target, "/v20190125/meshes", b'{"meshName":"dup1","meshName":"dup2"}'),
        "'meshName'",
        "twice",
    )
    no_mesh(target, "dup1")
    no_mesh(target, "dup2")
    apply = httpx.post(
        f"{target.url}/meshplane/v1/apply",
        content=b'{"documents":[],"documents":[]}',
        timeout=30,
    )
    refused(apply, "'documents'", "twice")
