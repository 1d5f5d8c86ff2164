"""Latency overhead of the two-sidecar path against a direct call, at a constant request rate.

The upstream is nginx (``apt install nginx``), one worker, serving a small static 200 (``ok``)
on 127.0.0.1:<port>, started from a temp dir with ``daemon off`` and its own pid and log
paths.  A real ``meshplane serve`` holds a mesh with virtual node ``server`` (one HTTP
listener, DNS discovery at its workload address 127.0.x.y), virtual service ``server.lat``
and virtual node ``client`` (backend ``server.lat``); each runs a real Envoy 1.40 sidecar
(``--concurrency 1`` by default).  Paths measured:

- **direct**: load generator -> nginx;
- **static Envoy**: load generator -> a reference Envoy (same binary, minimal static config:
  listener, router, one static cluster) -> nginx: one proxy hop without meshplane;
- **server sidecar**: load generator -> the server sidecar's ingress listener -> nginx;
- **two sidecars**: load generator -> the client sidecar's egress listener
  (Host: server.lat) -> the server sidecar's ingress -> nginx, as an application in the mesh
  calls its backend.

Method.  Constant rate (``--rates``, requests/s, spread over ``--connections`` HTTP/1.1
keep-alive connections) with h2load's ``--rps`` (open-loop per connection, well below
capacity), each request's latency from its ``--log-file`` (request sent to response
complete, µs), so percentiles are exact over all requests.  The paths are measured in
interleaved rounds (``--rounds``, each ``--seconds`` long after a 1 s warm-up), samples pooled
per path, so drift on a shared machine hits every path alike.  The overhead is the difference
of the percentiles of a path and of the direct call measured in the same rounds.  Then, as a
second view, wrk ``--latency`` closed-loop (back to back) with 1 and 8 connections.  Aim: two
sidecars add under 0.3 ms at p90.  ``--nice -10`` runs everything at a higher priority, so
that other work on a shared machine disturbs it less.  Not part of the test suite.

    python -m bench.latency [--rates 200,1000] [--connections 4] [--rounds 3] [--seconds 4]
                            [--nice -10]

With ``--capture`` (root) it measures the cost of transparent capture instead, across two hosts
(network namespaces): a direct call, the explicit-egress path and the captured path, in the
same run (:mod:`bench.latency_capture`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import machine
from meshplane.proxy import BootstrapOptions, EnvoyOptions, EnvoyProcess, start_envoy
from meshplane.proxy.runner import find_envoy_binary
from tests.support.ports import free_port
from tests.support.server import MeshplaneServer

MESH = "lat"
SERVICE = f"server.{MESH}"


class Nginx:
    """nginx in the foreground from a temp dir: one worker, static 200 on 127.0.0.1:port."""

    def __init__(
        self,
        root: Path,
        port: int,
        listens: tuple[str, ...] = (),
        prefix: tuple[str, ...] = (),
    ) -> None:
        """``listens``: what nginx binds (default ``127.0.0.1:<port>``); ``prefix``: the
        command it runs under (``ip netns exec <ns>`` to run it on a test host)."""
        self.root = root
        self.port = port
        listen = " ".join(f"listen {item};" for item in listens or (f"127.0.0.1:{port}",))
        root.mkdir(parents=True, exist_ok=True)
        (root / "nginx.conf").write_text(
            textwrap.dedent(f"""\
            worker_processes 1;
            daemon off;
            pid {root}/nginx.pid;
            error_log {root}/error.log warn;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                client_body_temp_path {root}/body;
                proxy_temp_path {root}/proxy;
                fastcgi_temp_path {root}/fastcgi;
                uwsgi_temp_path {root}/uwsgi;
                scgi_temp_path {root}/scgi;
                keepalive_requests 10000000;
                keepalive_timeout 300s;
                server {{
                    {listen}
                    location / {{ default_type text/plain; return 200 "ok\\n"; }}
                }}
            }}
            """)
        )
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(
            [
                *prefix,
                binary,
                "-p",
                str(root),
                "-c",
                str(root / "nginx.conf"),
                "-e",
                str(root / "error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: fast shutdown of master and worker
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class StaticEnvoy:
    """A reference Envoy with a minimal static config (listener -> router -> nginx), the same
    binary and concurrency as the sidecars: what one proxy hop costs without meshplane."""

    def __init__(self, root: Path, port: int, upstream: int, concurrency: int) -> None:
        root.mkdir(parents=True, exist_ok=True)

        def address(p: int) -> dict[str, object]:
            return {"socket_address": {"address": "127.0.0.1", "port_value": p}}

        config = {
            "static_resources": {
                "listeners": [
                    {
                        "address": address(port),
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": {
                                            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                            "http_connection_manager.v3.HttpConnectionManager",
                                            "stat_prefix": "reference",
                                            "route_config": {
                                                "virtual_hosts": [
                                                    {
                                                        "name": "all",
                                                        "domains": ["*"],
                                                        "routes": [
                                                            {
                                                                "match": {"prefix": "/"},
                                                                "route": {"cluster": "nginx"},
                                                            }
                                                        ],
                                                    }
                                                ]
                                            },
                                            "http_filters": [
                                                {
                                                    "name": "envoy.filters.http.router",
                                                    "typed_config": {
                                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router."
                                                        "v3.Router"
                                                    },
                                                }
                                            ],
                                        },
                                    }
                                ]
                            }
                        ],
                    }
                ],
                "clusters": [
                    {
                        "name": "nginx",
                        "type": "STATIC",
                        "connect_timeout": "1s",
                        "load_assignment": {
                            "cluster_name": "nginx",
                            "endpoints": [
                                {"lb_endpoints": [{"endpoint": {"address": address(upstream)}}]}
                            ],
                        },
                    }
                ],
            },
            "admin": {"address": address(0)},
        }
        (root / "envoy.json").write_text(json.dumps(config))
        self.process = subprocess.Popen(
            [
                find_envoy_binary(),
                "-c",
                str(root / "envoy.json"),
                "--concurrency",
                str(concurrency),
                "--log-level",
                "warning",
                "--use-dynamic-base-id",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(root / "envoy.log").open("wb"),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_ok(url: str, host: str | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    headers = {"host": host} if host else {}
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, headers=headers, timeout=2)
            if response.status_code == 200 and response.text == "ok\n":
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.1)
    raise TimeoutError(f"{url} (Host {host}) never answered 200 ok: {last}")


@dataclass(frozen=True, slots=True)
class Path_:
    name: str
    url: str
    host: str | None
    prefix: tuple[str, ...] = ()
    """The command the load generator runs under (``ip netns exec <ns>``: from a test host)."""


def h2load(path: Path_, rate: int, connections: int, seconds: float, log: Path) -> list[float]:
    """Latencies (ms) of ``rate`` req/s over ``connections`` connections for ``seconds``."""
    per_connection = max(1, round(rate / connections))
    args = [
        "h2load",
        "--h1",
        "-c",
        str(connections),
        "-t",
        "1",
        "--rps",
        str(per_connection),
        "-D",
        f"{round(seconds * 1000)}ms",
        "--warm-up-time",
        "1s",
        "--log-file",
        str(log),
    ]
    if path.host:
        args += ["-H", f":authority: {path.host}"]  # h2load turns it into Host for HTTP/1.1
    out = subprocess.run(
        [*path.prefix, *args, path.url], capture_output=True, text=True, timeout=seconds + 60
    )
    if out.returncode != 0:
        raise RuntimeError(f"h2load failed: {out.stdout}\n{out.stderr}")
    latencies = []
    failed: dict[str, int] = {}
    for line in log.read_text().splitlines():
        _, status, micros = line.split("\t")[:3]
        if status != "200":
            failed[status] = failed.get(status, 0) + 1
            continue
        latencies.append(int(micros) / 1000)
    if failed:
        raise RuntimeError(f"requests to {path.name} failed (status: count) {failed}")
    return latencies


def wrk(path: Path_, connections: int, seconds: int) -> tuple[dict[str, float], float]:
    """wrk --latency closed loop: percentiles (ms) and requests/s."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if path.host:
        args += ["-H", f"Host: {path.host}"]
    out = subprocess.run(
        [*path.prefix, *args, path.url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    percentiles: dict[str, float] = {}
    rate = 0.0
    in_distribution = False
    for line in out.splitlines():
        stripped = line.strip()
        if stripped.startswith("Latency Distribution"):
            in_distribution = True
            continue
        if in_distribution and "%" in stripped:
            key, value = stripped.split()
            percentiles[key] = _wrk_ms(value)
            if key == "99%":
                in_distribution = False
        if stripped.startswith("Requests/sec:"):
            rate = float(stripped.split()[1])
        if "Non-2xx" in stripped or "Socket errors" in stripped:
            raise RuntimeError(f"wrk errors on {path.name}: {stripped}")
    return percentiles, rate


def _wrk_ms(value: str) -> float:
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    raise ValueError(value)


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError):
                continue
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def start_sidecar(
    server: MeshplaneServer,
    node: str,
    address: str,
    app_port: int | None,
    egress_port: int,
    concurrency: int,
) -> EnvoyProcess:
    options = BootstrapOptions(
        resource=f"mesh/{MESH}/virtualNode/{node}",
        xds_port=server.xds_port,
        admin_port=0,
        concurrency=concurrency,
        log_level="warning",
        workload_address=address,
        app_port=app_port,
        egress_port=egress_port,
    )
    process = start_envoy(EnvoyOptions(options, drain_time=1.0))
    process.wait_admin(30)
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="200,1000", help="constant request rates (req/s)")
    parser.add_argument(
        "--connections", type=int, default=4, help="connections the constant rate is spread over"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="per path, per round")
    parser.add_argument("--wrk-seconds", type=int, default=5, help="0 skips the wrk runs")
    parser.add_argument("--envoy-concurrency", type=int, default=1)
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="renice this run and every process it starts (negative needs root): "
        "less disturbance from other work on a shared machine",
    )
    parser.add_argument(
        "--capture",
        action="store_true",
        help="root: captured vs explicit-egress vs direct across two hosts (bench.latency_capture)",
    )
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)
    if args.capture:
        from bench import latency_capture

        latency_capture.main(args)
        return
    for tool in ("nginx", "h2load", "wrk"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(
                f"{tool} is not installed (apt-get install -y nginx nghttp2-client wrk)"
            )
    print(machine.describe() + (f", nice {args.nice}" if args.nice else ""))
    with tempfile.TemporaryDirectory(prefix="meshplane-latency-") as tmp:
        root = Path(tmp)
        nginx_port = free_port()
        address = f"127.0.{100 + os.getpid() % 100}.{2 + os.getpid() % 200}"
        listener_port = free_port(address)
        egress_port = free_port()
        server = MeshplaneServer(root / "data", extra_args=["--log-level", "warning"])
        nginx: Nginx | None = None
        reference: StaticEnvoy | None = None
        reference_port = free_port()
        sidecars: list[EnvoyProcess] = []
        server.start()
        try:
            nginx = Nginx(root / "nginx", nginx_port)
            reference = StaticEnvoy(
                root / "reference", reference_port, nginx_port, args.envoy_concurrency
            )
            api = server.boto3()
            api.create_mesh(meshName=MESH)
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName="server",
                spec={
                    "listeners": [{"portMapping": {"port": listener_port, "protocol": "http"}}],
                    "serviceDiscovery": {"dns": {"hostname": address}},
                },
            )
            api.create_virtual_service(
                meshName=MESH,
                virtualServiceName=SERVICE,
                spec={"provider": {"virtualNode": {"virtualNodeName": "server"}}},
            )
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName="client",
                spec={"backends": [{"virtualService": {"virtualServiceName": SERVICE}}]},
            )
            sidecars.append(
                start_sidecar(
                    server, "server", address, nginx_port, free_port(), args.envoy_concurrency
                )
            )
            sidecars.append(
                start_sidecar(
                    server,
                    "client",
                    f"127.0.{100 + os.getpid() % 100}.{3 + os.getpid() % 200}",
                    None,
                    egress_port,
                    args.envoy_concurrency,
                )
            )
            paths = [
                Path_("direct", f"http://127.0.0.1:{nginx_port}/", None),
                Path_("static Envoy", f"http://127.0.0.1:{reference_port}/", None),
                Path_("server sidecar", f"http://{address}:{listener_port}/", None),
                Path_("two sidecars", f"http://127.0.0.1:{egress_port}/", SERVICE),
            ]
            for path in paths:
                wait_ok(path.url, path.host)
            print(
                f"nginx on 127.0.0.1:{nginx_port}; server sidecar ingress {address}:"
                f"{listener_port}; client sidecar egress 127.0.0.1:{egress_port} "
                f"(Envoy --concurrency {args.envoy_concurrency})"
            )
            run_constant(root, paths, args)
            if args.wrk_seconds:
                processes = {
                    "nginx": children(nginx.process.pid)[0],
                    "static Envoy": reference.pid,
                    "server Envoy": sidecars[0].pid,
                    "client Envoy": sidecars[1].pid,
                }
                run_wrk(paths, args.wrk_seconds, processes)
        finally:
            for sidecar in sidecars:
                sidecar.stop()
            if reference is not None:
                reference.stop()
            if nginx is not None:
                nginx.stop()
            server.stop()


