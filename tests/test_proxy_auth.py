"""Proxy authentication: the xDS authorizer over a real gRPC stream, proxy tokens through the
API, and when authentication is required."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry

from meshplane.authority import TokenKey
from meshplane.server.proxy_auth import ProxyAuthorizer, bearer_token
from meshplane.server.settings import Settings, parse_duration
from meshplane.xds import SnapshotCache, XdsServer, parse_node_id, types
from tests.support import xds as build
from tests.support.server import MeshplaneServer
from tests.support.xds import AdsClient, names_of, request

A = "mesh/demo/virtualNode/a"
B = "mesh/demo/virtualNode/b"
KEY = TokenKey(b"k" * 32)
NOW = 1_900_000_000


def authorizer(*, required: bool, registry: CollectorRegistry | None = None) -> ProxyAuthorizer:
    return ProxyAuthorizer(KEY, required=required, registry=registry, clock=lambda: NOW)


def bearer(subject: str, ttl: int = 3600, now: int = NOW) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {KEY.issue(subject, now, ttl)[0]}"),)


def test_the_token_must_be_genuine_current_and_for_the_claimed_identity() -> None:
    registry = CollectorRegistry()
    check = authorizer(required=True, registry=registry)
    check(parse_node_id(A), bearer(A), None)
    # the ARN form of the same node is the same identity
    check(
        parse_node_id("arn:aws:appmesh:us-east-1:000000000000:mesh/demo/virtualNode/a"),
        bearer(A),
        None,
    )
    refusals = {
        "for b": (parse_node_id(B), bearer(A)),
        "expired": (parse_node_id(A), bearer(A, ttl=10, now=NOW - 20)),
        "missing": (parse_node_id(A), ()),
        "junk": (parse_node_id(A), (("authorization", "Bearer nonsense"),)),
        "forged": (
            parse_node_id(A),
            (("authorization", f"Bearer {TokenKey(b'x' * 32).issue(A, NOW, 60)[0]}"),),
        ),
    }
    for what, (identity, metadata) in refusals.items():
        with pytest.raises(PermissionError) as caught:
            check(identity, metadata, None)
        assert str(caught.value), what
    with pytest.raises(PermissionError, match=r"is for mesh/demo/virtualNode/a"):
        check(parse_node_id(B), bearer(A), None)
    assert (
        registry.get_sample_value(
            "meshplane_proxy_auth_refused_total", {"reason": "other_identity"}
        )
        == 2
    )


def test_optional_authentication_still_checks_a_token_that_is_sent() -> None:
    check = authorizer(required=False)
    check(parse_node_id(A), (), None)  # no token: let in
    check(parse_node_id(A), bearer(A), None)
    with pytest.raises(PermissionError):
        check(parse_node_id(B), bearer(A), None)


def test_bearer_tokens_are_found_in_grpc_metadata() -> None:
    assert bearer_token((("x", "y"), ("Authorization", b"Bearer abc "))) == "abc"
    assert bearer_token((("authorization", "Basic abc"),)) is None
    assert bearer_token(()) is None


async def test_a_proxy_with_a_token_for_another_node_gets_nothing_over_grpc() -> None:
    """Tier 2: the real ADS server with the authorizer; the stream of a client that claims B
    with A's token ends with PERMISSION_DENIED before any resource is sent."""
    cache = SnapshotCache()
    cache.set_snapshot(A, build.simple_snapshot("c1", ("127.0.0.1", 1), ("127.0.0.1", 2)))
    cache.set_snapshot(B, build.simple_snapshot("c1", ("127.0.0.1", 1), ("127.0.0.1", 2)))
    server = XdsServer(cache, authorize=authorizer(required=True))
    port = await server.start()
    # One request a stream, for clusters or for secrets: the stream is refused once its first
    # request is read, and a second write racing that refusal could fail in gRPC's core (the
    # client then ends the call as INTERNAL instead of with the server's status).
    refused = [
        (AdsClient(f"127.0.0.1:{port}", metadata=metadata), node, type_url)
        for metadata, node in ((bearer(A), B), ((), A))  # stolen, anonymous
        for type_url in (types.CLUSTER, types.SECRET)
    ]
    honest = AdsClient(f"127.0.0.1:{port}", metadata=bearer(A))
    try:
        for client, node, type_url in refused:
            await client.send(request(type_url, node=node))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.recv()
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert not client.received
        await honest.send(request(types.CLUSTER, node=A))
        assert names_of(await honest.recv())
    finally:
        for client in [*(client for client, _, _ in refused), honest]:
            await client.close()
        await server.stop(0)


