"""Ingress: a virtual node's listeners become bound listeners, route tables and app clusters."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from meshplane.translate import ProxyOptions
from tests.support.translate import (
    JSON_LOG,
    TEXT_LOG,
    MeshBuilder,
    by_name,
    dns,
    http_manager,
    listener,
    rich_mesh,
    tcp_proxy,
)

UNLIMITED = 2147483647


def test_one_listener_per_node_listener_bound_on_the_workload_address() -> None:
    resources = rich_mesh().translate("front", ProxyOptions(address="127.0.0.7"))
    listeners = by_name(resources.listeners)
    for port in (8080, 8081, 8082, 8083):
        bound = listeners[f"lds_ingress_127.0.0.7_{port}"]
        assert bound.address.socket_address.address == "127.0.0.7"
        assert bound.address.socket_address.port_value == port
        assert bound.traffic_direction == base_pb2.INBOUND


def test_http_listeners_use_rds_with_app_mesh_names_and_stat_prefixes() -> None:
    resources = rich_mesh().translate("front")
    listeners = by_name(resources.listeners)
    routes = by_name(resources.routes)
    for port, proto in ((8080, "http"), (8081, "http2"), (8082, "grpc")):
        manager = http_manager(listeners[f"lds_ingress_127.0.0.1_{port}"])
        assert manager.stat_prefix == f"ingress.{proto}.{port}"
        assert manager.rds.route_config_name == f"rds_ingress_{proto}_{port}"
        assert manager.rds.config_source.HasField("ads")
        assert manager.codec_type == manager.AUTO
        assert manager.normalize_path.value and manager.merge_slashes
        assert [f.name for f in manager.http_filters] == ["envoy.filters.http.router"]
        config = routes[f"rds_ingress_{proto}_{port}"]
        [host] = config.virtual_hosts
        assert list(host.domains) == ["*"]
        [route] = host.routes
        assert route.match.prefix == "/"
        assert route.route.cluster == f"cds_ingress_demo_front_{proto}_{port}"


def test_listener_timeouts() -> None:
    resources = rich_mesh().translate("front")
    routes = by_name(resources.routes)
    listeners = by_name(resources.listeners)

    def route_action(proto: str, port: int) -> object:
        return routes[f"rds_ingress_{proto}_{port}"].virtual_hosts[0].routes[0].route

    http = route_action("http", 8080)
    assert http.timeout.seconds == 30
    assert http.idle_timeout.seconds == 600
    assert http_manager(listeners["lds_ingress_127.0.0.1_8080"]).stream_idle_timeout.seconds == 600
    http2 = route_action("http2", 8081)
    assert (http2.timeout.seconds, http2.timeout.nanos) == (2, 500_000_000)
    assert not http2.HasField("idle_timeout")
    grpc = route_action("grpc", 8082)
    assert grpc.timeout.seconds == 15  # App Mesh's default perRequest
    assert grpc.HasField("idle_timeout") and grpc.idle_timeout.seconds == 0  # 0 disables
    proxy = tcp_proxy(listeners["lds_ingress_127.0.0.1_8083"])
    assert proxy.idle_timeout.seconds == 120


def test_tcp_listener_proxies_to_the_app_cluster() -> None:
    resources = rich_mesh().translate("front")
    proxy = tcp_proxy(by_name(resources.listeners)["lds_ingress_127.0.0.1_8083"])
    assert proxy.stat_prefix == "ingress.tcp.8083"
    assert proxy.cluster == "cds_ingress_demo_front_tcp_8083"
    assert "rds_ingress_tcp_8083" not in by_name(resources.routes)


def test_app_clusters_are_static_to_the_application() -> None:
    options = ProxyOptions(app_address="127.0.0.9")
    clusters = by_name(rich_mesh().translate("front", options).clusters)
    cluster = clusters["cds_ingress_demo_front_http_8080"]
    assert cluster.type == cluster_pb2.Cluster.STATIC
    assert cluster.connect_timeout.seconds == 1
    socket = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (socket.address, socket.port_value) == ("127.0.0.9", 8080)
    assert not cluster.typed_extension_protocol_options
    other = by_name(rich_mesh().translate("front", ProxyOptions(app_port=3000)).clusters)
    socket = (
        other["cds_ingress_demo_front_tcp_8083"]
        .load_assignment.endpoints[0]
        .lb_endpoints[0]
        .endpoint.address.socket_address
    )
    assert (socket.address, socket.port_value) == ("127.0.0.1", 3000)


def test_http2_and_grpc_app_clusters_speak_http2() -> None:
    clusters = by_name(rich_mesh().translate("front").clusters)
    key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    for name in ("cds_ingress_demo_front_http2_8081", "cds_ingress_demo_front_grpc_8082"):
        options = http_protocol_options_pb2.HttpProtocolOptions()
        assert clusters[name].typed_extension_protocol_options[key].Unpack(options)
        assert options.explicit_http_config.HasField("http2_protocol_options")


def test_connection_pools_become_circuit_breakers() -> None:
    clusters = by_name(rich_mesh().translate("front").clusters)

    def thresholds(proto: str, port: int) -> tuple[int, int, int, int]:
        t = clusters[f"cds_ingress_demo_front_{proto}_{port}"].circuit_breakers.thresholds[0]
        return (
            t.max_connections.value,
            t.max_pending_requests.value,
            t.max_requests.value,
            t.max_retries.value,
        )

    assert thresholds("http", 8080) == (100, 50, UNLIMITED, UNLIMITED)
    assert thresholds("http2", 8081) == (UNLIMITED, UNLIMITED, 200, UNLIMITED)
    assert thresholds("grpc", 8082) == (UNLIMITED, UNLIMITED, 300, UNLIMITED)
    assert thresholds("tcp", 8083) == (400, UNLIMITED, UNLIMITED, UNLIMITED)


def _access_log(logging: dict[str, object] | None) -> list[file_pb2.FileAccessLog]:
    spec: dict[str, object] = {
        "listeners": [listener(80), listener(81, "tcp")],
        "serviceDiscovery": dns("a.local"),
    }
    if logging is not None:
        spec["logging"] = logging
    resources = MeshBuilder().node("a", spec).translate("a")
    logs = []
    for item in resources.listeners:
        chain = item.filter_chains[0].filters[0]
        config = (
            http_manager(item)
            if chain.name.endswith("http_connection_manager")
            else tcp_proxy(item)
        )
        for entry in config.access_log:
            assert entry.name == "envoy.access_loggers.file"
            log = file_pb2.FileAccessLog()
            assert entry.typed_config.Unpack(log)
            logs.append(log)
    return logs


def test_access_log_on_every_ingress_and_egress_listener() -> None:
    assert _access_log(None) == []
    logs = _access_log({"accessLog": {"file": {"path": "/var/log/envoy.log"}}})
    assert len(logs) == 3  # http ingress, tcp ingress, http egress
    assert all(log.path == "/var/log/envoy.log" for log in logs)
    assert not logs[0].HasField("log_format")  # Envoy's default format, as App Mesh


def test_access_log_formats() -> None:
    [text, *_] = _access_log(TEXT_LOG)
    assert text.log_format.text_format_source.inline_string == "%START_TIME% %RESPONSE_CODE%\n"
    [json_log, *_] = _access_log(JSON_LOG)
    fields = json_log.log_format.json_format.fields
    assert fields["status"].string_value == "%RESPONSE_CODE%"
    assert fields["path"].string_value == "%REQ(:PATH)%"


def test_node_without_listeners_gets_only_egress() -> None:
    resources = MeshBuilder().node("client", {}).translate("client")
    assert [x.name for x in resources.listeners] == ["lds_egress_127.0.0.1_15001"]
    assert [x.name for x in resources.routes] == ["rds_egress_http_15001"]
    assert resources.clusters == ()
