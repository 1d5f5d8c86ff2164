"""Convergence: time from an API write until every affected proxy has ACKed the new config,
and control-plane memory per connected proxy.

One real ``meshplane serve`` (SQLite in a temp dir), filled through its API, holds providers
``blue``/``green`` behind router ``color`` (route ``split``) and virtual service
``color.bench``, and consumer virtual nodes ``c0``..``c<N-1>`` that each declare
``color.bench`` as their backend.  A *write* is one boto3 ``UpdateRoute``
changing the blue/green weights (never to 0, so only the consumers' route configuration
changes); every consumer proxy is affected.

a. **Real Envoys** (``--envoys``, default 100): Envoy 1.40 sidecars for ``c0``.., each with
   ``--concurrency 1``, its own workload address (127.0.x.y), egress port and admin port.
   After each write the API's ``GET /meshplane/v1/proxies`` is polled (every
   ``--poll`` s) until every proxy's RDS ``ackedVersion`` changed and every type is
   ``synced`` (*observed*); then each Envoy's own ``http.egress.rds.<name>.update_time``
   (ms since the epoch, set when it applied the update, just before it ACKs) gives the
   per-proxy *applied* time without polling error.
b. **Simulated ADS clients** (``--clients``, default 1000; ``1000,10000`` for the full run,
   about 5 minutes): simulator processes open one stream (and one TCP connection) per proxy
   and ACK like Envoy; each reports every stream's last ACK time after the write
   (CLOCK_MONOTONIC, shared by the processes).  ``--simulator node`` (the default) runs
   ``bench/ads_clients.js`` (Node.js, @grpc/grpc-js, installed in ``bench/node_modules`` by
   ``scripts/setup-venv --with-bench``), ``--simulator python`` the same client in Python
   (``bench.ads_clients``, grpc.aio).  The simulator shares the machine with the server it
   measures (real Envoys are C++ and would not run on its cores); the Node one costs about a
   third of the Python one's CPU per update, so it is the default.  The clients' CPU per
   write is printed next to the server's.  The server's VmRSS is read after one warm-up stream (mesh view built) and
   again once all N are connected and synced: (after - before) / (N - 1) is the control-plane
   memory per connected proxy.  At most ``--burst`` streams connect at once (see below).

Each part starts from a freshly restarted server process (same data dir), and begins with a
one-proxy baseline in the same run.  ``meshplane_change_to_publish_seconds`` (control loop:
change feed to every affected snapshot published) is scraped from ``/metrics`` around every
write, and the server's CPU time (/proc/<pid>/stat) from each write to the last ACK.  Aims:
convergence under 1 s at 1,000 proxies; under 100 KB per proxy.

Fleet shapes (issue 13): ``--xds-workers N`` runs the server with N xDS worker processes on
one port; ``--backend postgresql`` puts the store on a real PostgreSQL (a temporary cluster,
``fsync=on``); ``--replicas 2`` runs two servers on one PostgreSQL database and connects half
of the simulated proxies to each (the write goes through the first).  Server CPU and memory
are summed over every serving process (main processes and their workers, both replicas).
``--matrix`` runs SQLite and PostgreSQL with 1 and 2 xDS workers and PostgreSQL with two
replicas, one after the other, and prints one table of every figure (``docs/benchmarks.md``
section 3).

Connecting thousands of streams at once fails some of them with CANCELLED: while the control
loop translates each new proxy on the event loop, gRPC's server-side backlog of calls not yet
accepted passes its default limits (1,000 soft, 3,000 hard) and gRPC rejects new calls.  Real
Envoys retry; the benchmark instead caps how many streams are connecting at a time.

    python -m bench.convergence [--envoys 100] [--clients 1000[,10000]] [--writes 10]
                                [--large-writes 3] [--client-procs 1] [--burst 500]
                                [--simulator node|python]
                                [--distinct] [--profile DIR [--py-spy PATH]]
                                [--xds-workers N] [--backend sqlite|postgresql]
                                [--replicas 1|2] [--matrix]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import machine
from bench.meshes import COLOR_PORT, consumer_node, provider_node, weight_steps, weights_route
from meshplane.proxy import BootstrapOptions, EnvoyOptions, EnvoyProcess, start_envoy
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.server import MeshplaneServer

MESH = "bench"
SERVICE = f"color.{MESH}"


# --- the mesh --------------------------------------------------------------------------


def create_mesh(server: MeshplaneServer, consumers: int, distinct: bool = False) -> float:
    """The providers, router, route, service (boto3) and ``consumers`` consumer virtual nodes
    (plain keep-alive HTTP/1.1 PUTs on a few connections: a light client); seconds taken by
    the consumers.  ``distinct``: each consumer ``c<i>`` also calls a service of its own,
    ``own<i>.bench`` (provided by virtual node ``p<i>``), so no two consumers have the same
    backends.  Setup, not measured."""
    api = server.boto3()
    api.create_mesh(meshName=MESH)
    for i, color in enumerate(("blue", "green")):
        api.create_virtual_node(
            meshName=MESH, virtualNodeName=color, spec=provider_node(f"127.0.1.{i + 2}")
        )
    api.create_virtual_router(
        meshName=MESH,
        virtualRouterName="color",
        spec={"listeners": [{"portMapping": {"port": COLOR_PORT, "protocol": "http"}}]},
    )
    api.create_route(
        meshName=MESH, virtualRouterName="color", routeName="split", spec=weights_route(90, 10)
    )
    api.create_virtual_service(
        meshName=MESH,
        virtualServiceName=SERVICE,
        spec={"provider": {"virtualRouter": {"virtualRouterName": "color"}}},
    )
    started = time.monotonic()
    asyncio.run(_create_consumers(server.api_port, consumers, distinct))
    return time.monotonic() - started


def _consumer_requests(i: int, distinct: bool) -> list[tuple[str, dict[str, Any]]]:
    """The (collection, body) PUTs that make consumer ``c<i>`` (and its own service)."""
    if not distinct:
        return [("virtualNodes", {"virtualNodeName": f"c{i}", "spec": consumer_node([SERVICE])})]
    own = f"own{i}.{MESH}"
    host = f"127.2.{i // 250}.{i % 250 + 2}"
    return [
        ("virtualNodes", {"virtualNodeName": f"p{i}", "spec": provider_node(host)}),
        (
            "virtualServices",
            {
                "virtualServiceName": own,
                "spec": {"provider": {"virtualNode": {"virtualNodeName": f"p{i}"}}},
            },
        ),
        ("virtualNodes", {"virtualNodeName": f"c{i}", "spec": consumer_node([SERVICE, own])}),
    ]


async def _create_consumers(port: int, count: int, distinct: bool, connections: int = 8) -> None:
    names = iter(range(count))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in names:
                for collection, payload in _consumer_requests(i, distinct):
                    await _put(reader, writer, collection, payload)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


async def _put(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    collection: str,
    payload: dict[str, Any],
) -> None:
    """One keep-alive HTTP/1.1 PUT that creates a resource of ``collection``; raises unless 200."""
    body = json.dumps(payload).encode()
    writer.write(
        f"PUT /v20190125/meshes/{MESH}/{collection} HTTP/1.1\r\nHost: bench\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    answer = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(
            f"creating {collection} {payload}: HTTP {status.decode()} {answer[:300]!r}"
        )


class Writer:
    """Writes the next weights and records when."""

    def __init__(self, server: MeshplaneServer) -> None:
        self.api = server.boto3()
        self.server = server
        self.step = 0

    def write(self) -> tuple[float, float, float]:
        """``(t0 monotonic, t0 epoch, API seconds)`` of one UpdateRoute."""
        self.step += 1
        blue, green = weight_steps(self.step + 1)[-1]
        t0, w0 = time.monotonic(), time.time()
        self.api.update_route(
            meshName=MESH,
            virtualRouterName="color",
            routeName="split",
            spec=weights_route(blue, green),
        )
        return t0, w0, time.monotonic() - t0


# --- control-plane observations -----------------------------------------------------


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def server_pid(server: MeshplaneServer) -> int:
    assert server.process is not None
    return server.process.pid


def serving_pids(servers: list[MeshplaneServer]) -> list[int]:
    """Every process that serves: each server's main process and its xDS workers."""
    pids = []
    for server in servers:
        pids.append(server_pid(server))
        state = _HTTP.get(f"{server.url}/meshplane/v1/fleet").json()
        pids.extend(int(w["pid"]) for w in state.get("xdsWorkers") or [])
    return pids


