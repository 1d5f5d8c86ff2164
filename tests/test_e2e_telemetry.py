"""Telemetry end to end: two real sidecars stream their stats to a real control plane, and the
golden signals it computes match what a load generator measured.

1,000 requests at 50 per second, every tenth answered 503 by the application (no retries on
the route), through the client's sidecar and the server's sidecar:

- ``/meshplane/v1/telemetry`` and ``meshplane stat -o json``: the rate on the client ->
  service/route edge and the client -> node edge within 10 % of 50/s while the load runs; the
  error rate 10 % +- 1 point; p99 inside the Envoy histogram bucket of the measured p99;
- ``/metrics``: the request counter's rate between two scrapes while the load runs within 10 %
  of 50/s; exactly 1,000 requests, 100 of them 5xx (an error rate of 10 % +- 1 point), on the
  right edges, and the histogram's p99 bucket;
- the web console (Playwright driving Debian's Chromium, ``?window=10``): the web -> service
  row of the graph's text alternative shows the rate within 10 % and the error rate 10 % +- 1
  point while the load runs, and (``?window=60``) the p99 in the measured p99's bucket after;
- a sidecar that stops shows as not reporting (never as zero traffic).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port
from tests.test_console import CHROMIUM, FLAGS

pytestmark = pytest.mark.e2e

RATE = 50.0
COUNT = 1000
DELAY = 0.3  # seconds: latencies fall inside Envoy's (250, 500] ms bucket, even on a busy machine
ENVOY_BOUNDS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
FLUSH = 1.0
PROBES = 50


class Setup:
    def __init__(self, mesh: Mesh, client: Sidecar, server: Sidecar) -> None:
        self.mesh = mesh
        self.client = client
        self.server = server

    def telemetry(self, seconds: float) -> dict[str, Any]:
        response = httpx.get(
            f"{self.mesh.server.url}/meshplane/v1/telemetry",
            params={"mesh": "tele", "seconds": str(seconds)},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    mesh = Mesh(tmp_path_factory.mktemp("telemetry"))
    try:
        api = mesh.appmesh
        port = free_port()
        api.create_mesh(meshName="tele")
        app = mesh.app("api")
        app.delay = DELAY
        address = next_address()
        api.create_virtual_node(
            meshName="tele",
            virtualNodeName="api",
            spec={
                "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": address}},
            },
        )
        api.create_virtual_router(
            meshName="tele",
            virtualRouterName="apis",
            spec={"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]},
        )
        api.create_route(
            meshName="tele",
            virtualRouterName="apis",
            routeName="main",
            spec={
                "httpRoute": {
                    "match": {"prefix": "/"},
                    "action": {"weightedTargets": [{"virtualNode": "api", "weight": 1}]},
                    "retryPolicy": {
                        "maxRetries": 0,
                        "perRetryTimeout": {"unit": "s", "value": 5},
                        "httpRetryEvents": ["server-error"],
                    },
                }
            },
        )
        api.create_virtual_service(
            meshName="tele",
            virtualServiceName="api.tele.local",
            spec={"provider": {"virtualRouter": {"virtualRouterName": "apis"}}},
        )
        api.create_virtual_node(
            meshName="tele",
            virtualNodeName="web",
            spec={"backends": [{"virtualService": {"virtualServiceName": "api.tele.local"}}]},
        )
        flush = {"stats_flush_interval": FLUSH}
        server = mesh.sidecar(
            "mesh/tele/virtualNode/api", address=address, app_port=app.port, bootstrap=flush
        )
        client = mesh.sidecar("mesh/tele/virtualNode/web", bootstrap=flush)

        def serving() -> bool:
            r = httpx.get(
                f"http://127.0.0.1:{client.egress_port}/health",
                headers={"host": "api.tele.local"},
                timeout=2,
            )
            return r.status_code == 200

        mesh.wait(serving, "the client's route to api.tele.local")
        app.fail_every = 10
        app.requests = 0
        yield Setup(mesh, client, server)
    finally:
        mesh.close()


def _load(
    setup: Setup, during: Any, scrape: Any
) -> tuple[list[float], list[int], Any, list[tuple[float, float]]]:
    """COUNT requests at RATE per second (in worker threads); in this thread ``scrape()`` runs
    1.5 s in and again 15 s in (timed), ``during()`` 15.5 s in; latencies in ms."""
    latencies: list[float] = [0.0] * COUNT
    statuses: list[int] = [0] * COUNT
    url = f"http://127.0.0.1:{setup.client.egress_port}/work"
    start = time.monotonic() + 0.5
    clients: dict[int, httpx.Client] = {}

    def one(i: int) -> None:
        http = clients.get(threading.get_ident())
        if http is None:
            http = clients[threading.get_ident()] = httpx.Client(timeout=10)
        delay = start + i / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        began = time.perf_counter()
        response = http.get(url, headers={"host": "api.tele.local"})
        latencies[i] = (time.perf_counter() - began) * 1000
        statuses[i] = response.status_code

    def run() -> None:
        with ThreadPoolExecutor(max_workers=24) as pool:
            list(pool.map(one, range(COUNT)))

    def at(offset: float) -> None:
        time.sleep(max(0.0, start + offset - time.monotonic()))

    loader = threading.Thread(target=run)
    loader.start()
    scrapes: list[tuple[float, float]] = []
    try:
        # Playwright's sync API stays on this thread: the reads happen here, the load there
        at(1.5)
        scrapes.append((time.monotonic(), scrape()))
        at(15.0)
        scrapes.append((time.monotonic(), scrape()))
        at(15.5)
        result = during()
    finally:
        loader.join()
        for http in clients.values():
            http.close()
    return latencies, statuses, result, scrapes


def _bucket(value: float) -> tuple[float, float]:
    lower = 0.0
    for bound in ENVOY_BOUNDS:
        if value <= bound:
            return lower, float(bound)
        lower = float(bound)
    return lower, float("inf")


def _edge(data: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [e for e in data["edges"] if e["kind"] == kind and e["source"] == "web"]
    assert len(found) == 1, data["edges"]
    return found[0]


def _stat_json(setup: Setup, view: str, seconds: float) -> list[dict[str, Any]]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshplane",
            "--server",
            setup.mesh.server.url,
            "stat",
            view,
            "--mesh",
            "tele",
            "--window",
            str(seconds),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def _metrics(setup: Setup) -> dict[str, list[Any]]:
    text = httpx.get(f"{setup.mesh.server.url}/metrics", timeout=10).text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _web_requests(setup: Setup) -> float:
    """web -> api.tele.local requests so far in /metrics (the route edge, every class)."""
    return sum(
        s.value
        for s in _metrics(setup)["meshplane_requests"]
        if s.labels["mesh"] == "tele"
        and s.labels["source_node"] == "web"
        and s.labels["route"] == "apis/main"
    )


def _console_edge(browser: Browser, setup: Setup, window: int) -> dict[str, Any]:
    """The web -> service api.tele.local row of the console's graph table (its text
    alternative), read from a fresh page showing ``window`` seconds of signals."""
    page = browser.new_page()
    try:
        page.goto(f"{setup.mesh.server.url}/console?mesh=tele&window={window}")
        row = page.locator("#graph-edges tbody tr", has_text="service api.tele.local").filter(
            has_text="calls"
        )
        expect(row).to_have_count(1, timeout=15_000)
        cells = [c.strip() for c in row.locator("td").all_inner_texts()]
    finally:
        page.close()
    source, target, kind, _weight, rate, errors, p99, *_ = cells
    assert (source, target, kind) == ("node web", "service api.tele.local", "calls"), cells
    assert errors.endswith("%") and p99.endswith("ms"), cells
    return {
        "rate": float(rate),
        "errorRate": float(errors[:-1]) / 100,
        "p99": float(p99[:-2]),
        "cells": cells,
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def test_golden_signals_match_the_load(setup: Setup, browser: Browser) -> None:
    def during() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        live = setup.telemetry(10)
        stat_live = _stat_json(setup, "route", 10)
        return live, stat_live, _console_edge(browser, setup, 10)

    latencies, statuses, (live, stat_live, console_live), scrapes = _load(
        setup, during, lambda: _web_requests(setup)
    )
    ended = time.monotonic()  # every request of the load has been answered
    assert statuses.count(503) == COUNT // 10, sorted(set(statuses))
    assert statuses.count(200) == COUNT - COUNT // 10
    measured_p99 = sorted(latencies)[int(COUNT * 0.99) - 1]

    # rate while the load ran: the service/route edge, the node edge and stat -o json
    route_edge = _edge(live, "route")
    assert route_edge["destinationService"] == "api.tele.local"
    assert (route_edge["router"], route_edge["route"]) == ("apis", "main")
    node_edge = _edge(live, "edge")
    assert node_edge["destinationNode"] == "api"
    for edge in (route_edge, node_edge, *stat_live):
        assert edge["reporting"] is True
        assert abs(edge["rate"] - RATE) <= RATE * 0.10, edge
        assert abs(edge["errorRate"] - 0.10) <= 0.01, edge
    # the console's text alternative (one decimal shown)
    assert abs(console_live["rate"] - RATE) <= RATE * 0.10, console_live
    assert abs(console_live["errorRate"] - 0.10) <= 0.01 + 0.0005, console_live
    # /metrics: the counter's rate between the two scrapes, as Prometheus' rate() reads it
    (t1, first), (t2, second) = scrapes
    metrics_rate = (second - first) / (t2 - t1)
    assert abs(metrics_rate - RATE) <= RATE * 0.10, (scrapes, metrics_rate)

    # after the load: the whole run, once both sidecars have reported a flush taken after it
    # (received over a flush interval after the load ended; a busy machine may delay one)
    def flushed_after_the_load() -> bool:
        asked = time.monotonic()
        ages = {p["name"]: p["lastReportSecondsAgo"] for p in setup.telemetry(60)["proxies"]}
        return all(
            ages.get(name) is not None and ages[name] < asked - ended - FLUSH
            for name in ("web", "api")
        )

    setup.mesh.wait(flushed_after_the_load, "a flush of both sidecars after the load")
    data = setup.telemetry(60)
    stat = _stat_json(setup, "route", 60)
    console_after = _console_edge(browser, setup, 60)
    lower, upper = _bucket(measured_p99)
    print(
        f"measured: p99 {measured_p99:.1f} ms; live rates"
        f" {[round(e['rate'], 2) for e in (route_edge, node_edge, *stat_live)]}/s, error rates"
        f" {[e['errorRate'] for e in (route_edge, node_edge, *stat_live)]}; after:"
        f" {[(e['requests'], e['errorRate'], e['latencyMs']) for e in (_edge(data, 'route'), *stat)]}"
        f"; /metrics rate {metrics_rate:.2f}/s; console live {console_live['cells']},"
        f" after {console_after['cells']}"
    )
    # the console after the load: the whole run's error rate and p99 bucket
    assert abs(console_after["errorRate"] - 0.10) <= 0.01 + 0.0005, console_after
    assert lower <= console_after["p99"] <= upper, (console_after, measured_p99)
    for edge in (_edge(data, "route"), _edge(data, "edge"), *stat):
        # the load, and the readiness probes sent before it
        assert COUNT <= edge["requests"] <= COUNT + PROBES, edge
        assert edge["responseCodes"]["5xx"] == COUNT // 10, edge
        assert abs(edge["errorRate"] - 0.10) <= 0.01, edge
        assert lower <= edge["latencyMs"]["p99"] <= upper, (edge, measured_p99)
    inbound = [n for n in data["nodes"] if n["source"] == "api"]
    assert len(inbound) == 1 and inbound[0]["requests"] >= COUNT, data["nodes"]

    # /metrics: the counters and the histogram of both edges
    samples = _metrics(setup)
    requests = samples["meshplane_requests"]
    by_edge: dict[tuple[str, str, str, str], float] = {}
    for s in requests:
        if s.labels["mesh"] != "tele" or s.labels["source_node"] != "web":
            continue
        key = (
            s.labels["destination_service"],
            s.labels["route"],
            s.labels["destination_node"],
            s.labels["response_code_class"],
        )
        by_edge[key] = by_edge.get(key, 0.0) + s.value
    route_2xx = by_edge.get(("api.tele.local", "apis/main", "", "2xx"), 0)
    route_5xx = by_edge.get(("api.tele.local", "apis/main", "", "5xx"), 0)
    node_2xx = by_edge.get(("", "", "api", "2xx"), 0)
    node_5xx = by_edge.get(("", "", "api", "5xx"), 0)
    assert route_5xx == COUNT // 10 and node_5xx == COUNT // 10, by_edge
    for ok, failed in ((route_2xx, route_5xx), (node_2xx, node_5xx)):
        assert abs(failed / (ok + failed) - 0.10) <= 0.01, by_edge
    # the readiness probes (/health) before the load are counted too
    assert COUNT - COUNT // 10 <= route_2xx <= COUNT, by_edge
    assert COUNT - COUNT // 10 <= node_2xx <= COUNT, by_edge
    buckets = {
        float(s.labels["le"]): s.value
        for s in samples["meshplane_request_duration_milliseconds"]
        if s.name.endswith("_bucket")
        and s.labels["route"] == "apis/main"
        and s.labels["source_node"] == "web"
    }
    total = buckets[float("inf")]
    assert total >= COUNT
    p99_bound = min(b for b, c in buckets.items() if c >= 0.99 * total)
    # the same bucket as the JSON's p99 (the exposition and the JSON agree) ...
    json_p99 = _edge(data, "route")["latencyMs"]["p99"]
    assert _bucket(json_p99)[1] == p99_bound, (buckets, json_p99)
    # ... which is the bucket of what the load generator measured
    assert p99_bound == upper, (buckets, measured_p99)
    reporting = {s.labels["proxy"]: s.value for s in samples["meshplane_proxy_reporting"]}
    assert reporting == {"api": 1.0, "web": 1.0}


def test_stat_and_top_tables(setup: Setup) -> None:
    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "meshplane", "--server", setup.mesh.server.url, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    table = cli("stat", "route", "--mesh", "tele")
    assert "SOURCE" in table and "api.tele.local apis/main" in table, table
    nodes = cli("stat", "--mesh", "tele", "-o", "json")
    assert [n["source"] for n in json.loads(nodes)] == ["api"]
    live = cli("top", "--mesh", "tele", "--iterations", "1", "--window", "60")
    assert "busiest edges" in live and "api.tele.local" in live, live


def test_envoys_own_prometheus_page_stays_reachable(setup: Setup) -> None:
    status, body = setup.server.admin_get("/stats/prometheus")
    assert status == 200
    assert "envoy_cluster_upstream_rq_total" in body


def test_a_silent_proxy_is_shown_as_not_reporting(setup: Setup) -> None:
    setup.client.stop()
    setup.mesh.sidecars.remove(setup.client)

    def stale() -> bool:
        data = setup.telemetry(60)
        return any(e["source"] == "web" and not e["reporting"] for e in data["edges"])

    setup.mesh.wait(stale, "the stopped sidecar shown as not reporting", timeout=30)
    data = setup.telemetry(60)
    for edge in data["edges"]:
        if edge["source"] == "web":
            assert edge["reporting"] is False
            assert edge["rate"] is None and edge["requests"] is None, edge
    proxies = {p["name"]: p["reporting"] for p in data["proxies"]}
    assert proxies == {"api": True, "web": False}
    samples = _metrics(setup)
    assert not [s for s in samples["meshplane_requests"] if s.labels["source_node"] == "web"], (
        "a proxy that stopped reporting keeps no series"
    )
    reporting = {s.labels["proxy"]: s.value for s in samples["meshplane_proxy_reporting"]}
    assert reporting == {"api": 1.0, "web": 0.0}
