"""What telemetry costs: the data plane's latency and Envoy CPU per request, and the control
plane's memory and CPU per reporting proxy.

**(a) Data plane.**  A real ``meshplane serve``, nginx as the application (one worker, a static
200), and three pairs of real Envoy sidecars (client -> server, each pair in a mesh of its
own, ``--concurrency 1``), all up at once and idle but for the pair being measured:

- ``none``: no stats sink (``BootstrapOptions.metrics_service=False``), no tracing;
- ``stats``: the stats sink streaming to the control plane every ``--flush`` seconds (the
  default, as ``meshplane envoy`` runs);
- ``tracing``: the stats sink, and the mesh tagged ``meshplane.io/tracing`` = an OTLP/gRPC
  receiver in this process (``tests.support.otlp``) with ``meshplane.io/tracing-sampling`` =
  ``--sampling`` percent (1 by default).

Each round sends ``--rate`` requests/s over ``--connections`` keep-alive connections (h2load
``--rps``, open loop) through the client sidecar's egress to the server sidecar and nginx
for ``--seconds``, the modes interleaved round by round (drift on a shared machine hits
every mode alike).  Latency: every request's, from h2load's log.  CPU: user + system time of
both Envoy processes (``/proc/<pid>/stat``) over the round, divided by the requests sent.
Reported as ratios to ``none`` in the same run.  Aim: under 5 % more CPU per request.

**(b) Control plane.**  A second ``meshplane serve``; one real sidecar pair sends a few
requests so that the client sidecar's stats hold a realistic set (every counter, gauge and
histogram its admin lists: listeners, clusters, routes, server), which is then the flush of
``--proxies`` simulated proxies (``mesh/sim/virtualNode/web-<i>``), each its own
``StreamMetrics`` stream sending that set every ``--flush`` seconds with counters rising as
under load (50 requests per flush, 10 % 5xx) and histograms in Envoy's buckets.  Measured:
the server's VmRSS before the streams and after ``--sim-seconds`` of flushes, and its CPU
time over the last part of the run, per reporting proxy.  The window holds a proxy's last
``--telemetry-window``/``--telemetry-resolution`` flushes (180 by default); the run is too
short to fill it, so the memory per flush of a proxy is measured between two points and the
full window extrapolated (``--sim-seconds 930`` fills it).

**(c) meshplane tap.**  A sidecar pair; ``--taps`` times: open ``GET /meshplane/v1/tap`` (a
plain socket, as the CLI holds it), time until both proxies' *active* listeners hold the gRPC
access logger (their config dumps), send ``--tap-requests`` requests one at a time and time each
one's outbound (client sidecar) and inbound (server sidecar) entry read from the tap; close the
socket and time until the logger is off the active listeners, then out of the draining ones.

    python -m bench.telemetry [--parts abc] [--rate 500] [--seconds 5] [--rounds 3]
                              [--proxies 1000] [--sim-seconds 90] [--taps 5] [--tap-requests 5]

Not part of the test suite (``tests/test_bench_smoke.py`` runs it at a tiny scale).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench import machine
from bench.latency import Nginx, cpu_seconds, percentile, wait_ok
from meshplane.proxy import BootstrapOptions, EnvoyOptions, EnvoyProcess, start_envoy
from meshplane.telemetry.wire import STREAM_METRICS, messages
from tests.support.otlp import OtlpReceiver
from tests.support.ports import free_port
from tests.support.server import MeshplaneServer

MODES = ("none", "stats", "tracing")
ENVOY_BOUNDS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


@dataclass
class Pair:
    mode: str
    mesh: str
    client: EnvoyProcess
    server: EnvoyProcess
    egress_port: int

    @property
    def host(self) -> str:
        return f"api.{self.mesh}"

    def cpu(self) -> float:
        return cpu_seconds(self.client.pid) + cpu_seconds(self.server.pid)

    def stop(self) -> None:
        self.client.stop()
        self.server.stop()


def _address(n: int) -> str:
    return f"127.0.{100 + (os.getpid() + n) % 100}.{2 + (os.getpid() * 7 + n) % 200}"


def make_pair(
    server: MeshplaneServer,
    mode: str,
    mesh: str,
    app_port: int,
    n: int,
    flush: float,
    tags: list[dict[str, str]] | None = None,
) -> Pair:
    """Mesh ``mesh``: node api (HTTP listener, the app on ``app_port``) behind service
    api.<mesh>, node web calling it; a real sidecar for each."""
    api = server.boto3()
    api.create_mesh(meshName=mesh, tags=tags or [])
    address = _address(n)
    port = free_port(address)
    api.create_virtual_node(
        meshName=mesh,
        virtualNodeName="api",
        spec={
            "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": address}},
        },
    )
    api.create_virtual_service(
        meshName=mesh,
        virtualServiceName=f"api.{mesh}",
        spec={"provider": {"virtualNode": {"virtualNodeName": "api"}}},
    )
    api.create_virtual_node(
        meshName=mesh,
        virtualNodeName="web",
        spec={"backends": [{"virtualService": {"virtualServiceName": f"api.{mesh}"}}]},
    )
    egress = free_port()

    def sidecar(node: str, workload: str, app: int | None, egress_port: int) -> EnvoyProcess:
        options = BootstrapOptions(
            resource=f"mesh/{mesh}/virtualNode/{node}",
            xds_port=server.xds_port,
            admin_port=0,
            concurrency=1,
            log_level="warning",
            workload_address=workload,
            app_port=app,
            egress_port=egress_port,
            metrics_service=mode != "none",
            stats_flush_interval=flush,
        )
        process = start_envoy(EnvoyOptions(options, drain_time=1.0))
        process.wait_admin(30)
        return process

    upstream = sidecar("api", address, app_port, free_port())
    downstream = sidecar("web", _address(n + 50), None, egress)
    pair = Pair(mode, mesh, downstream, upstream, egress)
    wait_ok(f"http://127.0.0.1:{egress}/", pair.host)
    return pair


def h2load(url: str, host: str, rate: int, connections: int, seconds: float, log: Path) -> int:
    """``rate`` req/s over ``connections`` for ``seconds`` (no warm-up: every request sent is
    logged); the latencies go to ``log``; returns the requests sent."""
    per_connection = max(1, round(rate / connections))
    args = ["h2load", "--h1", "-c", str(connections), "-t", "1", "--rps", str(per_connection)]
    args += ["-D", f"{round(seconds * 1000)}ms", "--log-file", str(log)]
    args += ["-H", f":authority: {host}", url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"h2load failed: {done.stdout}\n{done.stderr}")
    return len(log.read_text().splitlines())


def read_log(log: Path) -> list[float]:
    latencies = []
    failed: dict[str, int] = {}
    for line in log.read_text().splitlines():
        _, status, micros = line.split("\t")[:3]
        if status != "200":
            failed[status] = failed.get(status, 0) + 1
        latencies.append(int(micros) / 1000)
    if failed:
        raise RuntimeError(f"failed requests (status: count) {failed}")
    return latencies


def part_a(root: Path, args: argparse.Namespace) -> None:
    print(
        f"\n(a) data plane: client sidecar -> server sidecar -> nginx, {args.rate} req/s over"
        f" {args.connections} connections (h2load --rps), {args.rounds} rounds x"
        f" {args.seconds:g} s per mode, interleaved; Envoy --concurrency 1; stats flush"
        f" {args.flush:g} s; tracing sampling {args.sampling:g} %"
    )
    server = MeshplaneServer(root / "data-a", extra_args=["--log-level", "warning"])
    nginx_port = free_port()
    nginx: Nginx | None = None
    pairs: list[Pair] = []
    receiver = OtlpReceiver(max_spans=1_000_000).start()
    server.start()
    try:
        nginx = Nginx(root / "nginx", nginx_port)
        wait_ok(f"http://127.0.0.1:{nginx_port}/", None)
        for n, mode in enumerate(MODES):
            tags = None
            if mode == "tracing":
                tags = [
                    {"key": "meshplane.io/tracing", "value": receiver.address},
                    {"key": "meshplane.io/tracing-sampling", "value": f"{args.sampling:g}"},
                ]
            pairs.append(
                make_pair(server, mode, f"t{n}{mode}", nginx_port, n * 3, args.flush, tags)
            )
        traced = pairs[-1]
        deadline = time.monotonic() + 30
        while "opentelemetry" not in _admin(traced.client, "/config_dump"):
            if time.monotonic() > deadline:
                raise RuntimeError("the traced mesh's proxies never got the tracer")
            time.sleep(0.2)
        for pair in pairs:  # warm up: connections open, first flushes sent
            h2load(
                f"http://127.0.0.1:{pair.egress_port}/",
                pair.host,
                args.rate,
                args.connections,
                1.0,
                root / f"warm-{pair.mode}.log",
            )
        latencies: dict[str, list[float]] = {m: [] for m in MODES}
        cpu: dict[str, float] = dict.fromkeys(MODES, 0.0)
        sent: dict[str, int] = dict.fromkeys(MODES, 0)
        rounds: dict[str, list[int]] = {m: [] for m in MODES}
        for round_ in range(args.rounds):
            for pair in pairs:
                log = root / f"h2load-{pair.mode}-{round_}.log"
                before = pair.cpu()
                sent[pair.mode] += h2load(
                    f"http://127.0.0.1:{pair.egress_port}/",
                    pair.host,
                    args.rate,
                    args.connections,
                    args.seconds,
                    log,
                )
                cpu[pair.mode] += pair.cpu() - before
                latencies[pair.mode] += read_log(log)
                rounds[pair.mode].append(len(read_log(log)))
        time.sleep(args.flush + 1)  # the last spans exported
        spans = receiver.spans()
        print(
            f"{'mode':8s} {'requests':>8s} {'p50 ms':>7s} {'p90 ms':>7s} {'p99 ms':>7s}"
            f" {'CPU us/rq':>9s}   {'CPU x':>6s} {'p50 x':>6s} {'p90 x':>6s} {'p99 x':>6s}"
            "  (x: ratio to none, same run)"
        )
        base = latencies["none"]
        base_cpu = cpu["none"] / sent["none"]
        for mode in MODES:
            values = latencies[mode]
            cells = [percentile(values, q) for q in (0.5, 0.9, 0.99)]
            ratios = [c / percentile(base, q) for c, q in zip(cells, (0.5, 0.9, 0.99), strict=True)]
            per_request = cpu[mode] / sent[mode]
            print(
                f"{mode:8s} {sent[mode]:8d} "
                + " ".join(f"{c:7.3f}" for c in cells)
                + f" {per_request * 1e6:9.1f}   {per_request / base_cpu:6.3f} "
                + " ".join(f"{r:6.3f}" for r in ratios)
            )
        print(f"requests per round: {rounds}")
        services = sorted({s.service for s in spans})
        print(
            f"tracing: {len(spans)} spans received from {services} "
            f"({len(spans) / max(1, sent['tracing'] + args.rate):.4f} per request sent)"
        )
    finally:
        for pair in pairs:
            pair.stop()
        if nginx is not None:
            nginx.stop()
        server.stop()
        receiver.stop()


def _admin(process: EnvoyProcess, path: str) -> str:
    address = process.wait_admin(30)
    return httpx.get(f"http://{address}{path}", timeout=10).text


# -- (b) the control plane at many reporting proxies ----------------------------------------


def _stat_set(process: EnvoyProcess) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """A real sidecar's counters, gauges and histogram names (its admin /stats)."""

    def values(kind: str) -> dict[str, int]:
        out = {}
        for line in _admin(process, f"/stats?type={kind}").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name] = int(value)
        return out

    histograms = [
        line.partition(":")[0]
        for line in _admin(process, "/stats?type=Histograms").splitlines()
        if ":" in line
    ]
    return values("Counters"), values("Gauges"), histograms


