"""Simulated Envoys for the convergence benchmark: many ADS streams in one asyncio process.

``python -m bench.convergence --simulator python`` runs it; the default simulator is
``bench/ads_clients.js``, the same client (same command line, protocol and behaviour) in
Node.js, which costs about a third of this one's CPU per pushed update on the machine the
server shares with it.

Each simulated proxy opens its own gRPC channel (its own TCP connection, as a real Envoy
has) and one ``StreamAggregatedResources`` stream with node id
``mesh/<mesh>/virtualNode/c<i>`` and the node metadata the meshplane bootstrap writes.  It
behaves like Envoy's state-of-the-world ADS client:

- requests CDS (wildcard) with the node; after the first CDS response, LDS (wildcard);
- on a CDS response, subscribes EDS to the ClusterLoadAssignments of its EDS clusters; on an
  LDS response, RDS to the route configurations its HTTP connection managers name (a request
  echoing the type's last version and nonce with the new names), then ACKs;
- ACKs every response: ``version_info`` and ``response_nonce`` echoed, same names.

It never NACKs.  What a response references is parsed once per version (versions are content
hashes, so equal versions mean equal content) to keep the simulator cheaper than the server.

Driven by ``bench.convergence`` over stdin/stdout, one JSON object a line:

- ``{"cmd": "connect", "start": i, "count": n, "burst": b}``: open streams
  ``c<i>``..``c<i+n-1>``, at most ``b`` of them connecting (not yet synced) at a time; answers
  when every stream has ACKed CDS, LDS and RDS and nothing arrived for a short quiet time;
- ``{"cmd": "converge", "t0": <time.monotonic()>}``: answers when every stream has ACKed a
  response received after ``t0`` and nothing arrived for the quiet time, with each stream's
  last ACK time (CLOCK_MONOTONIC is shared by the processes of one machine);
- ``{"cmd": "close"}``: cancel every stream, close the channels, exit.

Not part of the test suite.

    python -m bench.ads_clients --target 127.0.0.1:18000 --mesh bench
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError

from meshplane.xds import types

_HCM_URL = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_QUIET = 0.5
_CDS_NAMES: dict[str, tuple[str, ...]] = {}
_LDS_NAMES: dict[str, tuple[str, ...]] = {}


def eds_names(response: Any) -> tuple[str, ...]:
    names = _CDS_NAMES.get(response.version_info)
    if names is None:
        found = []
        for packed in response.resources:
            cluster = cluster_pb2.Cluster()
            packed.Unpack(cluster)
            if cluster.type == cluster_pb2.Cluster.EDS:
                found.append(cluster.eds_cluster_config.service_name or cluster.name)
        names = _CDS_NAMES[response.version_info] = tuple(sorted(found))
    return names


def rds_names(response: Any) -> tuple[str, ...]:
    names = _LDS_NAMES.get(response.version_info)
    if names is None:
        found = set()
        for packed in response.resources:
            listener = listener_pb2.Listener()
            packed.Unpack(listener)
            for chain in listener.filter_chains:
                for network_filter in chain.filters:
                    if network_filter.typed_config.type_url == _HCM_URL:
                        manager = hcm_pb2.HttpConnectionManager()
                        network_filter.typed_config.Unpack(manager)
                        if manager.HasField("rds"):
                            found.add(manager.rds.route_config_name)
        names = _LDS_NAMES[response.version_info] = tuple(sorted(found))
    return names


class Proxy:
    """One simulated Envoy: a channel, an ADS stream and its per-type state."""

    def __init__(self, target: str, mesh: str, index: int) -> None:
        self.node_id = f"mesh/{mesh}/virtualNode/c{index}"
        self.index = index
        # a local subchannel pool: every proxy gets its own connection, as real Envoys do
        self.channel = grpc.aio.insecure_channel(
            target, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.names: dict[str, tuple[str, ...]] = {}
        self.versions: dict[str, str] = {}
        self.nonces: dict[str, str] = {}
        self.acked_types: set[str] = set()
        self.last_ack = 0.0
        self.last_response = 0.0
        self.acks = 0
        self.error: str | None = None
        self.task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()

    def node(self) -> Any:
        request = discovery_pb2.DiscoveryRequest()
        node = request.node
        node.id = self.node_id
        node.cluster = self.node_id
        node.user_agent_name = "envoy"
        node.user_agent_build_version.version.major_number = 1
        node.user_agent_build_version.version.minor_number = 40
        address = f"127.{1 + self.index // 62500}.{self.index // 250 % 250}.{self.index % 250 + 2}"
        meta = struct_pb2.Struct()
        meta.update(
            {
                "meshplane": {
                    "workload_address": address,
                    "app_port": None,
                    "egress_port": 15001,
                    "resource": self.node_id,
                }
            }
        )
        node.metadata.CopyFrom(meta)
        return request

    def _request(self, type_url: str) -> discovery_pb2.DiscoveryRequest:
        return discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            version_info=self.versions.get(type_url, ""),
            response_nonce=self.nonces.get(type_url, ""),
            resource_names=list(self.names.get(type_url, ())),
        )

    async def _requests(self) -> Any:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            yield item

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        first = self.node()
        first.type_url = types.CLUSTER
        self._queue.put_nowait(first)
        call = self.stub.StreamAggregatedResources(self._requests())
        try:
            async for response in call:
                try:
                    self.on_response(response)
                except DecodeError as error:
                    self.error = (
                        f"malformed resource in {response.type_url} {response.version_info}: "
                        f"{error}"
                    )
                    call.cancel()
                    return
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as error:
            self.error = f"{error.code().name}: {error.details()} ({error.debug_error_string()})"
        else:
            self.error = "stream ended"

    def on_response(self, response: Any) -> None:
        type_url = response.type_url
        self.last_response = time.monotonic()
        first_cds = type_url == types.CLUSTER and types.CLUSTER not in self.versions
        follow: tuple[str, tuple[str, ...]] | None = None
        if type_url == types.CLUSTER:
            follow = (types.ENDPOINT, eds_names(response))
        elif type_url == types.LISTENER:
            follow = (types.ROUTE, rds_names(response))
        if follow is not None and follow[1] != self.names.get(follow[0], ()):
            self.names[follow[0]] = follow[1]
            self._queue.put_nowait(self._request(follow[0]))
        self.versions[type_url] = response.version_info
        self.nonces[type_url] = response.nonce
        self._queue.put_nowait(self._request(type_url))  # the ACK
        self.acked_types.add(type_url)
        self.acks += 1
        self.last_ack = time.monotonic()
        if first_cds:
            self._queue.put_nowait(self._request(types.LISTENER))

    @property
    def synced(self) -> bool:
        return {types.CLUSTER, types.LISTENER, types.ROUTE} <= self.acked_types

    async def close(self) -> None:
        self._queue.put_nowait(None)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        await self.channel.close()


class Fleet:
    def __init__(self, target: str, mesh: str) -> None:
        self.target = target
        self.mesh = mesh
        self.proxies: list[Proxy] = []

    async def connect(self, start: int, count: int, burst: int, timeout: float) -> dict[str, Any]:
        """Open streams, at most ``burst`` of them not yet synced at any time."""
        began = time.monotonic()
        fresh = [Proxy(self.target, self.mesh, i) for i in range(start, start + count)]
        self.proxies.extend(fresh)
        opening: list[Proxy] = []
        for proxy in fresh:
            while len(opening) >= burst:
                await asyncio.sleep(0.01)
                opening = [p for p in opening if not p.synced and p.error is None]
                if time.monotonic() - began > timeout:
                    raise TimeoutError(f"{len(opening)} streams did not sync while connecting")
            proxy.start()
            opening.append(proxy)
        await self._until(lambda p: p.synced, began, timeout)
        done = max(p.last_ack for p in fresh)
        return {"seconds": done - began, "proxies": len(self.proxies)}

    async def converge(self, t0: float, timeout: float) -> dict[str, Any]:
        await self._until(lambda p: p.last_ack >= t0, t0, timeout)
        return {"acks": [p.last_ack - t0 for p in self.proxies]}

    async def _until(self, done: Any, since: float, timeout: float) -> None:
        deadline = since + timeout
        while True:
            now = time.monotonic()
            failed = [p for p in self.proxies if p.error is not None]
            if failed:
                raise RuntimeError(
                    f"{len(failed)} streams failed, e.g. {failed[0].node_id}: {failed[0].error}"
                )
            if now > deadline:
                waiting = sum(1 for p in self.proxies if not done(p))
                raise TimeoutError(f"{waiting} of {len(self.proxies)} proxies not done")
            latest = max((p.last_response for p in self.proxies), default=0.0)
            if all(done(p) for p in self.proxies) and now - latest >= _QUIET:
                return
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.proxies))


async def answer(fleet: Fleet, line: str) -> dict[str, Any] | None:
    """The answer to one command line; ``None`` for ``close``."""
    try:
        command = json.loads(line)
    except ValueError as error:
        return {"error": f"not a JSON command: {error}"}
    if not isinstance(command, dict):
        return {"error": "not a JSON command: a command is an object"}
    cmd = command.get("cmd")
    numbers = {"connect": ("start", "count"), "converge": ("t0",)}.get(cmd, ())
    wrong = [k for k in numbers if not isinstance(command.get(k), (int, float))]
    if wrong:
        return {"error": f"{cmd} needs numbers {', '.join(numbers)} (wrong: {', '.join(wrong)})"}
    try:
        if cmd == "connect":
            return await fleet.connect(
                command["start"],
                command["count"],
                command.get("burst", 1_000_000),
                command.get("timeout", 600),
            )
        if cmd == "converge":
            return await fleet.converge(command["t0"], command.get("timeout", 600))
        if cmd == "close":
            return None
        return {"error": f"unknown command {cmd!r}"}
    except (RuntimeError, TimeoutError) as error:
        return {"error": str(error)}


async def serve(target: str, mesh: str) -> None:
    loop = asyncio.get_running_loop()
    fleet = Fleet(target, mesh)
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            reply = await answer(fleet, line)
            if reply is None:
                return
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        await fleet.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the ADS server")
    parser.add_argument("--mesh", default="bench")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(args.target, args.mesh))


if __name__ == "__main__":
    main()