def run_constant(root: Path, paths: list[Path_], args: argparse.Namespace) -> None:
    for rate in (int(r) for r in args.rates.split(",")):
        samples: dict[str, list[float]] = {p.name: [] for p in paths}
        for round_ in range(args.rounds):
            for path in paths:
                log = root / f"h2load-{rate}-{round_}-{path.name.replace(' ', '_')}.log"
                samples[path.name] += h2load(path, rate, args.connections, args.seconds, log)
        direct = samples["direct"]
        print(
            f"\nconstant {rate} req/s over {args.connections} connections (h2load --rps), "
            f"{args.rounds} x {args.seconds:g} s per path, interleaved"
        )
        print(
            f"{'path':16s} {'requests':>8s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s}"
            f"   {'+p50':>7s} {'+p90':>7s} {'+p99':>7s}  (overhead vs direct, ms)"
        )
        for path in paths:
            values = samples[path.name]
            cells = [percentile(values, q) for q in (0.5, 0.9, 0.99)]
            extra = [
                c - percentile(direct, q) for c, q in zip(cells, (0.5, 0.9, 0.99), strict=True)
            ]
            print(
                f"{path.name:16s} {len(values):8d} "
                + " ".join(f"{c:8.3f}" for c in cells)
                + "   "
                + " ".join(f"{e:+7.3f}" for e in extra)
            )


