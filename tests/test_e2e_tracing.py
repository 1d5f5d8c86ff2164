"""Tracing end to end: a gateway and two sidecars (real Envoys), a real OTLP/gRPC receiver.

The mesh is ``gateway gw -> virtual service web -> node web (its app calls api through its
sidecar, passing on the trace context) -> virtual service api -> node api``; api's sidecar
uses delta xDS, the others state of the world.

- tagging the mesh with ``meshplane.io/tracing=<receiver>`` reaches the running proxies (over
  CDS and LDS, no restart); one request through the gateway then gives the receiver one trace
  with a span per hop (gateway, web's ingress and egress, api's ingress), the services of the
  gateway and both nodes, every span's parent in the trace, one root;
- bad tag values are refused by the real API (boto3: BadRequestException naming the tag and
  the rule) and change neither the tags nor the proxies;
- removing the tag takes the tracer and the collector cluster off every proxy (config dump),
  and a request after that sends no span;
- a sidecar started with App Mesh's ``ENABLE_ENVOY_JAEGER_TRACING`` (JSON) traces with Envoy's
  Zipkin tracer to a real Zipkin-API receiver through its bootstrap's ``jaeger`` cluster, and
  one with ``ENABLE_ENVOY_DATADOG_TRACING`` sends its traces to a Datadog agent's endpoint
  through ``datadog_agent``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from botocore.exceptions import ClientError

from meshplane.proxy import BootstrapOptions
from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.otlp import OtlpReceiver, ReceivedSpan, ZipkinReceiver
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e

MESH = "traced"
ARN = f"arn:aws:appmesh:us-east-1:000000000000:mesh/{MESH}"
OTEL = "envoy.tracers.opentelemetry"
COLLECTOR_CLUSTER = "meshplane_tracing_collector"


@dataclass
class Setup:
    mesh: Mesh
    receiver: OtlpReceiver
    gateway: Sidecar
    web: Sidecar
    api: Sidecar
    gateway_port: int

    @property
    def proxies(self) -> list[Sidecar]:
        return [self.gateway, self.web, self.api]

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        url = f"http://{self.gateway.address}:{self.gateway_port}{path}"
        return httpx.get(url, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("tracing")
    receiver = OtlpReceiver().start()
    mesh = Mesh(tmp)
    try:
        api = mesh.appmesh
        api.create_mesh(meshName=MESH, tags=[{"key": "team", "value": "shop"}])
        api_port, web_port, gateway_port = free_port(), free_port(), free_port()
        api_address, web_address = next_address(), next_address()
        for name, port, address, backends in (
            ("api", api_port, api_address, []),
            ("web", web_port, web_address, [f"api.{MESH}.local"]),
        ):
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName=name,
                spec={
                    "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
                    "serviceDiscovery": {"dns": {"hostname": address}},
                    "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
                },
            )
            api.create_virtual_service(
                meshName=MESH,
                virtualServiceName=f"{name}.{MESH}.local",
                spec={"provider": {"virtualNode": {"virtualNodeName": name}}},
            )
        api.create_virtual_gateway(
            meshName=MESH,
            virtualGatewayName="gw",
            spec={"listeners": [{"portMapping": {"port": gateway_port, "protocol": "http"}}]},
        )
        api.create_gateway_route(
            meshName=MESH,
            virtualGatewayName="gw",
            gatewayRouteName="to-web",
            spec={
                "httpRoute": {
                    "match": {"prefix": "/"},
                    "action": {
                        "target": {"virtualService": {"virtualServiceName": f"web.{MESH}.local"}}
                    },
                }
            },
        )
        api_app, web_app = mesh.app("api"), mesh.app("web")
        api_proxy = mesh.sidecar(  # delta xDS here, state of the world for the others
            f"mesh/{MESH}/virtualNode/api", address=api_address, app_port=api_app.port, delta=True
        )
        web_proxy = mesh.sidecar(
            f"mesh/{MESH}/virtualNode/web", address=web_address, app_port=web_app.port
        )
        web_app.forward = ("127.0.0.1", web_proxy.egress_port, f"api.{MESH}.local")
        gateway = mesh.sidecar(f"mesh/{MESH}/virtualGateway/gw")
        setup = Setup(mesh, receiver, gateway, web_proxy, api_proxy, gateway_port)
        for proxy in setup.proxies:
            # export every span at once and every 200 ms (Envoy's defaults: 5 spans, 5 s),
            # set before the tracer exists: it reads them when it is made
            status, body = _post(proxy, "/runtime_modify?tracing.opentelemetry.min_flush_spans=1")
            assert status == 200, body
            status, body = _post(
                proxy, "/runtime_modify?tracing.opentelemetry.flush_interval_ms=200"
            )
            assert status == 200, body
        mesh.wait(lambda: setup.get("/ready").status_code == 200, "gateway -> web -> api")
        yield setup
    finally:
        mesh.close()
        receiver.stop()


def _post(proxy: Sidecar, path: str) -> tuple[int, str]:
    response = httpx.post(f"http://{proxy.admin}{path}", timeout=5)
    return response.status_code, response.text


def _traced(proxy: Sidecar) -> tuple[bool, bool]:
    """Whether the proxy's listeners hold the OpenTelemetry tracer, and whether its clusters
    hold the collector (its config dump)."""
    status, listeners = proxy.admin_get("/config_dump?resource=dynamic_listeners")
    assert status == 200, listeners
    status, clusters = proxy.admin_get("/config_dump?resource=dynamic_active_clusters")
    assert status == 200, clusters
    return OTEL in listeners, COLLECTOR_CLUSTER in clusters


def _tag(setup: Setup, **tags: str) -> None:
    setup.mesh.appmesh.tag_resource(
        resourceArn=ARN, tags=[{"key": k, "value": v} for k, v in tags.items()]
    )


def _tracing_stats(proxy: Sidecar) -> str:
    stats = proxy.stats()
    return f"{proxy.resource}: " + ", ".join(
        f"{k}={v}"
        for k, v in sorted(stats.items())
        if (".tracing." in k or k.startswith("tracing.")) and v
    )


def _settled(proxy: Sidecar) -> bool:
    """No listener or filter chain of the proxy drains: every connection opened before the
    last LDS change has been closed, so each request is handled by the current config."""
    stats = proxy.stats()
    return (
        stats.get("listener_manager.total_filter_chains_draining", 0) == 0
        and stats.get("listener_manager.total_listeners_draining", 0) == 0
    )


def _trace_of(
    receiver: OtlpReceiver, request_id: str, spans_wanted: int, proxies: list[Sidecar]
) -> list[ReceivedSpan]:
    """The spans of the one trace that carries ``request_id`` in its path (waits for them)."""
    deadline = time.monotonic() + 30
    while True:
        spans = receiver.spans()
        ours = {s.trace_id for s in spans if request_id in (s.attribute("http.url") or "")}
        if len(ours) == 1:
            (trace_id,) = ours
            trace = [s for s in spans if s.trace_id == trace_id]
            if len(trace) >= spans_wanted:
                return trace
        if time.monotonic() > deadline:
            stats = "\n".join(_tracing_stats(p) for p in proxies)
            raise AssertionError(
                f"no trace of {spans_wanted} spans for {request_id}: {spans}\n{stats}"
            )
        time.sleep(0.1)


def test_a_request_through_the_gateway_is_one_trace_with_a_span_per_hop(setup: Setup) -> None:
    assert [_traced(p) for p in setup.proxies] == [(False, False)] * 3
    _tag(setup, **{"meshplane.io/tracing": setup.receiver.address})
    _tag(setup, **{"meshplane.io/tracing-sampling": "100"})
    setup.mesh.wait(
        lambda: all(_traced(p) == (True, True) and _settled(p) for p in setup.proxies),
        "the tracer and the collector cluster on every proxy (LDS, CDS), the old config drained",
    )
    request_id = uuid.uuid4().hex
    response = setup.get(f"/checkout/{request_id}")
    assert response.status_code == 200, response.text
    assert response.json()["backend"]["app"] == "api"  # it really went gateway -> web -> api
    trace = _trace_of(setup.receiver, request_id, 4, setup.proxies)
    print("trace:", *(f"{s.service} {s.kind} {s.name}" for s in trace), sep="\n  ")
    assert len({s.trace_id for s in trace}) == 1 and len(trace) >= 3
    assert {s.service for s in trace} == {"gw", "web", "api"}
    by_id = {s.span_id: s for s in trace}
    assert len(by_id) == len(trace)  # no span id twice
    roots = [s for s in trace if not s.parent_span_id.strip("0")]
    assert [r.service for r in roots] == ["gw"], trace  # the gateway started the trace
    for span in trace:
        if span not in roots:
            assert span.parent_span_id in by_id, f"{span} has a parent outside the trace"
    # each hop's parent is the hop before it: gw -> web (in) -> web (out) -> api (in)
    chain = []
    span = next(s for s in trace if s.service == "api")
    while span is not None:
        chain.append(span.service)
        span = by_id.get(span.parent_span_id)
    assert chain[0] == "api" and chain[-1] == "gw" and "web" in chain, chain


def test_the_first_proxys_sampling_decision_holds_for_the_whole_trace(setup: Setup) -> None:
    """At 0 % a request without trace headers is not traced.  One whose caller asks for a
    trace (``x-client-trace-id``, Envoy's client sampling) is traced at every hop: the first
    proxy's decision travels in ``x-request-id`` (which the application passes on with
    ``traceparent``), so the proxies after it follow it rather than sampling again, and
    traces stay whole at any rate.  The caller's ``traceparent`` names the trace."""
    _tag(setup, **{"meshplane.io/tracing": setup.receiver.address})
    _tag(setup, **{"meshplane.io/tracing-sampling": "0"})

    def sampling_zero(proxy: Sidecar) -> bool:
        _, listeners = proxy.admin_get("/config_dump?resource=dynamic_listeners")
        return OTEL in listeners and '"random_sampling": {}' in listeners

    setup.mesh.wait(
        lambda: all(sampling_zero(p) and _settled(p) for p in setup.proxies), "0 % sampling"
    )
    caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    unsampled = uuid.uuid4().hex
    response = setup.get(
        f"/unsampled/{unsampled}", {"traceparent": f"00-{uuid.uuid4().hex}-{caller_span}-01"}
    )
    assert response.status_code == 200, response.text
    sampled = uuid.uuid4().hex
    response = setup.get(
        f"/sampled/{sampled}",
        {"traceparent": f"00-{caller_trace}-{caller_span}-01", "x-client-trace-id": sampled},
    )
    assert response.status_code == 200, response.text
    trace = _trace_of(setup.receiver, sampled, 4, setup.proxies)
    assert {s.trace_id for s in trace} == {caller_trace}
    assert {s.service for s in trace} == {"gw", "web", "api"}
    gateway = next(s for s in trace if s.service == "gw")
    assert gateway.parent_span_id == caller_span
    # the sampled request's spans are all in, so the unsampled one's would be too: none came
    assert not [s for s in setup.receiver.spans() if unsampled in (s.attribute("http.url") or "")]


