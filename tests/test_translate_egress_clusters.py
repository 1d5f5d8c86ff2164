"""Egress clusters (discovery, health checks, outlier detection) and TCP backends."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import http_pb2

from meshplane.translate import ProxyOptions
from tests.support.translate import (
    MeshBuilder,
    by_name,
    client_node,
    dns,
    listener,
    provider_node,
    rich_mesh,
    tcp_proxy,
)

C = cluster_pb2.Cluster
UNLIMITED = 2147483647


def _clusters(egress: str = "DROP_ALL") -> dict[str, C]:
    return by_name(rich_mesh(egress).translate("front").clusters)


def test_the_node_gets_exactly_the_clusters_of_its_backends() -> None:
    assert sorted(_clusters()) == [
        "cds_egress_demo_cloud-v1_http2_6000",
        "cds_egress_demo_db-v1_tcp_5432",
        "cds_egress_demo_db-v2_tcp_5432",
        "cds_egress_demo_grpc-v1_grpc_50051",
        "cds_egress_demo_h2-v1_http2_9090",
        "cds_egress_demo_multi-v1_http_80",
        "cds_egress_demo_multi-v1_http_81",
        "cds_egress_demo_node-v1_http_7000",
        "cds_egress_demo_node-v1_tcp_7001",
        "cds_egress_demo_web-v1_http_9080",
        "cds_egress_demo_web-v2_http_9080",
        "cds_ingress_demo_front_grpc_8082",
        "cds_ingress_demo_front_http2_8081",
        "cds_ingress_demo_front_http_8080",
        "cds_ingress_demo_front_tcp_8083",
    ]


def test_dns_discovery() -> None:
    clusters = _clusters()
    web = clusters["cds_egress_demo_web-v1_http_9080"]
    assert web.type == C.LOGICAL_DNS  # responseType LOADBALANCER is the default
    assert web.connect_timeout.seconds == 1
    socket = web.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (socket.address, socket.port_value) == ("web-v1.local", 9080)
    assert web.load_assignment.cluster_name == web.name
    multi = clusters["cds_egress_demo_multi-v1_http_81"]
    assert multi.type == C.STRICT_DNS  # responseType ENDPOINTS
    assert (
        multi.load_assignment.endpoints[0]
        .lb_endpoints[0]
        .endpoint.address.socket_address.port_value
        == 81
    )


def test_lookup_family_from_the_provider_else_the_mesh() -> None:
    clusters = _clusters()
    assert clusters["cds_egress_demo_web-v1_http_9080"].dns_lookup_family == C.V4_PREFERRED
    assert clusters["cds_egress_demo_multi-v1_http_80"].dns_lookup_family == C.V6_ONLY
    assert clusters["cds_egress_demo_node-v1_http_7000"].dns_lookup_family == C.V4_ONLY
    mesh = (
        MeshBuilder()
        .node("c", client_node("a", "b"))
        .node("a", provider_node("a", listener(80)))
        .node(
            "b",
            {
                "listeners": [listener(80)],
                "serviceDiscovery": dns("b", ipPreference="IPv6_PREFERRED"),
            },
        )
        .service("a", node="a")
        .service("b", node="b")
    )
    clusters = by_name(mesh.translate("c").clusters)
    assert clusters["cds_egress_demo_a_http_80"].dns_lookup_family == C.AUTO  # no preference
    assert clusters["cds_egress_demo_b_http_80"].dns_lookup_family == C.AUTO


def test_client_side_circuit_breakers_are_app_mesh_unlimited() -> None:
    thresholds = _clusters()["cds_egress_demo_web-v1_http_9080"].circuit_breakers.thresholds[0]
    assert {
        thresholds.max_connections.value,
        thresholds.max_pending_requests.value,
        thresholds.max_requests.value,
        thresholds.max_retries.value,
    } == {UNLIMITED}


def test_http2_and_grpc_providers_speak_http2() -> None:
    clusters = _clusters()
    key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    for name in ("cds_egress_demo_h2-v1_http2_9090", "cds_egress_demo_grpc-v1_grpc_50051"):
        options = http_protocol_options_pb2.HttpProtocolOptions()
        assert clusters[name].typed_extension_protocol_options[key].Unpack(options)
        assert options.explicit_http_config.HasField("http2_protocol_options")
    assert not clusters["cds_egress_demo_web-v1_http_9080"].typed_extension_protocol_options


def test_provider_health_checks_are_active_checks_on_the_client_cluster() -> None:
    clusters = _clusters()
    [http] = clusters["cds_egress_demo_web-v1_http_9080"].health_checks
    assert http.http_health_check.path == "/ping"
    assert (http.interval.seconds, http.timeout.seconds) == (5, 2)
    assert http.no_traffic_interval == http.interval  # not Envoy's 60 s before first traffic
    assert (http.healthy_threshold.value, http.unhealthy_threshold.value) == (2, 3)
    [tcp] = clusters["cds_egress_demo_web-v2_http_9080"].health_checks
    assert tcp.HasField("tcp_health_check")
    [h2] = clusters["cds_egress_demo_h2-v1_http2_9090"].health_checks
    assert h2.http_health_check.path == "/health"
    assert h2.http_health_check.codec_client_type == http_pb2.HTTP2
    [grpc] = clusters["cds_egress_demo_grpc-v1_grpc_50051"].health_checks
    assert grpc.HasField("grpc_health_check")
    assert not clusters["cds_egress_demo_db-v1_tcp_5432"].health_checks


def test_outlier_detection() -> None:
    outlier = _clusters()["cds_egress_demo_web-v1_http_9080"].outlier_detection
    assert outlier.consecutive_5xx.value == 5
    assert outlier.interval.seconds == 10
    assert outlier.base_ejection_time.seconds == 30
    assert outlier.max_ejection_percent.value == 50
    assert not _clusters()["cds_egress_demo_web-v2_http_9080"].HasField("outlier_detection")


def test_checked_or_ejectable_providers_have_no_panic_mode() -> None:
    # an endpoint failing its health check or ejected gets no traffic, even as the only one
    clusters = _clusters()
    for name in (
        "cds_egress_demo_web-v1_http_9080",  # health check and outlier detection
        "cds_egress_demo_web-v2_http_9080",  # health check
        "cds_egress_demo_grpc-v1_grpc_50051",
    ):
        lb = clusters[name].common_lb_config
        assert lb.HasField("healthy_panic_threshold"), name
        assert lb.healthy_panic_threshold.value == 0.0
    mesh = (
        MeshBuilder()
        .node("c", client_node("o"))
        .node(
            "o",
            provider_node(
                "o",
                listener(
                    80,
                    outlierDetection={
                        "maxServerErrors": 1,
                        "interval": {"unit": "s", "value": 1},
                        "baseEjectionDuration": {"unit": "s", "value": 1},
                        "maxEjectionPercent": 100,
                    },
                ),
            ),
        )
        .service("o", node="o")
    )
    outlier_only = by_name(mesh.translate("c").clusters)["cds_egress_demo_o_http_80"]
    assert outlier_only.common_lb_config.HasField("healthy_panic_threshold")
    # neither: Envoy's defaults stay
    assert not clusters["cds_egress_demo_db-v1_tcp_5432"].HasField("common_lb_config")
    assert not clusters["cds_ingress_demo_front_http_8080"].HasField("common_lb_config")


def test_cloud_map_providers_are_eds_clusters_with_an_empty_assignment() -> None:
    resources = rich_mesh().translate("front")
    cluster = by_name(resources.clusters)["cds_egress_demo_cloud-v1_http2_6000"]
    assert cluster.type == C.EDS
    assert cluster.eds_cluster_config.eds_config.HasField("ads")
    assert cluster.eds_cluster_config.service_name == cluster.name
    [assignment] = resources.endpoints
    assert assignment.cluster_name == cluster.name
    assert len(assignment.endpoints) == 0


def test_tcp_backends_get_a_local_listener_on_the_provider_port() -> None:
    resources = rich_mesh().translate("front")
    listeners = by_name(resources.listeners)
    db = listeners["lds_egress_127.0.0.1_5432"]
    assert db.traffic_direction == base_pb2.OUTBOUND
    assert tcp_proxy(db).cluster == "cds_egress_demo_db-v1_tcp_5432"
    assert tcp_proxy(db).stat_prefix == "egress.tcp.5432"
    node = tcp_proxy(listeners["lds_egress_127.0.0.1_7001"])
    assert node.cluster == "cds_egress_demo_node-v1_tcp_7001"
    split = tcp_proxy(listeners["lds_egress_127.0.0.1_5433"])
    assert [(c.name, c.weight) for c in split.weighted_clusters.clusters] == [
        ("cds_egress_demo_db-v1_tcp_5432", 80),
        ("cds_egress_demo_db-v2_tcp_5432", 20),
    ]
    assert split.idle_timeout.seconds == 30


def test_tcp_egress_ports_are_configurable() -> None:
    options = ProxyOptions(
        egress_address="127.0.0.3", tcp_egress_ports={"db.local": 15432, "node.local:7001": 17001}
    )
    listeners = by_name(rich_mesh().translate("front", options).listeners)
    assert "lds_egress_127.0.0.3_15432" in listeners
    assert "lds_egress_127.0.0.3_17001" in listeners
    assert "lds_egress_127.0.0.3_5433" in listeners
    assert listeners["lds_egress_127.0.0.3_15432"].address.socket_address.port_value == 15432


def test_a_port_taken_twice_keeps_the_first_listener_and_reports() -> None:
    mesh = (
        MeshBuilder()
        .node(
            "c", client_node("a", "b", listeners=[listener(5432, "tcp")], serviceDiscovery=dns("c"))
        )
        .node("a", provider_node("a", listener(5432, "tcp")))
        .node("b", provider_node("b", listener(15001, "tcp")))
        .service("a", node="a")
        .service("b", node="b")
    )
    resources = mesh.translate("c", ProxyOptions(address="0.0.0.0"))
    names = [x.name for x in resources.listeners]
    assert names == ["lds_ingress_0.0.0.0_5432", "lds_egress_127.0.0.1_15001"]
    assert any("lds_egress_127.0.0.1_5432" in p for p in resources.problems)
    assert any("15001 is taken" in p for p in resources.problems)


def test_a_grpc_health_check_on_an_http_1_listener_becomes_a_tcp_check() -> None:
    check = {
        "healthyThreshold": 2,
        "unhealthyThreshold": 2,
        "intervalMillis": 5000,
        "timeoutMillis": 2000,
        "protocol": "grpc",
    }
    mesh = (
        MeshBuilder()
        .node("c", client_node("s"))
        .node("p", provider_node("p", listener(80, healthCheck=check)))
        .service("s", node="p")
    )
    resources = mesh.translate("c")
    [health] = by_name(resources.clusters)["cds_egress_demo_p_http_80"].health_checks
    assert health.HasField("tcp_health_check")
    assert any("TCP check is used instead" in p for p in resources.problems)
