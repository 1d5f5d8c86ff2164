"""End to end with real Envoy sidecars: gRPC, HTTP/2 and TCP services through the mesh.

- ``grpc-svc``: a real grpcio server behind a ``grpc`` listener (with a gRPC health check,
  answered by the server's own ``grpc.health.v1.Health``), reached through a virtual router
  with a gRPC route for the ``demo.Echo`` service;
- ``h2-svc``: a real h2c server (grpcio speaks HTTP/2 without TLS) behind an ``http2``
  listener, its virtual service provided by the node directly;
- ``tcp-svc``: a TCP echo server behind a ``tcp`` listener, reached through the client's own
  local port for that backend (``tcp_egress_ports``).

The client is a grpcio channel to the client sidecar's egress listener with the virtual
service name as ``:authority``, and a plain socket to its TCP backend port.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from tests.support.mesh import Mesh, Sidecar
from tests.support.ports import free_port
from tests.support.topology import cluster_hosts, http_listener, workload

pytestmark = pytest.mark.e2e

MESH = "protocols"
GRPC = "grpc.protocols.local"
H2 = "h2.protocols.local"
TCP = "tcp.protocols.local"
SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}


class GrpcApp:
    """A grpcio server: ``demo.Echo/Say`` (unary), ``demo.Echo/Count`` (server streaming) and
    ``grpc.health.v1.Health/Check``, with raw bytes messages."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.health_checks = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "demo.Echo",
                    {
                        "Say": grpc.unary_unary_rpc_method_handler(self._say),
                        "Count": grpc.unary_stream_rpc_method_handler(self._count),
                    },
                ),
                grpc.method_handlers_generic_handler(
                    "grpc.health.v1.Health",
                    {"Check": grpc.unary_unary_rpc_method_handler(self._check)},
                ),
            )
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _say(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls += 1
        return f"{self.name}:".encode() + request

    def _count(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        with self._lock:
            self.calls += 1
        for i in range(int(request)):
            yield f"{self.name}:{i}".encode()

    def _check(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.health_checks += 1
        return SERVING

    def start(self) -> GrpcApp:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(0).wait(5)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.connections += 1  # type: ignore[attr-defined]
        while data := self.request.recv(65536):
            self.request.sendall(data)


class TcpEcho(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.connections = 0
        self.port = int(self.server_address[1])
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> TcpEcho:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


@dataclass
class Protocols:
    mesh: Mesh
    client: Sidecar
    tcp_port: int
    grpc_app: GrpcApp
    h2_app: GrpcApp
    tcp_app: TcpEcho
    ports: dict[str, int]


@pytest.fixture(scope="module")
def protocols(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Protocols]:
    mesh = Mesh(tmp_path_factory.mktemp("protocols"))
    grpc_app, h2_app, tcp_app = GrpcApp("grpc-svc"), GrpcApp("h2-svc"), TcpEcho()
    try:
        for app in (grpc_app, h2_app, tcp_app):
            app.start()
        api = mesh.appmesh
        api.create_mesh(meshName=MESH)
        ports = {"grpc": free_port(), "http2": free_port(), "tcp": free_port()}
        health = {
            "protocol": "grpc",
            "healthyThreshold": 2,
            "unhealthyThreshold": 2,
            "intervalMillis": 5000,
            "timeoutMillis": 2000,
            "port": ports["grpc"],
        }
        workload(
            mesh,
            MESH,
            "grpc-svc",
            listeners=[http_listener(ports["grpc"], "grpc", healthCheck=health)],
            app_port=grpc_app.port,
        )
        workload(
            mesh,
            MESH,
            "h2-svc",
            listeners=[http_listener(ports["http2"], "http2")],
            app_port=h2_app.port,
        )
        workload(
            mesh,
            MESH,
            "tcp-svc",
            listeners=[http_listener(ports["tcp"], "tcp")],
            app_port=tcp_app.port,
        )
        api.create_virtual_router(
            meshName=MESH,
            virtualRouterName="grpc",
            spec={"listeners": [{"portMapping": {"port": ports["grpc"], "protocol": "grpc"}}]},
        )
        api.create_route(
            meshName=MESH,
            virtualRouterName="grpc",
            routeName="echo",
            spec={
                "grpcRoute": {
                    "match": {"serviceName": "demo.Echo"},
                    "action": {"weightedTargets": [{"virtualNode": "grpc-svc", "weight": 1}]},
                }
            },
        )
        providers: dict[str, dict[str, Any]] = {
            GRPC: {"virtualRouter": {"virtualRouterName": "grpc"}},
            H2: {"virtualNode": {"virtualNodeName": "h2-svc"}},
            TCP: {"virtualNode": {"virtualNodeName": "tcp-svc"}},
        }
        for service, provider in providers.items():
            api.create_virtual_service(
                meshName=MESH, virtualServiceName=service, spec={"provider": provider}
            )
        tcp_port = free_port()
        client = workload(
            mesh,
            MESH,
            "client",
            backends=list(providers),
            extra={"tcp_egress_ports": {TCP: tcp_port}},
        )
        state = Protocols(mesh, client, tcp_port, grpc_app, h2_app, tcp_app, ports)

        def serving() -> bool:
            try:
                return (
                    say(state, GRPC, b"ping", timeout=2) == b"grpc-svc:ping"
                    and say(state, H2, b"ping", timeout=2) == b"h2-svc:ping"
                    and echo(state, b"ping") == b"ping"
                )
            except grpc.RpcError:
                return False

        mesh.wait(serving, "gRPC, HTTP/2 and TCP through the client sidecar", timeout=30)
        yield state
    finally:
        mesh.close()
        for app in (grpc_app, h2_app, tcp_app):
            app.stop()


def channel(state: Protocols, authority: str) -> grpc.Channel:
    return grpc.insecure_channel(
        f"127.0.0.1:{state.client.egress_port}",
        options=[("grpc.default_authority", authority), ("grpc.enable_retries", 0)],
    )


def say(state: Protocols, authority: str, message: bytes, timeout: float = 5) -> bytes:
    with channel(state, authority) as ch:
        return bytes(ch.unary_unary("/demo.Echo/Say")(message, timeout=timeout))


def echo(state: Protocols, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", state.tcp_port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_grpc_unary_and_streaming_calls_cross_the_mesh(protocols: Protocols) -> None:
    calls = protocols.grpc_app.calls
    with channel(protocols, GRPC) as ch:
        say_rpc = ch.unary_unary("/demo.Echo/Say")
        for i in range(50):
            assert say_rpc(f"hello {i}".encode(), timeout=5) == f"grpc-svc:hello {i}".encode()
        stream = ch.unary_stream("/demo.Echo/Count")(b"20", timeout=5)
        assert [bytes(m) for m in stream] == [f"grpc-svc:{i}".encode() for i in range(20)]
    assert protocols.grpc_app.calls == calls + 51


def test_a_grpc_method_no_route_matches_is_unimplemented(protocols: Protocols) -> None:
    calls = protocols.grpc_app.calls
    with channel(protocols, GRPC) as ch, pytest.raises(grpc.RpcError) as raised:
        ch.unary_unary("/other.Service/Say")(b"x", timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert protocols.grpc_app.calls == calls


def test_the_grpc_health_check_runs_against_the_server(protocols: Protocols) -> None:
    cluster = f"cds_egress_{MESH}_grpc-svc_grpc_{protocols.ports['grpc']}"
    [host] = cluster_hosts(protocols.client, cluster)
    assert not host["health_status"].get("failed_active_health_check")
    assert protocols.grpc_app.health_checks >= 1
    stats = protocols.client.stats()
    assert stats[f"cluster.{cluster}.health_check.success"] >= 1
    assert stats.get(f"cluster.{cluster}.health_check.failure", 0) == 0


def test_http2_upstreams_speak_http2_end_to_end(protocols: Protocols) -> None:
    with channel(protocols, H2) as ch:
        rpc = ch.unary_unary("/demo.Echo/Say")
        for i in range(20):
            assert rpc(f"h2 {i}".encode(), timeout=5) == f"h2-svc:h2 {i}".encode()
    port = protocols.ports["http2"]
    client = protocols.client.stats()
    assert client[f"cluster.cds_egress_{MESH}_h2-svc_http2_{port}.upstream_cx_http2_total"] >= 1
    assert (
        client.get(f"cluster.cds_egress_{MESH}_h2-svc_http2_{port}.upstream_cx_http1_total", 0) == 0
    )
    [provider] = [s for s in protocols.mesh.sidecars if s.resource.endswith("/h2-svc")]
    stats = provider.stats()
    assert stats[f"cluster.cds_ingress_{MESH}_h2-svc_http2_{port}.upstream_cx_http2_total"] >= 1
    assert stats[f"http.ingress.http2.{port}.downstream_cx_http2_total"] >= 1


def test_tcp_bytes_cross_the_mesh(protocols: Protocols) -> None:
    connections = protocols.tcp_app.connections
    payload = bytes(range(256)) * 1024  # 256 KiB, every byte value
    assert echo(protocols, payload) == payload
    for i in range(10):
        assert echo(protocols, f"line {i}\n".encode()) == f"line {i}\n".encode()
    assert protocols.tcp_app.connections == connections + 11
    stats = protocols.client.stats()
    assert stats[f"tcp.egress.tcp.{protocols.tcp_port}.downstream_cx_total"] >= 11