def test_bad_tracing_tags_are_refused_by_the_api(setup: Setup) -> None:
    before = [p.config_dump() for p in setup.proxies]
    tags_before = setup.mesh.appmesh.list_tags_for_resource(resourceArn=ARN)["tags"]
    bad = [
        ("meshplane.io/tracing", "collector", "must be host:port"),
        ("meshplane.io/tracing", "collector:0", "must be host:port"),
        ("meshplane.io/tracing", "grpc://collector:4317", "must be host:port"),
        ("meshplane.io/tracing-sampling", "101", "percentage from 0 to 100"),
        ("meshplane.io/tracing-sampling", "-5", "percentage from 0 to 100"),
        ("meshplane.io/tracing-sampling", "half", "percentage from 0 to 100"),
    ]
    for key, value, rule in bad:
        with pytest.raises(ClientError) as refused:
            _tag(setup, **{key: value})
        error = refused.value.response["Error"]
        assert error["Code"] == "BadRequestException", error
        assert key in error["Message"] and rule in error["Message"], error
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        with pytest.raises(ClientError) as refused:
            setup.mesh.appmesh.create_mesh(
                meshName=f"bad-{uuid.uuid4().hex[:8]}", tags=[{"key": key, "value": value}]
            )
        assert refused.value.response["Error"]["Code"] == "BadRequestException"
    assert setup.mesh.appmesh.list_tags_for_resource(resourceArn=ARN)["tags"] == tags_before
    names = [m["meshName"] for m in setup.mesh.appmesh.list_meshes()["meshes"]]
    assert names == [MESH]
    time.sleep(0.5)  # a change would have reached the proxies by now (debounce: 20 ms)
    after = [p.config_dump() for p in setup.proxies]
    assert [_versions(d) for d in after] == [_versions(d) for d in before]


