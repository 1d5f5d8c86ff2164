"""An application with no mesh knowledge, run as a process on a test host (a namespace).

``python -m tests.support.hostapp NAME --port 8080 [--tcp-echo 7000] [--fail-every N]
[--delay S]`` serves :class:`tests.support.apps.App` on 0.0.0.0 (JSON naming the app) and,
optionally, a TCP echo server; it prints ``ready`` once both listen and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import socketserver
import sys
import threading

from tests.support.apps import App


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--port", type=int, action="append", default=[])
    parser.add_argument("--tcp-echo", type=int, action="append", default=[])
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
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    for app in apps:
        app.stop()
    socket.setdefaulttimeout(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