def total_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def total_rss_kib(pids: list[int]) -> int:
    return sum(rss_kib(pid) for pid in pids)


_HTTP = httpx.Client(timeout=120)  # one client: a new one costs ~50 ms (TLS context)


def metrics(server: MeshplaneServer | list[MeshplaneServer]) -> dict[str, float]:
    """The unlabelled samples of ``/metrics`` (summed over ``server`` if several)."""
    out: dict[str, float] = {}
    for one in server if isinstance(server, list) else [server]:
        text = _HTTP.get(f"{one.url}/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.labels or set(sample.labels) == {"type"}:
                    label = sample.labels.get("type", "")
                    name = sample.name + (f"{{{label}}}" if label else "")
                    out[name] = out.get(name, 0.0) + sample.value
    return out


def publish_delta(before: dict[str, float], after: dict[str, float]) -> tuple[float, int]:
    """Seconds the control loop spent publishing, and translations made, between scrapes."""
    key = "meshplane_change_to_publish_seconds_sum"
    spent = after.get(key, 0.0) - before.get(key, 0.0)
    made = after.get("meshplane_translations_total", 0) - before.get(
        "meshplane_translations_total", 0
    )
    return spent, int(made)


def proxies(server: MeshplaneServer) -> list[dict[str, Any]]:
    data = _HTTP.get(f"{server.url}/meshplane/v1/proxies").json()
    return list(data["proxies"] if isinstance(data, dict) else data)


def all_synced(status: list[dict[str, Any]]) -> bool:
    return all(p["types"] and all(t["synced"] for t in p["types"].values()) for p in status)


class Profiler:
    """py-spy sampling the server during the writes (``--profile``): top frames printed."""

    def __init__(self, binary: str | None, out_dir: Path | None) -> None:
        self.binary = binary
        self.out_dir = out_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.path: Path | None = None

    def start(self, pid: int, name: str) -> None:
        if not self.binary or self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / f"{name}.txt"
        self.proc = subprocess.Popen(
            [
                self.binary,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(self.path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)

    def stop(self, top: int = 18) -> None:
        if self.proc is None or self.path is None:
            return
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
        self.proc = None
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        for line in self.path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + n
        print(f"  py-spy of the server during the writes ({total} samples, {self.path}):")
        for title, table in (("own time", own), ("inclusive", inclusive)):
            print(f"  top {top} by {title}:")
            for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
                print(f"    {100 * n / max(1, total):5.1f}%  {frame[:150]}")


# --- figures --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.0f}"


def summary(
    label: str, convergences: list[float], publishes: list[float], apis: list[float]
) -> str:
    return (
        f"{label:40s} {ms(percentile(convergences, 0.5))} {ms(percentile(convergences, 0.9))} "
        f"{ms(percentile(convergences, 0.99))} "
        f"{ms(max(convergences))}   {ms(statistics.median(publishes))}"
        f" {ms(statistics.median(apis))}   ({len(convergences)} writes)"
    )


HEADER = (
    f"{'':40s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}   {'publish':>8s}"
    f" {'API':>8s}"
    "   publish = control loop, change feed -> every snapshot (median)"
)


# --- a. real Envoys -------------------------------------------------------------------


class Envoys:
    def __init__(self) -> None:
        self.processes: list[tuple[int, int, EnvoyProcess]] = []  # (index, egress port, process)

    def start(self, server: MeshplaneServer, count: int, batch: int = 10) -> None:
        """Start Envoys for ``c<len(processes)>``.. until there are ``count``."""
        for first in range(len(self.processes), count, batch):
            started = []
            for i in range(first, min(count, first + batch)):
                egress = free_port()
                address = f"127.0.{2 + i // 250}.{i % 250 + 2}"
                options = BootstrapOptions(
                    resource=f"mesh/{MESH}/virtualNode/c{i}",
                    xds_port=server.xds_port,
                    admin_port=0,
                    concurrency=1,
                    log_level="warning",
                    workload_address=address,
                    egress_port=egress,
                )
                process = start_envoy(EnvoyOptions(options, drain_time=1.0))
                self.processes.append((i, egress, process))
                started.append(process)
            for process in started:
                process.wait_admin(60)

    def update_times(self) -> list[float]:
        """Each Envoy's egress RDS ``update_time`` (epoch seconds)."""

        def one(entry: tuple[int, int, EnvoyProcess]) -> float:
            _, egress, process = entry
            admin = process.admin_address()
            name = f"http.egress.rds.rds_egress_http_{egress}.update_time"
            url = f"http://{admin}/stats?filter=^{name}$"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            for line in text.splitlines():
                key, _, value = line.partition(": ")
                if key == name:
                    return int(value) / 1000
            raise RuntimeError(f"no {name} in {text!r}")

        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(one, self.processes))

    def rss_mib(self) -> float:
        return (
            sum(rss_kib(p.pid) for _, _, p in self.processes) / 1024 / max(1, len(self.processes))
        )

    def stop(self) -> None:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda e: e[2].stop(timeout=5), self.processes))
        self.processes = []