def _versions(dump: dict[str, object]) -> list[str]:
    """The version_info of each dynamic resource of a config dump."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "version_info" in node and isinstance(node["version_info"], str):
                found.append(node["version_info"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dump)
    return sorted(found)


def test_removing_the_tag_stops_tracing_on_the_proxies(setup: Setup) -> None:
    _tag(setup, **{"meshplane.io/tracing": setup.receiver.address})
    setup.mesh.wait(lambda: all(_traced(p) == (True, True) for p in setup.proxies), "tracing on")
    setup.mesh.appmesh.untag_resource(resourceArn=ARN, tagKeys=["meshplane.io/tracing"])
    setup.mesh.wait(
        lambda: all(_traced(p) == (False, False) and _settled(p) for p in setup.proxies),
        "the tracer and the collector cluster gone from every proxy (config dump), drained",
    )
    for proxy in setup.proxies:  # switching tracing on and off was never refused
        stats = proxy.stats()
        assert stats.get("listener_manager.lds.update_rejected") == 0, proxy.resource
        assert stats.get("cluster_manager.cds.update_rejected") == 0, proxy.resource
    request_id = uuid.uuid4().hex
    assert setup.get(f"/after/{request_id}").status_code == 200
    # and as a check on the receiving side: a traced request's spans arrived within 200 ms of
    # flush interval above; none of this one's arrives in 2 s
    time.sleep(2)
    assert not [s for s in setup.receiver.spans() if request_id in (s.attribute("http.url") or "")]


def test_the_jaeger_switch_traces_with_zipkin_to_the_bootstrap_collector(
    setup: Setup,
) -> None:
    with ZipkinReceiver() as zipkin:
        env = {
            "APPMESH_RESOURCE_ARN": f"mesh/{MESH}/virtualNode/web",
            "ENABLE_ENVOY_JAEGER_TRACING": "1",
            "JAEGER_TRACER_PORT": str(zipkin.port),
            "JAEGER_TRACER_VERSION": "JSON",
        }
        tracer = BootstrapOptions.from_env(env).tracer
        assert tracer is not None
        # a second proxy of node web, elsewhere, with its own tracer (the mesh tag is on too:
        # the proxy's own setting wins)
        _tag(setup, **{"meshplane.io/tracing": setup.receiver.address})
        proxy = setup.mesh.sidecar(f"mesh/{MESH}/virtualNode/web", bootstrap={"tracer": tracer})
        status, body = _post(proxy, "/runtime_modify?tracing.zipkin.min_flush_spans=1")
        assert status == 200, body

        def zipkin_traced() -> bool:
            _, listeners = proxy.admin_get("/config_dump?resource=dynamic_listeners")
            return "envoy.tracers.zipkin" in listeners and OTEL not in listeners

        setup.mesh.wait(zipkin_traced, "the Zipkin tracer on the proxy (LDS)")
        request_id = uuid.uuid4().hex
        response = httpx.get(
            f"http://127.0.0.1:{proxy.egress_port}/zipkin/{request_id}",
            headers={"host": f"api.{MESH}.local"},
            timeout=10,
        )
        assert response.status_code == 200, response.text

        def ours() -> list[dict[str, object]]:
            return [
                s
                for s in zipkin.spans()
                if request_id in str(s.get("tags", {}).get("http.url", ""))  # type: ignore[union-attr]
            ]

        try:
            setup.mesh.wait(lambda: bool(ours()), "the egress span at the Zipkin receiver")
        except AssertionError:
            stats = {k: v for k, v in proxy.stats().items() if "jaeger" in k and v}
            raise AssertionError(f"{zipkin.spans()} {stats}") from None
        (span,) = ours()
        assert span["kind"] == "CLIENT", span
        assert span["localEndpoint"]["serviceName"] == f"mesh/{MESH}/virtualNode/web", span  # type: ignore[index]
        _, clusters = proxy.admin_get("/config_dump?resource=static_clusters")
        assert '"jaeger"' in clusters


def test_the_datadog_switch_sends_traces_to_the_agent(setup: Setup) -> None:
    with ZipkinReceiver() as agent:
        env = {
            "APPMESH_RESOURCE_ARN": f"mesh/{MESH}/virtualNode/web",
            "ENABLE_ENVOY_DATADOG_TRACING": "1",
            "DATADOG_TRACER_PORT": str(agent.port),
        }
        tracer = BootstrapOptions.from_env(env).tracer
        assert tracer is not None
        proxy = setup.mesh.sidecar(f"mesh/{MESH}/virtualNode/web", bootstrap={"tracer": tracer})

        def datadog_traced() -> bool:
            _, listeners = proxy.admin_get("/config_dump?resource=dynamic_listeners")
            return "envoy.tracers.datadog" in listeners and OTEL not in listeners

        setup.mesh.wait(datadog_traced, "the Datadog tracer on the proxy (LDS)")
        response = httpx.get(
            f"http://127.0.0.1:{proxy.egress_port}/datadog/{uuid.uuid4().hex}",
            headers={"host": f"api.{MESH}.local"},
            timeout=10,
        )
        assert response.status_code == 200, response.text

        def traces_sent() -> int:
            return sum(
                int(headers.get("x-datadog-trace-count", "0"))
                for path, headers in agent.posts()
                if path == "/v0.4/traces"
            )

        setup.mesh.wait(lambda: traces_sent() >= 1, "a trace at the Datadog agent's endpoint")
        _, clusters = proxy.admin_get("/config_dump?resource=static_clusters")
        assert '"datadog_agent"' in clusters
