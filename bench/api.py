"""API throughput: creates/s, describes/s and lists of 1,000 resources, from one real
``meshplane serve`` process on the embedded SQLite store and on a real PostgreSQL server
(``--backend``; both by default, in the same run, so the ratio PostgreSQL/SQLite holds on a
noisy machine).  PostgreSQL runs with ``fsync=on`` like SQLite's ``synchronous=FULL``.

A load generator (wrk when installed, with a Lua script for unique creates; otherwise an
asyncio httpx client) drives the server over loopback.  The server's own /healthz route is
measured in the same run as a baseline, so the figures can be read as ratios on a noisy
shared machine.  Not part of the test suite.

    python -m bench.api [--seconds 5] [--connections 8] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.postgres import PostgresServer
from tests.support.server import MeshplaneServer

CREATE_LUA = """
counter = 0
thread_id = 0
function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end
request = function()
  counter = counter + 1
  local body = '{"virtualNodeName":"w' .. id .. '-' .. counter .. '","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"n.local"}}}}'
  return wrk.format("PUT", "/v20190125/meshes/bench/virtualNodes", {["Content-Type"]="application/json"}, body)
end
"""


def wrk(url: str, seconds: int, connections: int, script: str | None = None) -> float:
    args = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        if script:
            handle.write(script)
    if script:
        args[1:1] = ["-s", handle.name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    os.unlink(handle.name)
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


async def httpx_rate(
    url: str, seconds: float, connections: int, method: str = "GET", body: object | None = None
) -> float:
    done = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker(n: int) -> None:
            nonlocal done
            i = 0
            while time.monotonic() < stop:
                i += 1
                payload = None
                if body is not None:
                    payload = json.loads(json.dumps(body).replace("NAME", f"h{n}-{i}"))
                response = await client.request(method, url, json=payload)
                response.raise_for_status()
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(connections)))
        return done / (time.monotonic() - start)


def measure(
    server: MeshplaneServer, seconds: int, connections: int, have_wrk: bool
) -> tuple[dict[str, float], int, float]:
    """Rates of one running server: (name -> req/s, listed count, seconds per full list)."""
    client = server.boto3()
    client.create_mesh(meshName="bench")
    for i in range(1000):
        client.create_virtual_node(meshName="bench", virtualNodeName=f"n{i:04d}", spec={})
    base = server.url
    node = f"{base}/v20190125/meshes/bench/virtualNodes/n0500"
    results: dict[str, float] = {}
    if have_wrk:
        results["baseline /healthz"] = wrk(f"{base}/healthz", seconds, connections)
        results["describe"] = wrk(node, seconds, connections)
        results["create"] = wrk(base, seconds, connections, CREATE_LUA)
        results["list 100 (one page)"] = wrk(
            f"{base}/v20190125/meshes/bench/virtualNodes?limit=100", seconds, connections
        )
    else:
        body = {"virtualNodeName": "NAME", "spec": {}}
        run = asyncio.run
        results["baseline /healthz"] = run(httpx_rate(f"{base}/healthz", seconds, connections))
        results["describe"] = run(httpx_rate(node, seconds, connections))
        results["create"] = run(
            httpx_rate(
                f"{base}/v20190125/meshes/bench/virtualNodes", seconds, connections, "PUT", body
            )
        )
    # a full listing of 1,000 resources through boto3's paginator (10 pages)
    start = time.perf_counter()
    rounds = 10
    count = 0
    for _ in range(rounds):
        pages = client.get_paginator("list_virtual_nodes").paginate(meshName="bench")
        count = sum(len(p["virtualNodes"]) for p in pages)
    return results, count, (time.perf_counter() - start) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    have_wrk = shutil.which("wrk") is not None
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    measured: dict[str, tuple[dict[str, float], int, float]] = {}
    postgres = PostgresServer(fsync=True).start() if "postgresql" in backends else None
    try:
        for backend in backends:
            with tempfile.TemporaryDirectory() as tmp:
                url = postgres.create_database() if backend == "postgresql" and postgres else None
                server = MeshplaneServer(
                    Path(tmp) / "data", extra_args=["--log-level", "warning"], database_url=url
                ).start()
                try:
                    measured[backend] = measure(server, args.seconds, args.connections, have_wrk)
                finally:
                    server.stop()
    finally:
        if postgres is not None:
            postgres.close()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load generator: {'wrk' if have_wrk else 'httpx'} ({args.connections} connections, {args.seconds}s)"
    )
    for backend, (results, count, per_list) in measured.items():
        print(f"-- {backend}")
        baseline = results["baseline /healthz"]
        for name, rate in results.items():
            print(f"{name:24s} {rate:9.0f} req/s   ({rate / baseline:.2f} x baseline)")
        print(f"full list of {count} virtual nodes via boto3 paginator: {per_list * 1000:.1f} ms")
    if len(measured) == 2:
        sqlite, pg = measured["sqlite"][0], measured["postgresql"][0]
        for name in ("create", "describe"):
            print(f"postgresql / sqlite {name}: {pg[name] / sqlite[name]:.2f}")


if __name__ == "__main__":
    main()
