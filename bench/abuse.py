"""The control plane's health under each attack of the hardening review, against an idle
baseline measured in the same run: ``/healthz`` latency (p50, p99, max) of a concurrent client
that also lists meshes, whether any of its probes failed, and the server's peak resident
memory.  One real ``meshplane serve`` (loopback, default limits, proxies unauthenticated so
that the xDS attacks reach past authentication) is attacked with the functions the abuse tier
uses (``tests/support/attacks.py``).  Not part of the test suite (``tests/test_bench_smoke.py``
runs it at a tiny scale).

    python -m bench.abuse [--idle 5] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench import machine
from tests.support.attacks import ads_call, closed_by_server, discovery_request, hold_sockets
from tests.support.health import HealthWatch
from tests.support.server import MeshplaneServer

MB = 1_000_000


def _put(url: str, body: bytes) -> int:
    return httpx.put(url, content=body, timeout=120).status_code


def attacks(server: MeshplaneServer, scale: float) -> list[tuple[str, Callable[[], str]]]:
    """(name, attack) pairs; an attack returns what the attacker saw, in a few words."""
    xds = f"127.0.0.1:{server.xds_port}"
    api = server.url

    def xds_large() -> str:
        huge = discovery_request("mesh/m/virtualNode/n", int(60 * MB * scale))
        medium = discovery_request("mesh/m/virtualNode/n", int(6.5 * MB * scale))

        async def run() -> list[str]:
            one = await ads_call(xds, [huge])
            ten = await asyncio.gather(*(ads_call(xds, [medium]) for _ in range(10)))
            return [code.name for code, _ in (one, *ten)]

        return ", ".join(sorted(set(asyncio.run(run()))))

    def xds_ghost_meshes() -> str:
        count = max(30, int(600 * scale))

        async def run() -> list[str]:
            ends = []
            for start in range(0, count, 30):
                ends += await asyncio.gather(
                    *(
                        ads_call(
                            xds, [discovery_request(f"mesh/ghost-{i}/virtualNode/n")], hold=0.3
                        )
                        for i in range(start, start + 30)
                    )
                )
            return [code.name for code, _ in ends]

        codes = asyncio.run(run())
        views = [
            line
            for line in httpx.get(f"{api}/metrics", timeout=30).text.splitlines()
            if line.startswith("meshplane_mesh_views ")
        ]
        return f"{len(codes)} streams; {views[0] if views else 'no gauge'}"

    def yaml_alias_bomb() -> str:
        lines = ["apiVersion: appmesh.k8s.aws/v1beta2", "kind: Mesh", "metadata:", "  name: b"]
        lines += ["  annotations:", f"    blob: &b {'x' * 34_000}"]
        lines += [f"    a{i}: *b" for i in range(int(20_000 * scale) or 1)]
        body = {"documents": [{"source": "bomb.yaml", "text": "\n".join(lines)}], "dryRun": True}
        return str(httpx.post(f"{api}/meshplane/v1/apply", json=body, timeout=120).status_code)

    def slow_yaml() -> str:
        flow = "[" + ", ".join(f"'{i:06d}'" for i in range(int(70_000 * scale))) + "]"
        text = "apiVersion: appmesh.k8s.aws/v1beta2\nkind: Mesh\nmetadata: {name: f}\n"
        codes = []
        for doc in (text + f"spec:\n  list: {flow}\n", "---\n" * int(200_000 * scale)):
            body = {"documents": [{"source": "slow.yaml", "text": doc}], "dryRun": True}
            response = httpx.post(f"{api}/meshplane/v1/apply", json=body, timeout=120)
            codes.append(str(response.status_code))
        return ", ".join(codes)

    def deep_json() -> str:
        body = ('{"meshName":"d","spec":' + '{"a":' * 990 + "1" + "}" * 991).encode()
        codes = {_put(f"{api}/v20190125/meshes", body) for _ in range(max(1, int(50 * scale)))}
        return ", ".join(map(str, sorted(codes)))

    def surrogates() -> str:
        codes = {
            _put(f"{api}/v20190125/meshes", b'{"meshName":"a\\ud800b"}')
            for _ in range(max(1, int(50 * scale)))
        }
        return ", ".join(map(str, sorted(codes)))

    def big_body() -> str:
        body = b'{"meshName":"big","tags":[' + b'{"key":"k","value":"v"},' * int(2_500_000 * scale)
        try:
            return str(_put(f"{api}/v20190125/meshes", body + b"{}]}"))
        except httpx.TransportError as error:
            return type(error).__name__

    def connection_flood() -> str:
        count = max(10, int(700 * scale))
        silent = hold_sockets("127.0.0.1", server.api_port, count // 2)
        loris = hold_sockets(
            "127.0.0.1", server.api_port, count - count // 2, b"GET /healthz HTTP/1.1\r\n"
        )
        stop = threading.Event()

        def drip() -> None:
            while not stop.wait(1.0):
                for sock in loris:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X-Drip: 1\r\n")

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        answers = [closed_by_server(sock, 30) for sock in silent + loris]
        stop.set()
        dripper.join()
        for sock in silent + loris:
            sock.close()
        closed = [a for a in answers if a is not None]
        statuses = sorted({a.split(b" ")[1].decode() for a in closed if a.startswith(b"HTTP")})
        return f"{len(closed)}/{len(answers)} closed by the server ({', '.join(statuses)})"

    return [
        ("1. xDS: 60 MB node.metadata, then 10 x 6.5 MB", xds_large),
        ("2. YAML alias bomb (20,000 uses of a 34 KB anchor), dry run", yaml_alias_bomb),
        ("3. 700 connections: half silent, half slowloris", connection_flood),
        ("4. 700 KB of flow scalars; 200,000 `---`", slow_yaml),
        ("5. JSON nested 990 deep, x50", deep_json),
        ("5. a 60 MB JSON body", big_body),
        ("6. lone surrogates in names, x50", surrogates),
        ("7. 600 xDS streams naming meshes that do not exist", xds_ghost_meshes),
    ]


def measure(server: MeshplaneServer, action: Callable[[], object], seconds: float = 0.0) -> dict:
    assert server.process is not None
    with HealthWatch(server.url, server.process.pid, ok_statuses=frozenset({200, 503})) as watch:
        started = time.perf_counter()
        outcome = action()
        if seconds:
            time.sleep(max(0.0, seconds - (time.perf_counter() - started)))
        took = time.perf_counter() - started
    latencies = sorted(watch.healthz)
    return {
        "outcome": outcome,
        "seconds": took,
        "probes": len(latencies),
        "failures": len(watch.failures),
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": watch.p99() * 1000,
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "peak_rss_mib": watch.peak_rss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle baseline")
    parser.add_argument("--scale", type=float, default=1.0, help="attack sizes (1.0: the review's)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print(machine.describe())
    with tempfile.TemporaryDirectory() as tmp:
        server = MeshplaneServer(Path(tmp) / "data").start(timeout=120)
        try:
            rows = [("idle (baseline)", measure(server, lambda: "-", args.idle))]
            for name, attack in attacks(server, args.scale):
                rows.append((name, measure(server, attack, 3.0)))
            log_bytes = server.log_path.stat().st_size
        finally:
            server.stop()
    idle = rows[0][1]
    print(
        "\n| attack | what the attacker got | s | /healthz p50 ms | p99 ms | max ms "
        "| probes (failed) | peak RSS MiB | p99 / idle | RSS / idle |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, row in rows:
        print(
            f"| {name} | {row['outcome']} | {row['seconds']:.1f} | {row['p50_ms']:.1f} "
            f"| {row['p99_ms']:.1f} | {row['max_ms']:.1f} | {row['probes']} ({row['failures']}) "
            f"| {row['peak_rss_mib']:.0f} | {row['p99_ms'] / idle['p99_ms']:.1f}x "
            f"| {row['peak_rss_mib'] / idle['peak_rss_mib']:.2f}x |"
        )
    print(f"\nserver log after every attack: {log_bytes / 1024:.0f} KiB")
    if args.json is not None:
        args.json.write_text(json.dumps(dict(rows), indent=2, default=str))


if __name__ == "__main__":
    main()