class FlushMaker:
    """The metrics messages of simulated proxies: a real sidecar's stat set, counters rising
    by one flush's traffic each time, histograms of one flush (Envoy's bucket bounds)."""

    def __init__(self, counters: dict[str, int], gauges: dict[str, int], histograms: list[str]):
        self.counters, self.gauges, self.histograms = counters, gauges, histograms

    def body(self, flush: int) -> bytes:
        m = messages()
        message = m.StreamMetricsMessage()
        for name, value in self.counters.items():
            family = message.envoy_metrics.add(name=name, type=m.COUNTER)
            step = 0
            if name.endswith(("upstream_rq_total", "downstream_rq_total", "upstream_rq_completed")):
                step = 50
            elif name.endswith(("upstream_rq_2xx", "upstream_rq_200", "downstream_rq_2xx")):
                step = 45
            elif name.endswith(("upstream_rq_5xx", "upstream_rq_503", "downstream_rq_5xx")):
                step = 5
            family.metric.add().counter.value = value + step * flush
        for name, value in self.gauges.items():
            family = message.envoy_metrics.add(name=name, type=m.GAUGE)
            family.metric.add().gauge.value = value
        for name in self.histograms:
            family = message.envoy_metrics.add(name=name, type=m.HISTOGRAM)
            histogram = family.metric.add().histogram
            histogram.sample_count = 50
            histogram.sample_sum = 50 * 3.0
            for bound in ENVOY_BOUNDS:
                bucket = histogram.bucket.add()
                bucket.upper_bound = bound
                bucket.cumulative_count = 0 if bound < 1 else (25 if bound < 5 else 50)
        return bytes(message.SerializeToString())

    def first(self, node: str, body: bytes) -> bytes:
        m = messages()
        head = m.StreamMetricsMessage()
        head.identifier.node.id = node
        # both messages are StreamMetricsMessage: concatenated, they parse as one (merged)
        return bytes(head.SerializeToString()) + body