def test_settings_require_proxy_auth_off_loopback() -> None:
    env: dict[str, str] = {}
    assert not Settings.load(data_dir=Path("/d"), env=env).xds.require_proxy_auth
    assert Settings.load(data_dir=Path("/d"), host="0.0.0.0", env=env).xds.require_proxy_auth
    assert Settings.load(data_dir=Path("/d"), host="::1", env=env).xds.require_proxy_auth is False
    assert Settings.load(
        data_dir=Path("/d"), require_proxy_auth=True, env=env
    ).xds.require_proxy_auth
    assert Settings.load(
        data_dir=Path("/d"), env={"MESHPLANE_REQUIRE_PROXY_AUTH": "1"}
    ).xds.require_proxy_auth
    identity = Settings.load(
        data_dir=Path("/d"),
        trust_domain="example.org",
        cert_lifetime="90m",
        cert_rotate_after=0.75,
        env=env,
    ).ca
    assert identity.trust_domain == "example.org"
    assert identity.cert_lifetime == parse_duration("5400")
    assert identity.rotate_after == 0.75
    with pytest.raises(ValueError):
        Settings.load(data_dir=Path("/d"), cert_lifetime="soon", env=env)
    with pytest.raises(ValueError):
        Settings.load(data_dir=Path("/d"), trust_domain="Bad Domain", env=env)


def test_proxy_tokens_and_the_ca_through_the_api(tmp_path: Path) -> None:
    server = MeshplaneServer(tmp_path / "data").start()
    try:
        server.boto3().create_mesh(meshName="demo")
        with httpx.Client(base_url=server.url, timeout=10) as http:
            made = http.post(
                "/meshplane/v1/proxy-tokens",
                json={"resource": "mesh/demo/virtualGateway/gw", "ttlSeconds": 60},
            )
            assert made.status_code == 200, made.text
            body = made.json()
            assert body["resource"] == "mesh/demo/virtualGateway/gw"
            key = TokenKey.load_or_create(tmp_path / "data" / "proxy-token.key")
            claims = key.verify(body["token"], int(__import__("time").time()))
            assert claims.subject == "mesh/demo/virtualGateway/gw"
            for payload, status in (
                ({"resource": "mesh/demo/virtualService/s"}, 400),
                ({"resource": "mesh/other/virtualNode/n"}, 404),
                ({"resource": "mesh/demo/virtualNode/n", "ttlSeconds": 0}, 400),
                ({"resource": "mesh/demo/virtualNode/n", "extra": 1}, 400),
            ):
                assert http.post("/meshplane/v1/proxy-tokens", json=payload).status_code == status
            ca = http.get("/meshplane/v1/meshes/demo/ca")
            assert ca.status_code == 200
            assert ca.json()["trustBundle"].count("BEGIN CERTIFICATE") == 1
            assert "PRIVATE" not in ca.text
            rotated = http.post("/meshplane/v1/meshes/demo/ca/rotate").json()
            assert rotated["trustBundle"].count("BEGIN CERTIFICATE") == 2
            assert [r["signing"] for r in rotated["roots"]] == [True, False]
            # a rotation asked for is audited like a scheduled one: who, which roots
            old, new = (r["serial"] for r in rotated["roots"])
            entries = http.get("/meshplane/v1/audit", params={"mesh": "demo"}).json()["entries"]
            audited = [e for e in entries if e["operation"] == "RotateMeshCa"]
            assert [e["resource"] for e in audited] == [f"mesh/demo/ca/{old}->{new}"], entries
            assert audited[0]["via"] == "api" and audited[0]["principal"], audited
            assert http.post("/meshplane/v1/meshes/nope/ca/rotate").status_code == 404
            assert http.get("/meshplane/v1/meshes/nope/ca").status_code == 404
    finally:
        server.stop()


def test_the_bootstrap_holding_the_token_is_private(tmp_path: Path) -> None:
    import stat

    from meshplane.proxy import BootstrapOptions, EnvoyOptions
    from meshplane.proxy.runner import prepare

    options = BootstrapOptions(resource=A, xds_token="secret-token")
    _, run_dir, _ = prepare(EnvoyOptions(options, binary="/bin/true", run_dir=str(tmp_path)))
    path = run_dir / "bootstrap.json"
    assert "secret-token" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
