"""The convergence benchmark's simulated Envoys send what Envoy's ADS client sends.

Both simulators (``bench/ads_clients.js``, the default, whose protobuf encoding and decoding
are written by hand, and ``bench.ads_clients`` in Python) are driven over their stdin/stdout
protocol against a scripted grpc.aio ADS server in this test.  The server serves real Envoy
messages (Clusters, Listeners with HTTP connection managers, ClusterLoadAssignments,
RouteConfigurations, serialized by protobuf) and records every DiscoveryRequest, which is
compared, parsed by the real protobuf classes, with what an Envoy would send: the node (id,
cluster, user agent, the bootstrap's metadata), wildcard CDS then LDS, EDS/RDS subscriptions
following what the served clusters and listeners name, and every response ACKed with its
version and nonce.  No timing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, struct_pb2
from google.protobuf.message import Message

from bench.convergence import SIMULATORS, simulator_command
from meshplane.xds import types
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
MESH = "m"
FIRST = 62_751  # node c62751: workload address 127.2.1.3 (the bootstrap's formula)


def packed(message: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


def response(type_url: str, version: str, nonce: str, resources: list[Message]) -> Any:
    return discovery_pb2.DiscoveryResponse(
        type_url=type_url,
        version_info=version,
        nonce=nonce,
        resources=[packed(r) for r in resources],
    )


def eds_cluster(name: str, service_name: str = "") -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.service_name = service_name
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    return cluster


def clusters_v1() -> list[Message]:
    """EDS clusters ``b`` (service ``svc-b``) and ``a`` (no service name: its own name), a
    static cluster and a custom-type one: EDS names ``a``, ``svc-b``."""
    custom = cluster_pb2.Cluster(name="x")
    custom.cluster_type.name = "envoy.clusters.aggregate"
    return [
        eds_cluster("b", "svc-b"),
        eds_cluster("a"),
        cluster_pb2.Cluster(name="s", type=cluster_pb2.Cluster.STATIC),
        custom,
    ]


def manager(route_name: str | None) -> listener_components_pb2.Filter:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="egress")
    if route_name is None:
        hcm.route_config.name = "inline"
    else:
        hcm.rds.route_config_name = route_name
        hcm.rds.config_source.ads.SetInParent()
    return listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=packed(hcm)
    )


def listeners_v1() -> list[Message]:
    """HTTP connection managers naming routes ``r2`` and ``r1`` (twice), one with an inline
    route configuration and a TCP proxy: RDS names ``r1``, ``r2``."""
    tcp = listener_components_pb2.Filter(
        name="envoy.filters.network.tcp_proxy",
        typed_config=packed(tcp_proxy_pb2.TcpProxy(stat_prefix="tcp", cluster="s")),
    )
    egress = listener_pb2.Listener(
        name="egress",
        filter_chains=[
            listener_components_pb2.FilterChain(filters=[manager("r2")]),
            listener_components_pb2.FilterChain(filters=[tcp, manager("r1")]),
            listener_components_pb2.FilterChain(filters=[manager(None)]),
        ],
    )
    ingress = listener_pb2.Listener(
        name="ingress", filter_chains=[listener_components_pb2.FilterChain(filters=[manager("r1")])]
    )
    return [egress, ingress]


class ScriptedAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """Serves every stream the same script and records its requests by node id.  ``fault``
    answers the first request otherwise: ``deny`` (PERMISSION_DENIED), ``malformed`` (a
    Cluster that does not parse), ``oversized`` (a 5 MB response, over gRPC's 4 MB default),
    ``silent`` (nothing, ever)."""

    def __init__(self, fault: str | None = None) -> None:
        self.fault = fault
        self.requests: dict[str, list[Any]] = {}
        self.push = asyncio.Event()

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> None:
        got: list[Any] = []

        async def read(count: int) -> None:
            for _ in range(count):
                got.append(await anext(request_iterator))

        await read(1)
        self.requests[got[0].node.id] = got
        if self.fault == "deny":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "denied by the test")
        elif self.fault in ("malformed", "oversized"):
            value = b"\xff\xff" if self.fault == "malformed" else b"\n" * (5 << 20)
            broken = any_pb2.Any(type_url=types.CLUSTER, value=value)
            await context.write(
                discovery_pb2.DiscoveryResponse(
                    type_url=types.CLUSTER, version_info="c1", nonce="n1", resources=[broken]
                )
            )
        if self.fault is not None:
            async for request in request_iterator:
                got.append(request)
            return
        await context.write(response(types.CLUSTER, "c1", "n1", clusters_v1()))
        await read(3)  # EDS subscription, CDS ACK, LDS request
        await context.write(response(types.LISTENER, "l1", "n2", listeners_v1()))
        await read(2)  # RDS subscription, LDS ACK
        assignments = [endpoint_pb2.ClusterLoadAssignment(cluster_name=n) for n in ("a", "svc-b")]
        await context.write(response(types.ENDPOINT, "e1", "n3", assignments))
        await read(1)
        routes = [route_pb2.RouteConfiguration(name=n) for n in ("r1", "r2")]
        await context.write(response(types.ROUTE, "r1v", "n4", routes))
        await read(1)
        await self.push.wait()  # the converge part: a write after t0
        # the same EDS names in a new version: only an ACK
        same = [*clusters_v1(), cluster_pb2.Cluster(name="t", type=cluster_pb2.Cluster.STATIC)]
        await context.write(response(types.CLUSTER, "c2", "n5", same))
        await read(1)
        # other EDS names: a subscription (the EDS type's last version and nonce), then the ACK
        changed = [eds_cluster("a"), eds_cluster("c", "svc-c")]
        await context.write(response(types.CLUSTER, "c3", "n6", changed))
        async for request in request_iterator:  # and anything else it sends, until it closes
            got.append(request)


def expected_node(index: int) -> base_pb2.Node:
    node_id = f"mesh/{MESH}/virtualNode/c{index}"
    node = base_pb2.Node(id=node_id, cluster=node_id, user_agent_name="envoy")
    node.user_agent_build_version.version.major_number = 1
    node.user_agent_build_version.version.minor_number = 40
    metadata = struct_pb2.Struct()
    metadata.update(
        {
            "meshplane": {
                "workload_address": f"127.{1 + index // 62500}.{index // 250 % 250}.{index % 250 + 2}",
                "app_port": None,
                "egress_port": 15001,
                "resource": node_id,
            }
        }
    )
    node.metadata.CopyFrom(metadata)
    return node


def request(type_url: str, version: str = "", nonce: str = "", names: tuple[str, ...] = ()) -> Any:
    return discovery_pb2.DiscoveryRequest(
        type_url=type_url, version_info=version, response_nonce=nonce, resource_names=names
    )


def expected_requests(index: int) -> list[Any]:
    first = request(types.CLUSTER)
    first.node.CopyFrom(expected_node(index))
    return [
        first,
        request(types.ENDPOINT, names=("a", "svc-b")),
        request(types.CLUSTER, "c1", "n1"),
        request(types.LISTENER),
        request(types.ROUTE, names=("r1", "r2")),
        request(types.LISTENER, "l1", "n2"),
        request(types.ENDPOINT, "e1", "n3", ("a", "svc-b")),
        request(types.ROUTE, "r1v", "n4", ("r1", "r2")),
        request(types.CLUSTER, "c2", "n5"),
        request(types.ENDPOINT, "e1", "n3", ("a", "svc-c")),
        request(types.CLUSTER, "c3", "n6"),
    ]


class Simulator:
    """One simulator process and its JSON-line protocol."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, simulator: str, port: int) -> Simulator:
        command = simulator_command(simulator)
        process = await asyncio.create_subprocess_exec(
            *command,
            "--target",
            f"127.0.0.1:{port}",
            "--mesh",
            MESH,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 120)
        assert line, f"the simulator exited ({await self.process.wait()})"
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def close(self) -> int:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.write(b'{"cmd": "close"}\n')
            await self.process.stdin.drain()
        return await asyncio.wait_for(self.process.wait(), 60)


async def serve(servicer: ScriptedAds) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


@pytest.mark.parametrize("simulator", SIMULATORS)
async def test_simulator_requests_are_envoys(simulator: str) -> None:
    servicer = ScriptedAds()
    server, port = await serve(servicer)
    clients = await Simulator.start(simulator, port)
    try:
        connected = await clients.ask({"cmd": "connect", "start": FIRST, "count": 2, "burst": 1})
        assert set(connected) == {"seconds", "proxies"}, connected
        assert connected["proxies"] == 2
        t0 = time.monotonic()
        servicer.push.set()
        converged = await clients.ask({"cmd": "converge", "t0": t0})
        # every stream ACKed after t0, on the same clock (an epoch or another clock would be
        # far outside [0, the command's 600 s timeout])
        assert len(converged["acks"]) == 2
        assert all(0 <= ack < 600 for ack in converged["acks"]), converged
        unknown = await clients.ask({"cmd": "rewind"})
        assert unknown == {"error": "unknown command 'rewind'"}
        assert clients.process.stdin is not None and clients.process.stdout is not None
        clients.process.stdin.write(b"{not json\n")
        garbled = json.loads(await asyncio.wait_for(clients.process.stdout.readline(), 60))
        assert garbled["error"].startswith("not a JSON command: "), garbled
        assert await clients.ask({"cmd": "converge"}) == {
            "error": "converge needs numbers t0 (wrong: t0)"
        }
        assert await clients.ask({"cmd": "connect", "start": "0"}) == {
            "error": "connect needs numbers start, count (wrong: start, count)"
        }
    finally:
        code = await clients.close()
        await server.stop(None)
    assert code == 0
    assert sorted(servicer.requests) == [
        f"mesh/{MESH}/virtualNode/c{i}" for i in (FIRST, FIRST + 1)
    ]
    for i in (FIRST, FIRST + 1):
        got = servicer.requests[f"mesh/{MESH}/virtualNode/c{i}"]
        assert got == expected_requests(i), "\n".join(f"{r}" for r in got)
    address = servicer.requests[f"mesh/{MESH}/virtualNode/c{FIRST}"][0].node.metadata
    assert address.fields["meshplane"].struct_value.fields["workload_address"].string_value == (
        "127.2.1.3"
    )


FAULTS = {
    "deny": ": PERMISSION_DENIED: denied by the test (",
    "malformed": f": malformed resource in {types.CLUSTER} c1: ",
    "oversized": ": RESOURCE_EXHAUSTED: ",
}


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("fault", [*FAULTS, "silent"])
async def test_simulator_reports_a_failed_stream(simulator: str, fault: str) -> None:
    """A refused stream, a response that does not parse, one over the size limit: the stream
    fails and the command answers which; a server that never answers: the command times out."""
    servicer = ScriptedAds(fault)
    server, port = await serve(servicer)
    clients = await Simulator.start(simulator, port)
    try:
        answer = await clients.ask({"cmd": "connect", "start": 0, "count": 1, "timeout": 1})
    finally:
        code = await clients.close()
        await server.stop(None)
    assert code == 0
    if fault == "silent":
        assert answer == {"error": "1 of 1 proxies not done"}
    else:
        assert answer["error"].startswith(
            f"1 streams failed, e.g. mesh/{MESH}/virtualNode/c0{FAULTS[fault]}"
        ), answer


def test_node_simulator_missing_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import bench.convergence

    monkeypatch.setattr(bench.convergence, "ROOT", tmp_path)  # no bench/node_modules there
    with pytest.raises(
        RuntimeError,
        match=r"bench/node_modules/@grpc/grpc-js is missing\): run `bash scripts/setup-venv --with-bench`",
    ):
        simulator_command("node")
    monkeypatch.setenv("PATH", str(tmp_path))  # no node on PATH
    with pytest.raises(
        RuntimeError,
        match=r"`node` is not on PATH\): install it, then run `bash scripts/setup-venv --with-bench`",
    ):
        simulator_command("node")
    assert simulator_command("python")[1:] == ["-m", "bench.ads_clients"]
