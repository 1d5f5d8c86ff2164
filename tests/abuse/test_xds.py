"""xDS abuse (findings 1, 3's xDS half and 7): huge messages, before and after
authentication, silent streams, stream floods from one peer, and streams naming meshes
that do not exist — while a concurrent client's /healthz and API calls keep being answered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import httpx
import pytest

from tests.abuse.conftest import Healthy
from tests.support.attacks import ads_call, discovery_request
from tests.support.health import HealthWatch, rss_bytes
from tests.support.server import MeshplaneServer

MB = 1_000_000


@pytest.fixture(scope="module")
def open_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshplaneServer]:
    """A loopback server without proxy authentication (anyone on loopback may stream), with
    small xDS limits so that passing them is quick."""
    srv = MeshplaneServer(
        tmp_path_factory.mktemp("abuse-xds") / "data",
        env={
            "MESHPLANE_XDS_FIRST_REQUEST_TIMEOUT": "1s",
            "MESHPLANE_XDS_STREAMS_PER_PEER": "40",
        },
    ).start(timeout=120)
    try:
        yield srv
    finally:
        srv.stop()


def xds(server: MeshplaneServer) -> str:
    return f"127.0.0.1:{server.xds_port}"


def proxy_token(server: MeshplaneServer, mesh: str, node: str) -> str:
    httpx.put(f"{server.url}/v20190125/meshes", json={"meshName": mesh}, timeout=30)
    answer = httpx.post(
        f"{server.url}/meshplane/v1/proxy-tokens",
        json={"resource": f"mesh/{mesh}/virtualNode/{node}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


def test_a_60_mb_node_metadata_is_refused_before_anything_is_read(
    target: MeshplaneServer, healthy: Healthy
) -> None:
    huge = discovery_request("mesh/m/virtualNode/n", 60 * MB)
    medium = discovery_request("mesh/m/virtualNode/n", int(6.5 * MB))

    async def attack() -> list[tuple[grpc.StatusCode, str]]:
        one = await ads_call(xds(target), [huge])
        ten = await asyncio.gather(*(ads_call(xds(target), [medium]) for _ in range(10)))
        return [one, *ten]

    with healthy() as watch:
        before = rss_bytes(watch.pid)
        ends = asyncio.run(attack())
    for code, details in ends:
        # the refusal may reach a client still writing 60 MB only as a reset stream
        assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INTERNAL), code
        assert code is grpc.StatusCode.INTERNAL or "no proxy token" in details, details
    assert target.log().count("refused an ADS stream before reading it") >= len(ends)
    # nothing of the 125 MB sent was parsed: the server did not grow by anything like it
    assert watch.peak_rss - before < 100 * MB, (before, watch.peak_rss)


def test_an_authenticated_proxy_cannot_send_more_than_a_real_envoy(
    target: MeshplaneServer, healthy: Healthy
) -> None:
    token = proxy_token(target, "big", "n")
    node = "mesh/big/virtualNode/n"

    async def attack() -> list[tuple[grpc.StatusCode, str]]:
        return [
            await ads_call(xds(target), [discovery_request(node, 60 * MB)], token=token),
            await ads_call(xds(target), [discovery_request(node, 3 * MB)], token=token),
            await ads_call(xds(target), [b"\xff\xff\xff not a protobuf"], token=token),
        ]

    with healthy():
        too_big, big_metadata, garbage = asyncio.run(attack())
    assert too_big[0] is grpc.StatusCode.RESOURCE_EXHAUSTED, too_big
    assert big_metadata[0] is grpc.StatusCode.INVALID_ARGUMENT, big_metadata
    assert "node.metadata is" in big_metadata[1] and "65536" in big_metadata[1]
    assert garbage[0] is grpc.StatusCode.INVALID_ARGUMENT, garbage
    assert "not a valid message" in garbage[1]
    # a well-behaved proxy of the same identity still gets its stream
    ok = asyncio.run(ads_call(xds(target), [discovery_request(node)], token=token, hold=1.0))
    assert ok[0] is grpc.StatusCode.OK, ok


def test_a_stream_that_never_sends_is_closed(open_target: MeshplaneServer) -> None:
    code, details = asyncio.run(ads_call(xds(open_target), [], wait=30))
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED, (code, details)
    assert "no request within 1 s" in details


def test_one_peer_cannot_open_more_streams_than_its_limit(open_target: MeshplaneServer) -> None:
    def open_streams() -> int:
        url = f"{open_target.url}/meshplane/v1/proxies"
        answer = httpx.get(url, params={"mesh": "limited"}, timeout=30)
        return len(answer.json()["proxies"])

    async def attack() -> tuple[list[tuple[grpc.StatusCode, str]], ...]:
        request = discovery_request("mesh/limited/virtualNode/n")
        # the limit's worth of streams at once, each sending a request and held open
        held = asyncio.gather(
            *(ads_call(xds(open_target), [request], hold=10.0) for _ in range(40))
        )
        for _ in range(600):
            if await asyncio.to_thread(open_streams) == 40 or held.done():
                break
            await asyncio.sleep(0.05)
        # Five more, refused from the stream alone, before any request is read; they send none,
        # as a write racing that refusal ends the call as INTERNAL in grpcio's aio client.
        over = await asyncio.gather(*(ads_call(xds(open_target), []) for _ in range(5)))
        return await held, over

    kept, refused = asyncio.run(attack())
    assert all(code is grpc.StatusCode.OK for code, _ in kept), kept
    assert all(code is grpc.StatusCode.RESOURCE_EXHAUSTED for code, _ in refused), refused
    assert "40 open ADS streams (the limit)" in refused[0][1]


def test_streams_naming_meshes_that_do_not_exist_leave_nothing_behind(
    open_target: MeshplaneServer,
) -> None:
    assert open_target.process is not None
    pid = open_target.process.pid

    async def wave(start: int) -> None:
        await asyncio.gather(
            *(
                ads_call(
                    xds(open_target),
                    [discovery_request(f"mesh/ghost-{start + i}/virtualNode/n")],
                    hold=0.3,
                )
                for i in range(30)
            )
        )

    async def attack(waves: range) -> None:
        for n in waves:
            await wave(n * 30)

    asyncio.run(attack(range(3)))  # warm up: allocator pools, code paths
    before = rss_bytes(pid)
    with HealthWatch(open_target.url, pid) as watch:
        asyncio.run(attack(range(3, 23)))  # 600 made-up meshes
    assert not watch.problems(), watch.problems()
    metrics = httpx.get(f"{open_target.url}/metrics", timeout=30).text
    views = [line for line in metrics.splitlines() if line.startswith("meshplane_mesh_views ")]
    assert views == ["meshplane_mesh_views 0.0"], views
    assert rss_bytes(pid) - before < 30 * MB, (before, rss_bytes(pid))
