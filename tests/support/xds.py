"""Builders of small, valid Envoy resources for xDS tests (real protobuf messages).

``eds_cluster``/``endpoints``/``http_listener``/``route_config`` make the pieces of the usual
chain: listener -> HCM (RDS over ADS) -> route configuration -> EDS cluster -> endpoints.
``simple_snapshot`` puts one such chain together.

Used by the xDS in-process and real-Envoy tests.
"""

from __future__ import annotations

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
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from meshplane.xds import Snapshot


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