def window_kib(maker: FlushMaker, proxies: int = 20) -> float:
    """KiB a full window of one proxy holds (tracemalloc, in this process): ``proxies``
    windows each fed ``capacity`` flushes of the stat set the way the metrics service does."""
    import tracemalloc

    from meshplane.telemetry import TelemetrySettings, TelemetryStore
    from meshplane.telemetry.stats import read_flush
    from meshplane.telemetry.window import ProxyKey

    settings = TelemetrySettings()
    clock = [0.0]
    store = TelemetryStore(settings, clock=lambda: clock[0])
    parsed = []
    for n in range(settings.capacity):
        message = messages().StreamMetricsMessage()
        message.ParseFromString(maker.body(n))
        parsed.append(message)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(proxies):
        window = store.window(ProxyKey("sim", "virtualNode", f"web-{i}", ""))
        assert window is not None
        for n, message in enumerate(parsed):
            clock[0] = n * settings.flush_interval
            window.add(
                read_flush(
                    message.envoy_metrics,
                    clock[0],
                    "sim",
                    "virtualNode",
                    f"web-{i}",
                    settings.max_series,
                )
            )
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / proxies / 1024


def _proc(pid: int) -> tuple[float, int]:
    """(CPU seconds, VmRSS KiB) of a process."""
    with open(f"/proc/{pid}/status") as handle:
        rss = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
    return cpu_seconds(pid), rss


