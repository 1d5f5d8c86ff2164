"""An application with no mesh knowledge, run as a process on a test host (a namespace).

``python -m tests.support.hostapp NAME --port 8080 [--tcp-echo 7000] [--grpc 9090]
[--fail-every N] [--delay S]`` serves :class:`tests.support.apps.App` on 0.0.0.0 (JSON naming
the app) and, optionally, a TCP echo server and a gRPC server (``demo.Echo/Say``: raw bytes,
answered ``NAME:<request>``); it prints ``ready`` once all listen and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import socketserver
import sys
import threading
from concurrent import futures

import grpc

from tests.support.apps import App


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _grpc_server(name: str, port: int) -> grpc.Server:
    def say(request: bytes, context: grpc.ServicerContext) -> bytes:
        return f"{name}:".encode() + request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.unary_unary_rpc_method_handler(say)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("demo.Echo", {"Say": handler}),)
    )
    server.add_insecure_port(f"0.0.0.0:{port}")
    server.start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--port", type=int, action="append", default=[])
    parser.add_argument("--tcp-echo", type=int, action="append", default=[])
    parser.add_argument("--grpc", type=int, action="append", default=[])
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    apps = []
    for port in args.port:
        app = App(args.name, host="0.0.0.0", port=port)
        app.fail_every = args.fail_every
        app.delay = args.delay
        apps.append(app.start())
    for port in args.tcp_echo:
        echo = _EchoServer(("0.0.0.0", port), _Echo)
        threading.Thread(target=echo.serve_forever, daemon=True).start()
    servers = [_grpc_server(args.name, port) for port in args.grpc]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    for app in apps:
        app.stop()
    for server in servers:
        server.stop(0).wait(5)
    socket.setdefaulttimeout(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