def wait_for(predicate: Any, what: str, timeout: float, interval: float = 0.1) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def rds_versions(status: list[dict[str, Any]]) -> dict[str, str]:
    return {p["nodeId"]: p["types"].get("rds", {}).get("ackedVersion", "") for p in status}


def all_connected(server: MeshplaneServer, size: int) -> bool:
    """``size`` proxies are connected, each synced with an acked route configuration."""
    status = proxies(server)
    return (
        len(status) == size
        and all_synced(status)
        and all(p["types"].get("rds", {}).get("ackedVersion") for p in status)
    )


def all_acked(server: MeshplaneServer, before: dict[str, str], costs: list[float]) -> bool:
    """Every proxy of ``before`` acked a route configuration other than the one it had, and
    every type is synced (the poll's duration is appended to ``costs``)."""
    started = time.monotonic()
    status = proxies(server)
    costs.append(time.monotonic() - started)
    versions = rds_versions(status)
    return all_synced(status) and all(
        versions.get(node) and versions[node] != version for node, version in before.items()
    )


def run_envoys(
    server: MeshplaneServer, count: int, writes: int, poll: float, profiler: Profiler
) -> None:
    print(f"\n== a. {count} real Envoy sidecars (--concurrency 1), {writes} writes each")
    envoys = Envoys()
    rss0 = rss_kib(server_pid(server))
    try:
        writer = Writer(server)
        rows = []
        for label, size in (("1 Envoy (baseline)", 1), (f"{count} Envoys", count)):
            if size > len(envoys.processes):
                started = time.monotonic()
                envoys.start(server, size)  # the baseline Envoy is c0; then c1..
                wait_for(
                    partial(all_connected, server, size),
                    f"{size} Envoys to connect and sync",
                    300,
                    0.5,
                )
                print(
                    f"{size} Envoy(s) started, connected and synced in "
                    f"{time.monotonic() - started:.1f} s"
                )
            convergences, applied, publishes, apis, polls, cpus = [], [], [], [], [], []
            if size > 1:
                profiler.start(server_pid(server), f"server-{size}-envoys")
            for _ in range(writes):
                before_status = rds_versions(proxies(server))
                before = metrics(server)
                cpu0 = cpu_seconds(server_pid(server))
                t0, w0, api_seconds = writer.write()
                poll_costs: list[float] = []
                wait_for(
                    partial(all_acked, server, before_status, poll_costs),
                    "every Envoy to ACK the write",
                    120,
                    poll,
                )
                observed = time.monotonic() - t0
                cpus.append(cpu_seconds(server_pid(server)) - cpu0)
                applied.append(max(t - w0 for t in envoys.update_times()))
                convergences.append(observed)
                apis.append(api_seconds)
                polls.append(statistics.median(poll_costs))
                publishes.append(publish_delta(before, metrics(server))[0])
                time.sleep(0.2)
            profiler.stop()
            rows.append(summary(f"{label}: observed via API", convergences, publishes, apis))
            rows.append(summary(f"{label}: applied (Envoy)", applied, publishes, apis))
            print(
                f"  {label}: one /meshplane/v1/proxies poll costs "
                f"{statistics.median(polls) * 1000:.1f} ms (median); server CPU per write "
                f"{statistics.median(cpus) * 1000:.0f} ms, polls included (median)"
            )
        rss1 = rss_kib(server_pid(server))
        print(HEADER)
        for row in rows:
            print(row)
        print(
            f"control plane VmRSS {rss0 / 1024:.0f} MiB before the Envoys, "
            f"{rss1 / 1024:.0f} MiB with {count}; Envoy VmRSS {envoys.rss_mib():.0f} MiB each"
        )
    finally:
        envoys.stop()


