"""Service discovery: Cloud Map registrations per second, registration -> every consumer's
endpoint ACK, and the mesh DNS server's queries per second and latency.

One real ``meshplane serve`` (SQLite in a temp dir) per part; every figure has a baseline
measured in the same run:

a. **Registrations per second** (``--registrations``, default 2,000): ``RegisterInstance`` calls
   (JSON 1.1, plain keep-alive HTTP/1.1 on ``--connections`` connections, spread over four
   services) against the same number of ``GET /healthz`` on the same connections (the server's
   bare request rate).
b. **Registration -> 1,000 consumers' endpoint ACK** (``--consumers``, default 1,000):
   consumer virtual nodes ``c0``.. call ``cm.bench``, provided by a virtual node discovered
   through Cloud Map; ``bench.convergence``'s simulated Envoys (``bench/ads_clients.js``)
   open one ADS stream per consumer (ACKing like Envoy).  Each of ``--writes`` registrations is timed from the API call to the last
   consumer's ACK of the new ClusterLoadAssignment; ``meshplane_xds_pushes_total{type}`` shows
   that no listener, route or cluster was sent.  Baseline: the same with one consumer.
c. **DNS** (``--dns-seconds``, default 8): ``dnsperf`` (Debian's package) asks virtual service
   names of the mesh DNS server, then the same load against a minimal dnspython echo server
   (an asyncio UDP server answering every question with one A record) in this process's
   sibling; queries per second from dnsperf, p50/p99 latency from a bounded Python client
   (``--latency-queries`` queries, 8 in flight).

Not part of the test suite (``tests/test_bench_smoke.py`` runs it tiny).

    python -m bench.registry [--registrations 2000] [--consumers 1000] [--writes 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.rrset
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import machine
from bench.convergence import Clients, percentile
from tests.support.ports import free_port
from tests.support.server import MeshplaneServer

MESH = "bench"
TARGET = "Route53AutoNaming_v20170314."


def _request(method: str, path: str, body: bytes, target: str | None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
    if target:
        head += f"X-Amz-Target: {TARGET}{target}\r\nContent-Type: application/x-amz-json-1.1\r\n"
    return (head + "\r\n").encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[bytes, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head.split(b" ", 2)[1], await reader.readexactly(length)


async def _load(port: int, requests: list[bytes], connections: int) -> float:
    """Seconds to send every request (each must answer 200) over ``connections``."""
    queue = iter(requests)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in queue:
                status, body = await _exchange(reader, writer, request)
                if status != b"200":
                    raise RuntimeError(f"HTTP {status.decode()}: {body[:300]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started


def cloud_map(server: MeshplaneServer, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        server.url + "/", json=body, headers={"X-Amz-Target": TARGET + operation}, timeout=30
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def namespace_and_service(server: MeshplaneServer, name: str, services: int) -> list[str]:
    op = cloud_map(server, "CreateHttpNamespace", {"Name": name})["OperationId"]
    ns_id = cloud_map(server, "GetOperation", {"OperationId": op})["Operation"]["Targets"][
        "NAMESPACE"
    ]
    return [
        cloud_map(server, "CreateService", {"Name": f"s{i}", "NamespaceId": ns_id})["Service"]["Id"]
        for i in range(services)
    ]


def part_a(registrations: int, connections: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = MeshplaneServer(Path(tmp) / "data").start(timeout=120)
        try:
            services = namespace_and_service(server, "reg.bench", 4)
            healthz = [_request("GET", "/healthz", b"", None)] * registrations
            registers = [
                _request(
                    "POST",
                    "/",
                    json.dumps(
                        {
                            "ServiceId": services[i % 4],
                            "InstanceId": f"i{i}",
                            "Attributes": {
                                "AWS_INSTANCE_IPV4": f"198.18.{i // 250 % 256}.{i % 250 + 1}",
                                "version": "blue",
                            },
                        }
                    ).encode(),
                    "RegisterInstance",
                )
                for i in range(registrations)
            ]
            server.boto3().create_mesh(meshName=MESH)
            creates = [
                _request(
                    "PUT",
                    f"/v20190125/meshes/{MESH}/virtualNodes",
                    json.dumps({"virtualNodeName": f"n{i}", "spec": {}}).encode(),
                    None,
                )
                for i in range(registrations)
            ]
            base = asyncio.run(_load(server.api_port, healthz, connections))
            writes = asyncio.run(_load(server.api_port, creates, connections))
            reg = asyncio.run(_load(server.api_port, registers, connections))
        finally:
            server.stop()
    return {
        "healthz_per_s": registrations / base,
        "creates_per_s": registrations / writes,
        "registrations_per_s": registrations / reg,
    }


def pushes(server: MeshplaneServer) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics", timeout=30).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "meshplane_xds_pushes":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["type"]] = sample.value
    return out


async def _put_consumers(port: int, count: int, connections: int = 8) -> None:
    names = iter(range(count))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in names:
                body = json.dumps(
                    {
                        "virtualNodeName": f"c{i}",
                        "spec": {
                            "backends": [{"virtualService": {"virtualServiceName": "cm.bench"}}]
                        },
                    }
                ).encode()
                request = _request("PUT", f"/v20190125/meshes/{MESH}/virtualNodes", body, None)
                status, answer = await _exchange(reader, writer, request)
                if status != b"200":
                    raise RuntimeError(f"consumer c{i}: {answer[:300]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


def part_b(consumers: int, writes: int, procs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = MeshplaneServer(Path(tmp) / "data").start(timeout=120)
        clients: Clients | None = None
        try:
            [srv] = namespace_and_service(server, "cm.local", 1)
            api = server.boto3()
            api.create_mesh(meshName=MESH)
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName="cm",
                spec={
                    "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
                    "serviceDiscovery": {
                        "awsCloudMap": {"namespaceName": "cm.local", "serviceName": "s0"}
                    },
                },
            )
            api.create_virtual_service(
                meshName=MESH,
                virtualServiceName="cm.bench",
                spec={"provider": {"virtualNode": {"virtualNodeName": "cm"}}},
            )
            asyncio.run(_put_consumers(server.api_port, consumers))
            clients = Clients(server, procs)
            serial = iter(range(10_000))

            def measure(label: str, count: int) -> None:
                times = []
                before = pushes(server)
                for _ in range(writes):
                    n = next(serial)
                    t0 = time.monotonic()
                    cloud_map(
                        server,
                        "RegisterInstance",
                        {
                            "ServiceId": srv,
                            "InstanceId": f"w{n}",
                            "Attributes": {"AWS_INSTANCE_IPV4": f"198.18.7.{n % 250 + 1}"},
                        },
                    )
                    assert clients is not None
                    acks = clients.converge(t0)  # each stream's last ACK, seconds after t0
                    times.append(max(acks))
                after = pushes(server)
                sent = {k: after.get(k, 0) - before.get(k, 0) for k in ("cds", "lds", "rds", "eds")}
                results[label] = {
                    "proxies": count,
                    "p50_ms": statistics.median(times) * 1000,
                    "max_ms": max(times) * 1000,
                    "pushes": sent,
                }

            clients.connect(0, 1, 1)
            measure("baseline", 1)
            clients.connect(1, consumers - 1, 500)
            measure("consumers", consumers)
        finally:
            if clients is not None:
                clients.close()
            server.stop()
    return results


# --- c. DNS ----------------------------------------------------------------------------------


ECHO_SERVER = """
import asyncio, sys
import dns.message, dns.rrset