async def _simulate(
    target: str,
    maker: FlushMaker,
    proxies: int,
    flush: float,
    seconds: float,
    probe: Any,
    check: Any,
) -> tuple[list[tuple[float, float, int]], Any]:
    """``proxies`` StreamMetrics streams, one flush each every ``flush`` seconds (spread over
    the interval) for ``seconds``; ``probe()`` (CPU s, RSS KiB) sampled every flush;
    ``check()`` run (in a thread) once before the last flush, every stream still open."""
    bodies: dict[int, bytes] = {}

    def body(n: int) -> bytes:
        if n not in bodies:
            bodies[n] = maker.body(n)
            bodies.pop(n - 2, None)
        return bodies[n]

    started = time.monotonic()
    rounds = max(1, int(seconds / flush))
    # connections of their own (a real proxy has one), at most 10 streams each: the server
    # allows --xds-streams-per-connection (16) at once
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(max(1, -(-proxies // 10)))
    ]
    samples: list[tuple[float, float, int]] = []
    checked: list[Any] = []

    async def one(i: int) -> None:
        channel = channels[i % len(channels)]
        offset = flush * i / proxies

        async def stream() -> AsyncIterator[bytes]:
            for n in range(rounds + 1):  # one more: every stream is open at the last sample
                delay = started + offset + n * flush - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                raw = body(n)
                yield maker.first(f"mesh/sim/virtualNode/web-{i}", raw) if n == 0 else raw

        call = channel.stream_unary(STREAM_METRICS, request_serializer=None)
        await call(stream(), timeout=seconds + 120)

    async def sampler() -> None:
        for n in range(rounds + 1):
            delay = started + n * flush - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            cpu, rss = probe()
            samples.append((time.monotonic() - started, cpu, rss))
            if n == rounds - 1:
                checked.append(await asyncio.to_thread(check))

    try:
        await asyncio.gather(sampler(), *(one(i) for i in range(proxies)))
    finally:
        for channel in channels:
            await channel.close()
    return samples, checked[0] if checked else None


def part_b(root: Path, args: argparse.Namespace) -> None:
    print(
        f"\n(b) control plane: {args.proxies} simulated proxies, one StreamMetrics stream each,"
        f" a flush every {args.flush:g} s for {args.sim_seconds:g} s"
    )
    server = MeshplaneServer(root / "data-b", extra_args=["--log-level", "warning"])
    nginx_port = free_port()
    nginx: Nginx | None = None
    server.start()
    assert server.process is not None
    pid = server.process.pid
    try:
        nginx = Nginx(root / "nginx-b", nginx_port)
        wait_ok(f"http://127.0.0.1:{nginx_port}/", None)
        pair = make_pair(server, "stats", "sim", nginx_port, 20, args.flush)
        try:
            for _ in range(20):
                httpx.get(
                    f"http://127.0.0.1:{pair.egress_port}/", headers={"host": pair.host}, timeout=5
                )
            counters, gauges, histograms = _stat_set(pair.client)
        finally:
            pair.stop()
        maker = FlushMaker(counters, gauges, histograms)
        size = len(maker.body(1))
        print(
            f"stat set of a real client sidecar: {len(counters)} counters, {len(gauges)} gauges,"
            f" {len(histograms)} histograms; one flush {size / 1024:.1f} KiB"
        )
        time.sleep(2)
        cpu0, rss0 = _proc(pid)

        def reporting() -> int:
            with httpx.Client(timeout=60) as http:
                data = http.get(
                    f"{server.url}/meshplane/v1/telemetry", params={"mesh": "sim", "seconds": "60"}
                ).json()
            return sum(1 for p in data["proxies"] if p["reporting"] and p["name"] != "api")

        samples, seen = asyncio.run(
            _simulate(
                f"127.0.0.1:{server.xds_port}",
                maker,
                args.proxies,
                args.flush,
                args.sim_seconds,
                lambda: _proc(pid),
                reporting,
            )
        )
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()
    # CPU over the second half (every stream open, steady); RSS at a third and at the end
    half = samples[len(samples) // 2]
    last = samples[-1]
    third = samples[max(1, len(samples) // 3)]
    cpu_rate = (last[1] - half[1]) / (last[0] - half[0])
    flushes_between = (last[0] - third[0]) / args.flush
    per_flush = (last[2] - third[2]) / max(1.0, flushes_between) / args.proxies
    held = last[2] - rss0
    capacity = round(15 * 60 / 5)
    extrapolated = held / args.proxies + per_flush * max(0.0, capacity - last[0] / args.flush)
    print(f"reporting proxies seen by the control plane: {seen} of {args.proxies}")
    print(
        f"server CPU: {cpu_rate * 100:.1f} % of one core for {args.proxies} proxies ->"
        f" {cpu_rate / args.proxies * 1e6:.0f} us of CPU per proxy per second"
        f" ({cpu_rate * args.flush / args.proxies * 1e3:.2f} ms per flush)"
    )
    print(
        f"server VmRSS: {rss0 / 1024:.1f} MiB before the streams, {last[2] / 1024:.1f} MiB after"
        f" {last[0]:.0f} s -> {held / args.proxies:.1f} KiB per proxy"
        f" ({per_flush:.2f} KiB per proxy per flush kept; a full window of {capacity} flushes:"
        f" ~{extrapolated:.0f} KiB per proxy, extrapolated)"
    )
    print(f"(CPU {cpu0:.1f} s at the start, {last[1]:.1f} s at the end of the run)")
    print(
        f"a full window ({capacity} flushes) of one proxy holds {window_kib(maker):.1f} KiB"
        " (tracemalloc: what the window keeps, without the process's allocator overhead)"
    )


# -- (c) meshplane tap: switching on, entries, switching off --------------------------------


def _logging(process: EnvoyProcess, active_only: bool) -> bool:
    """Whether the proxy's listeners hold the tap's gRPC access logger (active ones only, or
    in any state)."""
    dump = json.loads(_admin(process, "/config_dump?resource=dynamic_listeners"))
    configs = dump.get("configs", [])
    if active_only:
        configs = [c.get("active_state", {}) for c in configs]
    return "envoy.access_loggers.http_grpc" in json.dumps(configs)


def _wait(predicate: Any, timeout: float = 30) -> float:
    """Seconds until ``predicate()`` holds (polled every 5 ms)."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            raise TimeoutError("not within 30 s")
        time.sleep(0.005)
    return time.monotonic() - began


def part_c(root: Path, args: argparse.Namespace) -> None:
    print(
        f"\n(c) meshplane tap: {args.taps} taps of one sidecar pair (GET /meshplane/v1/tap),"
        f" {args.tap_requests} requests each, sent one at a time once both proxies are tapped"
    )
    server = MeshplaneServer(root / "data-c", extra_args=["--log-level", "warning"])
    nginx_port = free_port()
    nginx: Nginx | None = None
    server.start()
    on: list[float] = []
    off: list[float] = []
    gone: list[float] = []
    seen: dict[str, list[float]] = {"outbound": [], "inbound": []}
    missed: dict[str, int] = {"outbound": 0, "inbound": 0}
    try:
        nginx = Nginx(root / "nginx-c", nginx_port)
        wait_ok(f"http://127.0.0.1:{nginx_port}/", None)
        pair = make_pair(server, "stats", "tap", nginx_port, 40, args.flush)
        try:
            for t in range(args.taps):
                lines: queue.Queue[str] = queue.Queue()
                opened = time.monotonic()
                # a plain socket, closed at the end as a CLI that exits closes it
                sock = socket.create_connection(("127.0.0.1", server.api_port), timeout=60)
                query = urllib.parse.urlencode({"mesh": pair.mesh, "pathPrefix": f"/tap-{t}-"})
                sock.sendall(
                    f"GET /meshplane/v1/tap?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
                )
                reader = threading.Thread(target=_read_lines, args=(sock, lines), daemon=True)
                reader.start()
                try:
                    _wait(lambda: _logging(pair.client, True) and _logging(pair.server, True))
                    on.append(time.monotonic() - opened)
                    for i in range(args.tap_requests):
                        path = f"/tap-{t}-{i}"
                        sent = time.monotonic()
                        httpx.get(
                            f"http://127.0.0.1:{pair.egress_port}{path}",
                            headers={"host": pair.host},
                            timeout=5,
                        )
                        wanted = {"outbound", "inbound"}
                        while wanted:
                            left = sent + args.tap_timeout - time.monotonic()
                            try:
                                line = lines.get(timeout=max(0.0, left))
                            except queue.Empty:
                                break
                            entry = json.loads(line)
                            if entry.get("path") == path and entry.get("direction") in wanted:
                                wanted.discard(entry["direction"])
                                seen[entry["direction"]].append(time.monotonic() - sent)
                        for direction in wanted:
                            missed[direction] += 1
                finally:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                inactive = _wait(
                    lambda: not _logging(pair.client, True) and not _logging(pair.server, True)
                )
                off.append(inactive)
                gone.append(
                    inactive
                    + _wait(
                        lambda: (
                            not _logging(pair.client, False) and not _logging(pair.server, False)
                        )
                    )
                )
        finally:
            pair.stop()
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()

    def ms(values: list[float]) -> str:
        if not values:
            return "none"
        return (
            f"p50 {percentile(values, 0.5) * 1000:.0f} ms, p90 {percentile(values, 0.9) * 1000:.0f}"
            f" ms, max {max(values) * 1000:.0f} ms ({len(values)})"
        )

    print(f"tap opened -> both proxies' active listeners hold the logger: {ms(on)}")
    for direction in ("outbound", "inbound"):
        print(
            f"request sent -> its {direction} entry read from the tap: {ms(seen[direction])};"
            f" not within {args.tap_timeout:g} s: {missed[direction]}"
        )
    print(f"tap closed -> the logger off both proxies' active listeners: {ms(off)}")
    print(f"tap closed -> ... and gone from their draining listeners too: {ms(gone)}")


def _read_lines(sock: socket.socket, lines: queue.Queue[str]) -> None:
    """The tap's JSON lines (the chunk sizes and headers of the HTTP answer skipped)."""
    try:
        with sock.makefile("rb") as stream:
            for raw in stream:
                line = raw.decode(errors="replace").strip()
                if line.startswith("{"):
                    lines.put(line)
    except (OSError, ValueError):
        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", default="abc", help="a: data plane, b: control plane, c: meshplane tap"
    )
    parser.add_argument("--rate", type=int, default=500, help="(a) requests/s")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="(a) per mode, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sampling", type=float, default=1.0, help="(a) tracing, percent")
    parser.add_argument("--flush", type=float, default=5.0, help="stats flush interval, s")
    parser.add_argument("--proxies", type=int, default=1000, help="(b) simulated proxies")
    parser.add_argument("--sim-seconds", type=float, default=90.0, help="(b) how long")
    parser.add_argument("--taps", type=int, default=5, help="(c) taps opened one after another")
    parser.add_argument("--tap-requests", type=int, default=5, help="(c) requests per tap")
    parser.add_argument("--tap-timeout", type=float, default=3.0, help="(c) seconds per entry")
    args = parser.parse_args()
    if "a" in args.parts:
        for tool in ("nginx", "h2load"):
            if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
                raise SystemExit(
                    f"{tool} is not installed (apt-get install -y nginx nghttp2-client)"
                )
    print(machine.describe())
    with tempfile.TemporaryDirectory(prefix="meshplane-telemetry-") as tmp:
        root = Path(tmp)
        if "a" in args.parts:
            part_a(root, args)
        if "b" in args.parts:
            part_b(root, args)
        if "c" in args.parts:
            part_c(root, args)


if __name__ == "__main__":
    main()
