"""Tracing in the translation: the mesh's OpenTelemetry tracer on every HTTP connection
manager of a proxy, its collector cluster over CDS, the proxy's own tracer (App Mesh's
switches) winning, and the tag rules of :mod:`meshplane.model.tracing`.

The real Envoy 1.40 validates the traced proxies (node, gateway, captured, own tracers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.config.trace.v3 import datadog_pb2, opentelemetry_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from meshplane.model import Kind
from meshplane.model.proxy import InvalidNodeMetadataError, NodeMetadata, ProxyTracer
from meshplane.model.tracing import (
    TRACING_SAMPLING_TAG,
    TRACING_TAG,
    Collector,
    MeshTracing,
    TracingDefaults,
    check_tracing_tags,
    parse_collector,
    tracing_from_tags,
)
from meshplane.proxy import BootstrapOptions, build_bootstrap
from meshplane.translate import (
    MeshView,
    Observability,
    ProxyIdentity,
    ProxyOptions,
    translate_proxy,
)
from meshplane.translate.names import TRACING_CLUSTER
from meshplane.translate.resources import ProxyResources
from meshplane.xds import Snapshot
from meshplane.xds.resource import Resource
from tests.support.translate import (
    MeshBuilder,
    by_name,
    envoy_validate,
    listener,
    rich_mesh,
    static_bootstrap,
)

TRACED = MeshTracing(Collector("127.0.0.1", 4317), sampling=100.0)


def _translate(
    view: MeshView,
    kind: Kind,
    name: str,
    tracing: MeshTracing | None = TRACED,
    options: ProxyOptions | None = None,
) -> ProxyResources:
    return translate_proxy(
        view,
        ProxyIdentity(view.mesh, kind, name),
        options,
        observability=Observability(tracing=tracing),
    )


def _managers(resources: ProxyResources) -> list[hcm_pb2.HttpConnectionManager]:
    """Every HTTP connection manager of every filter chain of every listener."""
    found = []
    for listener_ in resources.listeners:
        for chain in listener_.filter_chains:
            for network_filter in chain.filters:
                manager = hcm_pb2.HttpConnectionManager()
                if network_filter.typed_config.Unpack(manager):
                    found.append(manager)
    return found


def _otel(manager: hcm_pb2.HttpConnectionManager) -> opentelemetry_pb2.OpenTelemetryConfig:
    assert manager.tracing.provider.name == "envoy.tracers.opentelemetry"
    config = opentelemetry_pb2.OpenTelemetryConfig()
    assert manager.tracing.provider.typed_config.Unpack(config)
    return config


def _gateway_mesh() -> MeshBuilder:
    b = rich_mesh()
    b.gateway("edge", {"listeners": [listener(8443), listener(8444, "grpc")]})
    b.gateway_route(
        "edge",
        "to-web",
        {
            "httpRoute": {
                "match": {"prefix": "/", "port": 8443},
                "action": {"target": {"virtualService": {"virtualServiceName": "web.local"}}},
            }
        },
    )
    return b


def test_untraced_mesh_has_no_tracer_and_no_collector() -> None:
    resources = _translate(rich_mesh().view(), Kind.VIRTUAL_NODE, "front", tracing=None)
    managers = _managers(resources)
    assert len(managers) == 4  # three HTTP-like ingress listeners and the egress one
    assert not any(m.HasField("tracing") for m in managers)
    assert TRACING_CLUSTER not in by_name(resources.clusters)


def test_every_connection_manager_of_a_node_traces_as_the_node() -> None:
    tracing = MeshTracing(Collector("otel.example.internal", 4317), sampling=2.5)
    resources = _translate(rich_mesh().view(), Kind.VIRTUAL_NODE, "front", tracing=tracing)
    managers = _managers(resources)
    assert len(managers) == 4
    for manager in managers:
        config = _otel(manager)
        assert config.service_name == "front"
        assert config.grpc_service.envoy_grpc.cluster_name == TRACING_CLUSTER
        assert manager.tracing.random_sampling.value == 2.5
    cluster = by_name(resources.clusters)[TRACING_CLUSTER]
    assert cluster.type == cluster.STRICT_DNS  # a DNS name is re-resolved
    address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == (
        "otel.example.internal",
        4317,
    )
    assert not cluster.HasField("transport_socket")  # the mesh's mTLS is not the collector's
    # the snapshot is consistent, and the listeners reference the collector cluster, so the
    # make-before-break planner brings it before them and removes it after them
    wrapped = [Resource.of(m) for m in resources.all()]
    Snapshot(wrapped).consistent()
    egress = next(r for r in wrapped if r.name == "lds_egress_127.0.0.1_15001")
    assert TRACING_CLUSTER in egress.refs_of("type.googleapis.com/envoy.config.cluster.v3.Cluster")


def test_tcp_proxies_are_untouched_and_tracing_stays_off_the_route_tables() -> None:
    traced = _translate(rich_mesh().view(), Kind.VIRTUAL_NODE, "front")
    plain = _translate(rich_mesh().view(), Kind.VIRTUAL_NODE, "front", tracing=None)
    assert [r.SerializeToString() for r in traced.routes] == [
        r.SerializeToString() for r in plain.routes
    ]
    tcp = [x for x in traced.listeners if "8083" in x.name or "5432" in x.name]
    assert tcp and all(
        x.SerializeToString() == by_name(plain.listeners)[x.name].SerializeToString() for x in tcp
    )


def test_a_gateway_traces_as_the_gateway() -> None:
    resources = _translate(_gateway_mesh().view(), Kind.VIRTUAL_GATEWAY, "edge")
    managers = _managers(resources)
    assert len(managers) == 2
    assert {_otel(m).service_name for m in managers} == {"edge"}
    assert TRACING_CLUSTER in by_name(resources.clusters)
    Snapshot([Resource.of(m) for m in resources.all()]).consistent()


def test_the_captured_outbound_listener_traces_too() -> None:
    options = ProxyOptions(capture=True)
    resources = _translate(rich_mesh().view(), Kind.VIRTUAL_NODE, "front", options=options)
    managers = _managers(resources)
    assert managers and all(_otel(m).service_name == "front" for m in managers)


def test_nodes_with_equal_egress_do_not_share_a_traced_egress_listener() -> None:
    b = MeshBuilder("demo")
    b.node("a", {"backends": []}).node("b", {"backends": []})
    view = b.view()
    a = by_name(_translate(view, Kind.VIRTUAL_NODE, "a").listeners)["lds_egress_127.0.0.1_15001"]
    b_ = by_name(_translate(view, Kind.VIRTUAL_NODE, "b").listeners)["lds_egress_127.0.0.1_15001"]
    assert _otel(_managers_of(a)).service_name == "a"
    assert _otel(_managers_of(b_)).service_name == "b"
    untraced = [
        by_name(_translate(view, Kind.VIRTUAL_NODE, n, tracing=None).listeners)[
            "lds_egress_127.0.0.1_15001"
        ]
        for n in ("a", "b")
    ]
    assert untraced[0] is untraced[1]  # still shared when nothing names the node


def _managers_of(listener_: Any) -> hcm_pb2.HttpConnectionManager:
    manager = hcm_pb2.HttpConnectionManager()
    assert listener_.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return manager


@pytest.mark.parametrize("driver", ["zipkin", "datadog"])
def test_the_proxys_own_tracer_wins_over_the_mesh(driver: str) -> None:
    own = ProxyTracer("zipkin" if driver == "zipkin" else "datadog", "jaeger", "")
    resources = _translate(
        rich_mesh().view(), Kind.VIRTUAL_NODE, "front", options=ProxyOptions(tracer=own)
    )
    assert TRACING_CLUSTER not in by_name(resources.clusters)
    for manager in _managers(resources):
        assert manager.tracing.random_sampling.value == 100.0
        if driver == "zipkin":
            zipkin = zipkin_pb2.ZipkinConfig()
            assert manager.tracing.provider.typed_config.Unpack(zipkin)
            assert (zipkin.collector_cluster, zipkin.collector_endpoint) == (
                "jaeger",
                "/api/v2/spans",
            )
        else:
            datadog = datadog_pb2.DatadogConfig()
            assert manager.tracing.provider.typed_config.Unpack(datadog)
            assert (datadog.collector_cluster, datadog.service_name) == ("jaeger", "front")


def _tracer_cluster(env: dict[str, str]) -> dict[str, Any]:
    """The static collector cluster ``meshplane envoy`` adds for an App Mesh tracing switch."""
    options = BootstrapOptions.from_env(
        {"APPMESH_RESOURCE_ARN": "mesh/demo/virtualNode/front", **env}
    )
    cluster: dict[str, Any] = build_bootstrap(options)["static_resources"]["clusters"][1]
    return cluster


def test_envoy_accepts_traced_proxies(tmp_path: Path) -> None:
    view = _gateway_mesh().view()
    cases: list[tuple[str, ProxyResources, list[dict[str, Any]]]] = [
        ("node", _translate(view, Kind.VIRTUAL_NODE, "front"), []),
        ("gateway", _translate(view, Kind.VIRTUAL_GATEWAY, "edge"), []),
        (
            "captured",
            _translate(view, Kind.VIRTUAL_NODE, "front", options=ProxyOptions(capture=True)),
            [],
        ),
        (
            "zipkin",
            _translate(
                view,
                Kind.VIRTUAL_NODE,
                "front",
                options=ProxyOptions(tracer=ProxyTracer("zipkin", "jaeger", "", True)),
            ),
            [_tracer_cluster({"ENABLE_ENVOY_JAEGER_TRACING": "1"})],
        ),
        (
            "datadog",
            _translate(
                view,
                Kind.VIRTUAL_NODE,
                "front",
                options=ProxyOptions(tracer=ProxyTracer("datadog", "datadog_agent", "shop")),
            ),
            [_tracer_cluster({"ENABLE_ENVOY_DATADOG_TRACING": "1"})],
        ),
    ]
    for case, resources, extra in cases:
        bootstrap = static_bootstrap(resources)
        bootstrap["static_resources"]["clusters"].extend(extra)
        workdir = tmp_path / case
        workdir.mkdir()
        result = envoy_validate(bootstrap, workdir)
        output = result.stdout + result.stderr
        assert result.returncode == 0, (case, output)
        assert "deprecated" not in output.lower(), (case, output)


# --- the tag rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("otel-collector:4317", Collector("otel-collector", 4317)),
        (
            "otel.observability.svc.cluster.local:4317",
            Collector("otel.observability.svc.cluster.local", 4317),
        ),
        ("127.0.0.1:4317", Collector("127.0.0.1", 4317)),
        ("[::1]:4317", Collector("::1", 4317)),
        (" collector:1 ", Collector("collector", 1)),
    ],
)
def test_collector_addresses(value: str, expected: Collector) -> None:
    assert parse_collector(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "collector",
        "collector:",
        "collector:0",
        "collector:65536",
        "collector:4317x",
        ":4317",
        "http://collector:4317",
        "collector/path:4317",
        "coll ector:4317",
        "[not-ipv6]:4317",
        "::1:4317",
        "collector:\uff14\uff13\uff11\uff17",  # full-width digits
        "a" * 254 + ":4317",
        "-bad-.example:4317",
    ],
)
def test_bad_collector_addresses_name_the_tag_and_the_rule(value: str) -> None:
    with pytest.raises(ValueError, match=r"meshplane\.io/tracing: .* must be host:port"):
        check_tracing_tags({TRACING_TAG: value})


@pytest.mark.parametrize("value", ["", "abc", "-1", "100.5", "nan", "inf", "1e400", "5%", "\uff11"])
def test_bad_sampling_names_the_tag_and_the_rule(value: str) -> None:
    with pytest.raises(ValueError, match=r"meshplane\.io/tracing-sampling: .* percentage"):
        check_tracing_tags({TRACING_TAG: "c:4317", TRACING_SAMPLING_TAG: value})


def test_tags_and_server_defaults() -> None:
    default = Collector("default", 4317)
    assert tracing_from_tags({}) is None
    assert tracing_from_tags({}, default) == MeshTracing(default, 1.0)
    assert tracing_from_tags({TRACING_SAMPLING_TAG: "50"}, default, 10) == MeshTracing(default, 50)
    assert tracing_from_tags({TRACING_TAG: "c:1"}, default, 10) == MeshTracing(
        Collector("c", 1), 10
    )
    assert tracing_from_tags({TRACING_TAG: "OFF"}, default) is None
    assert tracing_from_tags({TRACING_TAG: "c:1", TRACING_SAMPLING_TAG: "0"}) == MeshTracing(
        Collector("c", 1), 0.0
    )
    # a bad tag stored before the API checked tags: tracing is off, with a problem
    tracing, problem = TracingDefaults(default).for_mesh({TRACING_TAG: "nope"})
    assert tracing is None and problem is not None and TRACING_TAG in problem


def test_the_own_tracer_round_trips_through_node_metadata() -> None:
    tracer = ProxyTracer("zipkin", "jaeger", "svc", True)
    metadata = NodeMetadata(tracer=tracer).to_node_metadata()
    parsed = NodeMetadata.from_node_metadata(metadata)
    assert parsed is not None and parsed.tracer == tracer
    assert ProxyOptions.from_node_metadata(metadata).tracer == tracer
    nested: Any = "x"
    for _ in range(200):
        nested = {"a": nested}
    hostile = [
        {"driver": "xray", "cluster": "x"},
        {"driver": "zipkin"},
        "zipkin",
        ["zipkin", "jaeger"],
        {"driver": "zipkin", "cluster": nested},
        {"driver": "zipkin", "cluster": "c" * 60_000},
        {"driver": "zipkin", "cluster": "jaeger", "service_name": nested},
        {"driver": "zipkin", "cluster": "jaeger", "zipkin_json": "yes"},
        {"driver": nested, "cluster": "jaeger"},
    ]
    for bad in hostile:
        with pytest.raises(InvalidNodeMetadataError, match="tracer"):
            NodeMetadata.from_node_metadata({"meshplane": {"tracer": bad}})