# --- b. simulated ADS clients -------------------------------------------------------


ROOT = Path(__file__).resolve().parent.parent
SIMULATORS = ("node", "python")
SIMULATOR_NAMES = {
    "node": "node (bench/ads_clients.js, @grpc/grpc-js)",
    "python": "python (bench/ads_clients.py, grpc.aio)",
}


def simulator_command(simulator: str) -> list[str]:
    """The command that starts one simulated-client process (``--target``/``--mesh`` follow):
    ``node bench/ads_clients.js`` (the default) or ``python -m bench.ads_clients``.  Raises
    ``RuntimeError`` naming the fix when Node.js or the simulator's npm packages are missing."""
    if simulator == "python":
        return [sys.executable, "-m", "bench.ads_clients"]
    if simulator != "node":
        raise ValueError(f"unknown simulator {simulator!r} (one of {', '.join(SIMULATORS)})")
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(
            "the node simulator needs Node.js 20+ (`node` is not on PATH): install it, then "
            "run `bash scripts/setup-venv --with-bench` (or use --simulator python)"
        )
    if not (ROOT / "bench" / "node_modules" / "@grpc" / "grpc-js").is_dir():
        raise RuntimeError(
            "the node simulator's packages are not installed (bench/node_modules/@grpc/grpc-js "
            "is missing): run `bash scripts/setup-venv --with-bench` (or use --simulator python)"
        )
    return [node, str(ROOT / "bench" / "ads_clients.js")]


