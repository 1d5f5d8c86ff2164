"""Tier 1: resources (serialized once, content-hash versions, references), snapshots, cache."""

from __future__ import annotations

import threading

import pytest
from envoy.config.core.v3 import config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import any_pb2

from meshplane.xds import Resource, ResourceError, Snapshot, SnapshotCache, SnapshotError, types
from tests.support import xds as build


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def test_resource_is_serialized_once_and_versioned_by_content() -> None:
    a = Resource.of(build.eds_cluster("c1"))
    assert a.type_url == types.CLUSTER and a.name == "c1"
    assert a.body == build.eds_cluster("c1").SerializeToString(deterministic=True)
    assert Resource.of(build.eds_cluster("c1")).version == a.version
    assert Resource.of(build.eds_cluster("c1", connect_timeout=2)).version != a.version
    packed = a.as_any()
    assert packed.type_url == types.CLUSTER and packed.value == a.body


def test_resource_names_and_errors() -> None:
    assert Resource.of(build.endpoints("c1", ("127.0.0.1", 80))).name == "c1"
    with pytest.raises(ResourceError):
        Resource.of(config_source_pb2.ConfigSource())
    with pytest.raises(ResourceError):
        Resource.of(build.eds_cluster(""))


def test_references() -> None:
    cluster = build.eds_cluster("c1")
    assert Resource.of(cluster).refs == {(types.ENDPOINT, "c1")}
    cluster.eds_cluster_config.service_name = "svc"
    tls = tls_pb2.UpstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[
                secret_pb2.SdsSecretConfig(name="cert", sds_config=build._ads()),
                secret_pb2.SdsSecretConfig(name="file-cert"),  # not over ADS
            ],
            validation_context_sds_secret_config=secret_pb2.SdsSecretConfig(
                name="ca", sds_config=build._ads()
            ),
        )
    )
    cluster.transport_socket.name = "envoy.transport_sockets.tls"
    cluster.transport_socket.typed_config.CopyFrom(_pack(tls))
    assert Resource.of(cluster).refs == {
        (types.ENDPOINT, "svc"),
        (types.SECRET, "cert"),
        (types.SECRET, "ca"),
    }
    listener = build.http_listener("l", "127.0.0.1", 80, "routes")
    tcp = tcp_proxy_pb2.TcpProxy(stat_prefix="tcp", cluster="tcp-backend")
    listener.filter_chains.append(
        listener_components_pb2.FilterChain(
            filters=[listener_components_pb2.Filter(name="tcp", typed_config=_pack(tcp))]
        )
    )
    assert Resource.of(listener).refs == {(types.ROUTE, "routes"), (types.CLUSTER, "tcp-backend")}
    route = build.route_config("routes", {"a": 90, "b": 10})
    route.virtual_hosts[0].routes[0].route.request_mirror_policies.add(cluster="shadow")
    assert set(Resource.of(route).refs_of(types.CLUSTER)) == {"a", "b", "shadow"}


def test_snapshot_shares_resources_and_checks_consistency() -> None:
    shared = Resource.of(build.eds_cluster("c1"))
    snapshots = [
        Snapshot([shared, build.endpoints("c1", ("127.0.0.1", 80 + i))]) for i in range(100)
    ]
    assert all(s.get(types.CLUSTER)["c1"] is shared for s in snapshots)
    assert len({s.version(types.CLUSTER) for s in snapshots}) == 1
    assert len({s.version(types.ENDPOINT) for s in snapshots}) == 100
    snapshots[0].consistent()
    assert snapshots[0].users((types.ENDPOINT, "c1")) == {"c1"}

    with pytest.raises(SnapshotError, match="duplicate cds resource 'c1'"):
        Snapshot([shared, build.eds_cluster("c1")])

    broken = Snapshot(
        [
            build.eds_cluster("c1"),
            build.http_listener("l", "127.0.0.1", 80, "routes"),
        ]
    )
    with pytest.raises(SnapshotError) as caught:
        broken.consistent()
    assert "missing eds 'c1'" in caught.value.message
    assert "missing rds 'routes'" in caught.value.message
    assert len(broken) == 2 and "cds=1" in repr(broken)


def test_cache_keys_watchers_and_threads() -> None:
    cache = SnapshotCache()
    calls: list[str] = []
    unwatch = cache.watch("mesh/m/virtualNode/a", lambda: calls.append("a"))
    snapshot = Snapshot([build.eds_cluster("c1")])
    cache.set_snapshot("arn:aws:appmesh:us-east-1:1:mesh/m/virtualNode/a", snapshot)
    assert cache.get("mesh/m/virtualNode/a") is snapshot
    assert cache.keys() == ["mesh/m/virtualNode/a"]
    cache.set_snapshot("mesh/m/virtualNode/b", snapshot)
    assert calls == ["a"]
    thread = threading.Thread(target=cache.set_snapshot, args=("mesh/m/virtualNode/a", snapshot))
    thread.start()
    thread.join()
    assert calls == ["a", "a"]
    unwatch()
    cache.set_snapshot("mesh/m/virtualNode/a", snapshot)
    assert calls == ["a", "a"]
    cache.remove("mesh/m/virtualNode/a")
    assert cache.get("mesh/m/virtualNode/a") is None