def run_wrk(paths: list[Path_], seconds: int, processes: dict[str, int]) -> None:
    """Closed loop; also each process's CPU time per request (/proc/<pid>/stat)."""
    for connections in (1, 8):
        print(
            f"\nwrk --latency, closed loop, {connections} connection(s), {seconds} s per path; "
            "CPU µs per request of each process"
        )
        print(
            f"{'path':16s} {'req/s':>8s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s}"
            f"   {'+p50':>7s} {'+p90':>7s} {'+p99':>7s}   "
            + " ".join(f"{name:>12s}" for name in processes)
        )
        results = {}
        for path in paths:
            before = {name: cpu_seconds(pid) for name, pid in processes.items()}
            pct, rate = wrk(path, connections, seconds)
            cpu = {
                name: (cpu_seconds(pid) - before[name]) / max(1.0, rate * seconds) * 1e6
                for name, pid in processes.items()
            }
            results[path.name] = (pct, rate, cpu)
        base = results["direct"][0]
        for path in paths:
            pct, rate, cpu = results[path.name]
            keys = ("50%", "90%", "99%")
            print(
                f"{path.name:16s} {rate:8.0f} "
                + " ".join(f"{pct[k]:8.3f}" for k in keys)
                + "   "
                + " ".join(f"{pct[k] - base[k]:+7.3f}" for k in keys)
                + "   "
                + " ".join(f"{cpu[name]:12.1f}" for name in processes)
            )


if __name__ == "__main__":
    main()