class Clients:
    """Simulated-client processes: ``bench/ads_clients.js`` (``simulator="node"``) or
    ``bench.ads_clients`` (``"python"``), one protocol."""

    def __init__(
        self,
        servers: MeshplaneServer | list[MeshplaneServer],
        procs: int,
        simulator: str = "node",
    ) -> None:
        """``procs`` processes (at least one per server), process ``i`` connecting to server
        ``i % len(servers)``: the proxies are spread evenly over the servers."""
        if not isinstance(servers, list):
            servers = [servers]
        procs = max(procs, len(servers))
        command = simulator_command(simulator)
        self.simulator = simulator
        self.procs = [
            subprocess.Popen(
                [
                    *command,
                    "--target",
                    f"127.0.0.1:{servers[i % len(servers)].xds_port}",
                    "--mesh",
                    MESH,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for i in range(procs)
        ]
        self.used: set[int] = set()
        self.pids = [proc.pid for proc in self.procs]

    def ask(self, commands: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        for i, command in commands.items():
            proc = self.procs[i]
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        answers = {}
        for i in commands:
            stdout = self.procs[i].stdout
            assert stdout is not None
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"client process {i} exited ({self.procs[i].poll()})")
            answer = json.loads(line)
            if "error" in answer:
                raise RuntimeError(f"client process {i}: {answer['error']}")
            answers[i] = answer
        return answers

    def connect(self, start: int, count: int, burst: int) -> float:
        """Connect proxies ``start``.. spread over the processes; seconds until all synced."""
        share = -(-count // len(self.procs))
        commands = {}
        for i in range(len(self.procs)):
            first = start + i * share
            n = min(share, start + count - first)
            if n > 0:
                commands[i] = {
                    "cmd": "connect",
                    "start": first,
                    "count": n,
                    "burst": max(1, burst // len(self.procs)),
                }
                self.used.add(i)
        return max(float(a["seconds"]) for a in self.ask(commands).values())

    def converge(self, t0: float) -> list[float]:
        answers = self.ask({i: {"cmd": "converge", "t0": t0} for i in sorted(self.used)})
        return [t for a in answers.values() for t in a["acks"]]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.write(json.dumps({"cmd": "close"}) + "\n")
                    proc.stdin.flush()
                except BrokenPipeError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Writes:
    """What was observed over a series of writes."""

    lasts: list[float] = field(default_factory=list)
    medians: list[float] = field(default_factory=list)
    publishes: list[float] = field(default_factory=list)
    apis: list[float] = field(default_factory=list)
    translations: list[int] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    """Server CPU seconds from the write until every proxy ACKed (quiet time excluded)."""
    process_cpu: list[list[float]] = field(default_factory=list)
    """The same, per serving process (in the order of ``serving_pids``)."""
    client_cpu: list[float] = field(default_factory=list)
    """The simulated clients' CPU seconds over the same time (quiet time included)."""
    rss_kib: list[int] = field(default_factory=list)


def converge_writes(
    servers: list[MeshplaneServer], clients: Clients, writer: Writer, writes: int, pids: list[int]
) -> Writes:
    out = Writes()
    for _ in range(writes):
        before = metrics(servers)
        each0 = [cpu_seconds(pid) for pid in pids]
        client0 = total_cpu(clients.pids)
        t0, _, api_seconds = writer.write()
        acks = clients.converge(t0)
        each = [cpu_seconds(pid) - before for pid, before in zip(pids, each0, strict=True)]
        out.process_cpu.append(each)
        out.server_cpu.append(sum(each))
        out.client_cpu.append(total_cpu(clients.pids) - client0)
        out.lasts.append(max(acks))
        out.medians.append(statistics.median(acks))
        spent, made = publish_delta(before, metrics(servers))
        out.publishes.append(spent)
        out.translations.append(made)
        out.apis.append(api_seconds)
        out.rss_kib.append(total_rss_kib(pids))
    return out


def run_clients(
    servers: list[MeshplaneServer],
    count: int,
    writes: int,
    procs: int,
    burst: int,
    profiler: Profiler,
    simulator: str = "node",
) -> dict[str, Any]:
    print(
        f"\n== b. {count} simulated ADS clients ({max(procs, len(servers))} {simulator} "
        f"simulator process(es)), {writes} writes"
    )
    clients = Clients(servers, procs, simulator)
    writer = Writer(servers[0])
    pids = serving_pids(servers)
    try:
        rss_start = total_rss_kib(pids)
        warm = clients.connect(0, 1, 1)
        time.sleep(0.5)
        rss0 = total_rss_kib(pids)
        base = converge_writes(servers, clients, writer, 3, pids)
        started = time.monotonic()
        connected = clients.connect(1, count - 1, burst)
        wall = time.monotonic() - started
        time.sleep(1.0)
        rss1 = total_rss_kib(pids)
        started = time.monotonic()
        status = proxies(servers[0])
        status_seconds = time.monotonic() - started
        deadline = time.monotonic() + 15  # other replicas' proxies show within a heartbeat
        while (len(status) != count or not all_synced(status)) and time.monotonic() < deadline:
            time.sleep(0.5)
            status = proxies(servers[0])
        if len(status) != count or not all_synced(status):
            raise RuntimeError(
                f"the API's proxy status disagrees with the clients ({len(status)} of {count})"
            )
        profiler.start(server_pid(servers[0]), f"server-{count}-clients")
        measured = converge_writes(servers, clients, writer, writes, pids)
        profiler.stop()
    finally:
        clients.close()
    per_proxy = (rss1 - rss0) * 1024 / (count - 1)
    print(
        f"first stream synced in {warm * 1000:.0f} ms; {count - 1} more connected and synced in "
        f"{connected:.1f} s ({wall:.1f} s wall); GET /meshplane/v1/proxies: "
        f"{status_seconds * 1000:.0f} ms"
    )
    print(HEADER)
    m = measured
    print(summary("1 proxy (baseline): last ACK", base.lasts, base.publishes, base.apis))
    print(summary(f"{count} proxies: last ACK (= convergence)", m.lasts, m.publishes, m.apis))
    print(summary(f"{count} proxies: median proxy's ACK", m.medians, m.publishes, m.apis))
    made = statistics.median(m.translations)
    cpu = statistics.median(m.server_cpu)
    client_cpu = statistics.median(m.client_cpu)
    per_translation = statistics.median(m.publishes) / max(1, made)
    print(
        f"per write (medians): {made:.0f} translations, publish {per_translation * 1e6:.0f} us "
        f"per translation (wall, pushes in between); server CPU ({len(pids)} serving processes) {cpu:.2f} s = "
        f"{cpu / count * 1e6:.0f} us per proxy (translate + push + ACK); simulated clients "
        f"({len(clients.pids)} processes) {client_cpu:.2f} s = {client_cpu / count * 1e6:.0f} us "
        "per proxy"
    )
    if len(pids) > 1:
        shares = [statistics.median(cpus) for cpus in zip(*m.process_cpu, strict=True)]
        print("server CPU per process (medians): " + ", ".join(f"{c:.2f} s" for c in shares))
    print(
        f"control plane VmRSS ({len(pids)} processes): {rss_start / 1024:.0f} MiB at start, "
        f"{rss0 / 1024:.0f} MiB with 1 stream, {rss1 / 1024:.0f} MiB with {count} -> "
        f"{per_proxy / 1024:.1f} KiB per connected proxy; after each write: "
        + ", ".join(f"{r / 1024:.0f}" for r in m.rss_kib)
        + " MiB"
    )
    return {
        "proxies": count,
        "p50": percentile(m.lasts, 0.5),
        "p90": percentile(m.lasts, 0.9),
        "p99": percentile(m.lasts, 0.99),
        "max": max(m.lasts),
        "median_proxy_p50": percentile(m.medians, 0.5),
        "publish": statistics.median(m.publishes),
        "cpu": cpu,
        "cpu_per_proxy": cpu / count,
        "client_cpu_per_proxy": client_cpu / count,
        "per_proxy": per_proxy,
        "writes": writes,
        "simulator": simulator,
    }


# --- main -----------------------------------------------------------------------------


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if os.geteuid() == 0 else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(frozen=True)
class Shape:
    """One control-plane shape: the store backend, xDS workers per server, servers."""

    backend: str = "sqlite"
    workers: int = 1
    replicas: int = 1

    @property
    def label(self) -> str:
        servers = f"{self.replicas} replicas" if self.replicas > 1 else "1 server"
        return f"{self.backend}, {servers}, {self.workers} xDS worker(s) each"


MATRIX = (
    Shape("sqlite", 1),
    Shape("sqlite", 2),
    Shape("postgresql", 1),
    Shape("postgresql", 2),
    Shape("postgresql", 1, 2),
)


def run_shape(
    shape: Shape, args: argparse.Namespace, postgres: PostgresServer | None, profiler: Profiler
) -> list[dict[str, Any]]:
    """Part a (one server only) and part b of one shape; part b's figures."""
    sizes = [int(size) for size in args.clients.split(",") if size.strip()]
    print(f"\n##### {shape.label}")
    results = []
    with tempfile.TemporaryDirectory(prefix="meshplane-bench-") as tmp:
        url = postgres.create_database() if postgres is not None else None
        extra = ["--log-level", "warning", "--xds-workers", str(shape.workers)]
        servers = [
            MeshplaneServer(Path(tmp) / f"data{i}", extra_args=extra, database_url=url)
            for i in range(shape.replicas)
        ]
        try:
            for server in servers:
                server.start()
            consumers = max([args.envoys, *sizes])
            seconds = create_mesh(servers[0], consumers, args.distinct)
            print(
                f"mesh: {consumers} consumer virtual nodes created through the API in "
                f"{seconds:.1f} s ({consumers / seconds:.0f}/s)"
                + (", each with a backend service of its own" if args.distinct else "")
            )
            if args.envoys and shape.replicas == 1:
                servers[0].restart()
                run_envoys(servers[0], args.envoys, args.writes, args.poll, profiler)
            for size in sizes:
                for server in servers:
                    server.restart()
                writes = args.writes if size <= 2000 else args.large_writes
                found = run_clients(
                    servers, size, writes, args.client_procs, args.burst, profiler, args.simulator
                )
                results.append({**found, "shape": shape})
        except BaseException:
            for server in servers:
                print(f"--- server log (tail)\n{server.log()[-4000:]}")
            raise
        finally:
            for server in servers:
                server.stop()
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    """The figures of every shape, as docs/benchmarks.md's table has them."""
    print(
        "\n| shape | proxies | last ACK p50 / p90 / p99 / max ms | median proxy p50 ms "
        "| publish ms | server CPU per write | CPU per proxy update | memory per proxy "
        "| simulator: its CPU per proxy update |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['shape'].label} | {r['proxies']:,} | {r['p50'] * 1000:,.0f} / "
            f"{r['p90'] * 1000:,.0f} / {r['p99'] * 1000:,.0f} / {r['max'] * 1000:,.0f} "
            f"({r['writes']} writes) | {r['median_proxy_p50'] * 1000:,.0f} | "
            f"{r['publish'] * 1000:,.0f} | {r['cpu']:.2f} s | {r['cpu_per_proxy'] * 1e6:.0f} µs "
            f"| {r['per_proxy'] / 1024:.1f} KiB | {r['simulator']}: "
            f"{r['client_cpu_per_proxy'] * 1e6:.0f} µs |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envoys", type=int, default=100, help="real Envoys (0: skip part a)")
    parser.add_argument(
        "--clients",
        default="1000",
        help="simulated client counts, comma-separated ('' skips part b); "
        "1000,10000 for the full run (about 5 minutes)",
    )
    parser.add_argument("--writes", type=int, default=10, help="writes per measurement")
    parser.add_argument(
        "--large-writes",
        type=int,
        default=3,
        help="writes when there are more than 2,000 simulated clients",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=1,
        help="simulated-client processes (the clients are spread over them)",
    )
    parser.add_argument(
        "--simulator",
        choices=SIMULATORS,
        default="node",
        help="the simulated clients: node (bench/ads_clients.js, @grpc/grpc-js, about half "
        "the CPU per update) or python (bench.ads_clients, grpc.aio)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=500,
        help="simulated clients connecting (not yet synced) at a time",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=0.05,
        help="seconds between /meshplane/v1/proxies polls (part a)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the server with py-spy during the writes; raw stacks to DIR",
    )
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="the py-spy binary")
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="each consumer also calls a service of its own: no two have the same backends",
    )
    parser.add_argument(
        "--xds-workers", type=int, default=1, help="xDS worker processes of each server"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--replicas",
        type=int,
        choices=(1, 2),
        default=1,
        help="servers on one PostgreSQL database, the proxies spread over them",
    )
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="every shape: SQLite and PostgreSQL with 1 and 2 xDS workers, PostgreSQL with 2 "
        "replicas (part b only unless --envoys is given)",
    )
    args = parser.parse_args()
    if args.replicas > 1 and args.backend != "postgresql":
        parser.error("--replicas 2 shares one database: add --backend postgresql")
    if args.matrix and "--envoys" not in sys.argv:
        args.envoys = 0
    if args.clients.strip():
        try:
            simulator_command(args.simulator)
        except RuntimeError as error:
            parser.error(str(error))
    profiler = Profiler(args.py_spy, args.profile)
    raise_fd_limit()
    print(machine.describe())
    if args.clients.strip():
        print(f"simulated ADS clients: {SIMULATOR_NAMES[args.simulator]}")
    shapes = MATRIX if args.matrix else (Shape(args.backend, args.xds_workers, args.replicas),)
    postgres = None
    if any(shape.backend == "postgresql" for shape in shapes):
        postgres = PostgresServer(fsync=True).start()
    results = []
    try:
        for shape in shapes:
            results.extend(run_shape(shape, args, postgres, profiler))
    finally:
        if postgres is not None:
            postgres.close()
    if results:
        print(f"\n{machine.describe()}")
        print(f"simulated ADS clients: {SIMULATOR_NAMES[args.simulator]}")
        print_table(results)


if __name__ == "__main__":
    main()
