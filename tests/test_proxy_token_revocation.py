"""Revoking proxy tokens: one by its id or every token of a proxy; the revocation list on disk;
the authorizer refusing revoked tokens; and end to end, a real Envoy cut off the moment its
token is revoked (through the real CLI) while a proxy holding another token keeps streaming."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry

from meshplane.authority import TokenKey
from meshplane.authority.revocations import Revocations, RevocationsFileError
from meshplane.authority.tokens import MAX_TTL_SECONDS
from meshplane.server.proxy_auth import ProxyAuthorizer
from meshplane.xds import parse_node_id, types
from tests.support.auth import run_cli
from tests.support.mesh import Mesh
from tests.support.xds import AdsClient, names_of, request

A = "mesh/demo/virtualNode/a"
B = "mesh/demo/virtualNode/b"
KEY = TokenKey(b"r" * 32)
NOW = 1_900_000_000


def test_one_token_or_every_token_of_a_proxy(tmp_path: Path) -> None:
    revocations = Revocations(tmp_path / "revoked.json")
    _, first = KEY.issue(A, NOW - 100, 3600)
    _, second = KEY.issue(A, NOW - 50, 3600)
    _, other = KEY.issue(B, NOW - 50, 3600)
    revocations.revoke_token(first.token_id, NOW)
    assert revocations.why(first) == f"proxy token {first.token_id} was revoked"
    assert revocations.why(second) is None and revocations.why(other) is None
    revocations.revoke_subject(A, NOW)
    assert revocations.why(second) is not None and revocations.why(other) is None
    _, later = KEY.issue(A, NOW + 1, 3600)  # issued after the cut-off
    assert revocations.why(later) is None
    assert revocations.cutoff(A) == NOW and revocations.cutoff(B) is None
    # kept on disk (0600) and read back by the next server
    assert stat.S_IMODE((tmp_path / "revoked.json").stat().st_mode) == 0o600
    again = Revocations(tmp_path / "revoked.json")
    assert again.why(first) is not None and again.why(second) is not None
    assert again.why(later) is None


def test_entries_are_dropped_once_no_token_they_match_can_be_valid(tmp_path: Path) -> None:
    revocations = Revocations(tmp_path / "revoked.json")
    revocations.revoke_token("aa", NOW)
    revocations.revoke_subject(B, NOW)
    revocations.revoke_token("bb", NOW + MAX_TTL_SECONDS + 1)
    saved = json.loads((tmp_path / "revoked.json").read_text())
    assert saved == {"tokens": {"bb": NOW + MAX_TTL_SECONDS + 1}, "resources": {}}


def test_a_failed_write_changes_nothing_and_a_bad_file_is_named(tmp_path: Path) -> None:
    revocations = Revocations(tmp_path / "missing-dir" / "revoked.json")
    _, claims = KEY.issue(A, NOW, 60)
    with pytest.raises(RevocationsFileError, match="cannot write"):
        revocations.revoke_token(claims.token_id, NOW)
    assert revocations.why(claims) is None
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(RevocationsFileError, match=r"bad\.json: not a proxy token revocation"):
        Revocations(bad)


def test_the_authorizer_refuses_revoked_tokens(tmp_path: Path) -> None:
    revocations = Revocations(tmp_path / "revoked.json")
    registry = CollectorRegistry()
    check = ProxyAuthorizer(
        KEY, required=True, registry=registry, clock=lambda: NOW, revocations=revocations
    )
    token, claims = KEY.issue(A, NOW - 10, 3600)
    metadata = (("authorization", f"Bearer {token}"),)
    assert check(parse_node_id(A), metadata, None) == claims  # the stream's credential
    assert check.revoked(parse_node_id(A), claims) is None
    revocations.revoke_token(claims.token_id, NOW)
    with pytest.raises(PermissionError, match="was revoked"):
        check(parse_node_id(A), metadata, None)
    assert check.revoked(parse_node_id(A), claims) is not None
    assert check.revoked(parse_node_id(A), None) is None  # a stream without a token
    assert (
        registry.get_sample_value("meshplane_proxy_auth_refused_total", {"reason": "revoked"}) == 1
    )


async def _streams(mesh: Mesh, name: str) -> list[dict[str, object]]:
    response = await asyncio.to_thread(httpx.get, f"{mesh.server.url}/meshplane/v1/proxies")
    return [p for p in response.json()["proxies"] if p["name"] == name]


def _connected(sidecar: object) -> int:
    stats = sidecar.stats()  # type: ignore[attr-defined]
    return int(stats.get("control_plane.connected_state", -1))


async def test_revoking_cuts_off_a_real_envoy_and_only_it(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path, ["--require-proxy-auth"])
    try:
        mesh.appmesh.create_mesh(meshName="demo")
        mesh.appmesh.create_virtual_node(
            meshName="demo",
            virtualNodeName="a",
            spec={
                "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": "a.local"}},
            },
        )
        env = {"MESHPLANE_SERVER": mesh.server.url}
        made = run_cli("proxy-token", "create", "--resource", A, "-o", "json", env=env)
        assert made.returncode == 0, made.stderr
        envoy_token = json.loads(made.stdout)
        spare = run_cli("proxy-token", "create", "--resource", A, env=env)
        assert spare.returncode == 0, spare.stderr
        assert "proxy token " in spare.stderr and A in spare.stderr
        spare_token = spare.stdout.strip()

        sidecar = mesh.sidecar(A, token=envoy_token["token"])
        mesh.wait(lambda: _connected(sidecar) == 1, "the sidecar to connect")
        other = AdsClient(
            f"127.0.0.1:{mesh.server.xds_port}",
            metadata=(("authorization", f"Bearer {spare_token}"),),
        )
        try:
            await other.send(request(types.CLUSTER, node=A))
            assert names_of(await other.recv())

            revoked = run_cli(
                "proxy-token",
                "revoke",
                "--resource",
                A,
                "--token-id",
                envoy_token["tokenId"],
                env=env,
            )
            assert revoked.returncode == 0, revoked.stderr
            assert f"revoked proxy token {envoy_token['tokenId']} of {A}" in revoked.stdout
            assert "1 open stream(s) closed" in revoked.stdout
            # the Envoy is disconnected and stays out (it retries and is refused)
            mesh.wait(lambda: _connected(sidecar) == 0, "the sidecar to be disconnected")
            await asyncio.sleep(2)
            # still out: Envoy sets connected_state as it opens each retried stream, before the
            # server has refused it, so out is a moment it reads 0 (an admitted stream reads 1
            # until it ends), not any one reading
            mesh.wait(lambda: _connected(sidecar) == 0, "the sidecar still disconnected")
            assert "was revoked" in mesh.server.log()
            # the stream holding the other token is untouched: the one stream left for A
            streams = await _streams(mesh, "a")
            assert len(streams) == 1 and not other.ended

            everything = await asyncio.to_thread(
                run_cli, "proxy-token", "revoke", "--resource", A, "-o", "json", env=env
            )
            assert everything.returncode == 0, everything.stderr
            answer = json.loads(everything.stdout)
            assert answer["resource"] == A and answer["streamsClosed"] == 1
            assert "issuedUntil" in answer
            assert await other.end_code() == grpc.StatusCode.PERMISSION_DENIED
            assert await _streams(mesh, "a") == []
        finally:
            await other.close()

        # a token made right after "revoke everything" is good: the sidecar comes back with it
        fresh = mesh.proxy_token(A)
        assert fresh is not None
        comeback = mesh.sidecar(A, token=fresh)
        mesh.wait(lambda: _connected(comeback) == 1, "a sidecar with a fresh token to connect")
        metrics = (await asyncio.to_thread(httpx.get, f"{mesh.server.url}/metrics")).text
        audit = await asyncio.to_thread(run_cli, "audit", "--mesh", "demo", "-o", "json", env=env)
        assert audit.returncode == 0, audit.stderr
        entries = [(e["operation"], e["resource"]) for e in json.loads(audit.stdout)]
        assert ("RevokeProxyToken", f"{A}/proxy-token/{envoy_token['tokenId']}") in entries
        assert ("RevokeProxyToken", f"{A}/proxy-tokens") in entries
        assert ("CreateProxyToken", f"{A}/proxy-token/{envoy_token['tokenId']}") in entries
        assert 'meshplane_proxy_auth_refused_total{reason="revoked"}' in metrics
    finally:
        mesh.close()


def test_revoke_errors_name_the_field(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    try:
        mesh.appmesh.create_mesh(meshName="demo")
        with httpx.Client(base_url=mesh.server.url, timeout=10) as http:
            url = "/meshplane/v1/proxy-tokens/revoke"
            for payload, status, text in (
                ({}, 400, "resource"),
                ({"resource": "mesh/demo/virtualService/s"}, 400, "resource"),
                ({"resource": A, "tokenId": "not hex!"}, 400, "tokenId"),
                ({"resource": A, "extra": 1}, 400, "extra"),
                ({"resource": "mesh/nope/virtualNode/a"}, 404, "nope"),
            ):
                response = http.post(url, json=payload)
                assert response.status_code == status, (payload, response.text)
                assert text in response.text
        assert not (tmp_path / "data" / "proxy-token-revocations.json").exists()
    finally:
        mesh.close()
