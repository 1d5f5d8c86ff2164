"""Builders of small, valid Envoy resources for xDS tests (real protobuf messages).

``eds_cluster``/``endpoints``/``http_listener``/``route_config`` make the pieces of the usual
chain: listener -> HCM (RDS over ADS) -> route configuration -> EDS cluster -> endpoints.
``simple_snapshot`` puts one such chain together.

``AdsClient`` plays Envoy on a real gRPC stream for the in-process (tier 2) tests;
``connection`` is the ``ProxyConnection`` a producer (the control loop) sees for one stream.

Used by the xDS in-process and real-Envoy tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from meshplane.xds import ProxyConnection, Snapshot, parse_node_id, types


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def eds_cluster(name: str, *, connect_timeout: float = 1.0) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads()),
        connect_timeout=duration_pb2.Duration(
            nanos=int(connect_timeout * 1e9) % 10**9, seconds=int(connect_timeout)
        ),
    )


def endpoints(name: str, *addresses: tuple[str, int]) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=address_pb2.Address(
                                socket_address=address_pb2.SocketAddress(
                                    address=host, port_value=port
                                )
                            )
                        )
                    )
                    for host, port in addresses
                ]
            )
        ],
    )


def http_listener(
    name: str, host: str, port: int, route_name: str, *, stat_prefix: str = "ingress"
) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        rds=hcm_pb2.Rds(config_source=_ads(), route_config_name=route_name),
        http_filters=[
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.router", typed_config=_pack(router_pb2.Router())
            )
        ],
    )
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=host, port_value=port)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=_pack(manager),
                    )
                ]
            )
        ],
    )


def route_config(name: str, cluster: str | dict[str, int]) -> route_pb2.RouteConfiguration:
    if isinstance(cluster, str):
        action = route_components_pb2.RouteAction(cluster=cluster)
    else:
        action = route_components_pb2.RouteAction(
            weighted_clusters=route_components_pb2.WeightedCluster(
                clusters=[
                    route_components_pb2.WeightedCluster.ClusterWeight(
                        name=n, weight=wrappers_pb2.UInt32Value(value=w)
                    )
                    for n, w in cluster.items()
                ]
            )
        )
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="all",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix="/"), route=action
                    )
                ],
            )
        ],
    )


def secret(name: str) -> secret_pb2.Secret:
    return secret_pb2.Secret(name=name)


def simple_snapshot(
    cluster: str,
    upstream: tuple[str, int],
    listen: tuple[str, int],
    *,
    listener: str = "lds_ingress",
    route: str = "rds_ingress",
) -> Snapshot:
    """listener -> route -> ``cluster`` -> ``upstream``."""
    return Snapshot(
        [
            eds_cluster(cluster),
            endpoints(cluster, upstream),
            http_listener(listener, *listen, route),
            route_config(route, cluster),
        ]
    )


class AdsClient:
    """A scripted ADS client (plays Envoy) over a real gRPC channel, for in-process tests.

    Responses are collected by a background task; :meth:`recv` waits for the next one and
    :meth:`quiet` asserts none arrives for a while.
    """

    def __init__(
        self, target: str, *, delta: bool = False, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        method = stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources
        self.call = method(metadata=metadata or None)
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self.received: list[Any] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            response = await self.call.read()
            if response is grpc.aio.EOF:
                return
            self.received.append(response)
            self.responses.put_nowait(response)

    async def send(self, request: Any) -> None:
        try:
            await self.call.write(request)
        except grpc.aio.AioRpcError:
            # The server may end a call before reading any message (it refuses a stream from
            # its metadata); the write then fails in gRPC's core, and the call's own status,
            # which the reader task reports (recv, end_code), is the answer to look at.
            await asyncio.wait({self._reader}, timeout=10)
            if not self._reader.done():
                raise

    async def recv(self, timeout: float = 5.0) -> Any:
        getter = asyncio.ensure_future(self.responses.get())
        done, _ = await asyncio.wait(
            {getter, self._reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._reader in done:
            self._reader.result()  # raises the RPC error
            raise AssertionError("stream ended")
        raise AssertionError(f"no response within {timeout}s")

    async def quiet(self, seconds: float = 0.5) -> None:
        """Assert that no response arrives within ``seconds``."""
        try:
            response = await asyncio.wait_for(self.responses.get(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected response: {response}")

    @property
    def ended(self) -> bool:
        """The server ended the stream (or it failed)."""
        return self._reader.done()

    async def end_code(self, timeout: float = 10.0) -> grpc.StatusCode:
        """Wait for the server to end the stream; its status code."""
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        await self.channel.close()


def request(
    type_url: str,
    names: list[str] | tuple[str, ...] = (),
    *,
    version: str = "",
    nonce: str = "",
    node: str | None = None,
    error: str | None = None,
) -> discovery_pb2.DiscoveryRequest:
    """A state-of-the-world request (with ``node`` only when given)."""
    req = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=list(names), version_info=version, response_nonce=nonce
    )
    if node is not None:
        req.node.id = node
    if error is not None:
        req.error_detail.code = 3
        req.error_detail.message = error
    return req


def ack(response: Any, names: list[str] | tuple[str, ...] = ()) -> discovery_pb2.DiscoveryRequest:
    """The ACK of a state-of-the-world response."""
    return request(response.type_url, names, version=response.version_info, nonce=response.nonce)


def delta_request(
    type_url: str,
    subscribe: list[str] | tuple[str, ...] = (),
    unsubscribe: list[str] | tuple[str, ...] = (),
    *,
    nonce: str = "",
    node: str | None = None,
    error: str | None = None,
    initial: dict[str, str] | None = None,
) -> discovery_pb2.DeltaDiscoveryRequest:
    req = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe),
        response_nonce=nonce,
        initial_resource_versions=initial or {},
    )
    if node is not None:
        req.node.id = node
    if error is not None:
        req.error_detail.code = 3
        req.error_detail.message = error
    return req


def names_of(response: Any) -> list[str]:
    """Names of the resources in a SotW or delta response."""
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return sorted(r.name for r in response.resources)
    out = []
    for packed in response.resources:
        message = _MESSAGES[packed.type_url]()
        packed.Unpack(message)
        out.append(message.cluster_name if packed.type_url == types.ENDPOINT else message.name)
    return sorted(out)


_MESSAGES: dict[str, Any] = {
    types.CLUSTER: cluster_pb2.Cluster,
    types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    types.LISTENER: listener_pb2.Listener,
    types.ROUTE: route_pb2.RouteConfiguration,
    types.SECRET: secret_pb2.Secret,
}


def connection(
    stream_id: int, node: str, metadata: dict[str, Any] | None = None
) -> ProxyConnection:
    """The connection of ADS stream ``stream_id`` of proxy ``node`` (its node id), as the xDS
    server hands it to the producer."""
    return ProxyConnection(
        stream_id=stream_id,
        node_id=node,
        identity=parse_node_id(node),
        cluster=node,
        peer="test",
        connected_since=datetime.now(UTC),
        kind="sotw",
        metadata=metadata or {},
    )