class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, addr):
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 30, "IN", "A", "240.240.0.1"))
        self.transport.sendto(response.to_wire(), addr)

async def main():
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", int(sys.argv[1])))
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def dnsperf(port: int, names: list[str], seconds: int) -> dict[str, float]:
    binary = shutil.which("dnsperf")
    if binary is None:
        raise SystemExit("dnsperf is missing: apt-get install dnsperf (scripts/test installs it)")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("".join(f"{name} A\n" for name in names))
        data = handle.name
    try:
        out = subprocess.run(
            [binary, "-s", "127.0.0.1", "-p", str(port), "-d", data, "-l", str(seconds),
             "-c", "4", "-T", "1", "-q", "64"],
            capture_output=True, text=True, timeout=seconds + 60,
        ).stdout  # fmt: skip
    finally:
        os.unlink(data)
    figures = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Queries per second:"):
            figures["qps"] = float(line.split(":")[1])
        elif line.startswith("Queries lost:"):
            figures["lost"] = float(line.split(":")[1].split()[0])
        elif line.startswith("Average Latency (s):"):
            figures["avg_ms"] = float(line.split(":")[1].split()[0]) * 1000
    return figures


def latencies(port: int, names: list[str], count: int, in_flight: int = 8) -> dict[str, float]:
    """p50/p99 of ``count`` queries, ``in_flight`` at a time, one UDP socket each."""
    taken: list[float] = []

    def worker(share: int, offset: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            for i in range(share):
                query = dns.message.make_query(names[(offset + i) % len(names)], "A")
                started = time.perf_counter()
                sock.sendto(query.to_wire(), ("127.0.0.1", port))
                sock.recv(4096)
                taken.append(time.perf_counter() - started)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(lambda k: worker(count // in_flight, k * 7), range(in_flight)))
    return {"p50_ms": percentile(taken, 0.5) * 1000, "p99_ms": percentile(taken, 0.99) * 1000}


def part_c(seconds: int, queries: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = MeshplaneServer(Path(tmp) / "data").start(timeout=120)
        try:
            api = server.boto3()
            api.create_mesh(meshName=MESH)
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName="p",
                spec={
                    "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
                    "serviceDiscovery": {"dns": {"hostname": "127.0.0.2"}},
                },
            )
            names = [f"svc{i}.{MESH}.local" for i in range(100)]
            for name in names:
                api.create_virtual_service(
                    meshName=MESH,
                    virtualServiceName=name,
                    spec={"provider": {"virtualNode": {"virtualNodeName": "p"}}},
                )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                answer = httpx.get(
                    server.url + "/meshplane/v1/dns/lookup", params={"name": names[-1]}
                ).json()
                if answer["answers"]:
                    break
                time.sleep(0.1)
            results["meshplane"] = {
                **dnsperf(server.dns_port, names, seconds),
                **latencies(server.dns_port, names, queries),
            }
        finally:
            server.stop()
    port = free_port()
    echo = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert echo.stdout is not None
        assert echo.stdout.readline().strip() == "ready"
        results["echo"] = {
            **dnsperf(port, names, seconds),
            **latencies(port, names, queries),
        }
    finally:
        echo.kill()
        echo.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registrations", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--consumers", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=5)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--dns-seconds", type=int, default=8)
    parser.add_argument("--latency-queries", type=int, default=4000)
    parser.add_argument("--parts", default="abc", help="Which parts to run (a, b, c).")
    args = parser.parse_args()
    print(machine.describe())
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    parts = set(args.parts)
    if "a" in parts:
        a = part_a(args.registrations, args.connections)
        print(
            f"a. registrations: {a['registrations_per_s']:.0f}/s; App Mesh CreateVirtualNode "
            f"{a['creates_per_s']:.0f}/s (ratio {a['registrations_per_s'] / a['creates_per_s']:.2f}); "
            f"/healthz {a['healthz_per_s']:.0f}/s"
        )
    if "b" in parts:
        print_b(part_b(args.consumers, args.writes, args.client_procs))
    if "c" in parts:
        print_c(part_c(args.dns_seconds, args.latency_queries))


def print_b(b: dict[str, Any]) -> None:
    for label, figures in b.items():
        print(
            f"b. registration -> endpoint ACK, {label} ({figures['proxies']} proxies): "
            f"p50 {figures['p50_ms']:.0f} ms, max {figures['max_ms']:.0f} ms; "
            f"pushes {figures['pushes']}"
        )


def print_c(c: dict[str, Any]) -> None:
    for label, figures in c.items():
        print(
            f"c. DNS {label}: {figures.get('qps', 0):.0f} qps (dnsperf, lost "
            f"{figures.get('lost', 0):.0f}, avg {figures.get('avg_ms', 0):.2f} ms); "
            f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms"
        )
    ratio = c["meshplane"].get("qps", 0) / max(1.0, c["echo"].get("qps", 1))
    print(f"c. DNS qps ratio meshplane/echo: {ratio:.2f}")


if __name__ == "__main__":
    main()
