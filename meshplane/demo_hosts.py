"""``meshplane demo --hosts``: the blue/green demo across three hosts with transparent capture.

Needs root (it builds network namespaces and installs iptables rules; it refuses otherwise).
Builds the hosts ``<prefix>client``, ``<prefix>blue`` and ``<prefix>green``
(:class:`meshplane.proxy.hosts.HostNetwork`: a bridge, addresses from 198.18.0.0/15), runs the
control plane in this process bound to the bridge's gateway address — API, xDS and the mesh DNS
server on port 53, every host's resolver, names that are not the mesh's refused —, applies the
demo's manifests with the hosts' addresses, starts the blue and green applications on their
hosts (plain HTTP servers on port 8080 with no mesh knowledge) and a sidecar on each host with
``meshplane envoy --capture``.  Then ``ip netns exec <prefix>client curl
http://color.demo.local:8080/`` works as is.  Ctrl-C (or SIGTERM) stops the sidecars (their
rules go with them), the applications and the control plane, and removes the hosts.

Called by the CLI (``meshplane demo --hosts``); ``python -m meshplane.demo_hosts app COLOR
PORT`` is the hosts' application.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from meshplane import demo
from meshplane.errors import MeshplaneError
from meshplane.proxy.hosts import HostNetwork
from meshplane.server import Application, Settings, serve
from meshplane.service.access import ALL_MESHES, Grant, Principal, Role

HOSTS = ("client", "blue", "green")
DEFAULT_PREFIX = "mp-"
ADMIN_PORT = 9901


class DemoHostsError(MeshplaneError):
    """The hosts demo cannot run here (not root, names in use...)."""


def check_root() -> None:
    if os.geteuid() != 0:
        raise DemoHostsError(
            "meshplane demo --hosts needs root: it builds network namespaces and installs "
            "iptables rules in them (run it with sudo, or run 'meshplane demo' for the "
            "loopback demo, which needs no privileges)"
        )


def _manifests(network: HostNetwork) -> str:
    text = demo.MANIFESTS
    for color, loopback in (("blue", "127.0.0.2"), ("green", "127.0.0.3")):
        text = text.replace(f"hostname: {loopback}", f"hostname: {network.hosts[color].address}")
    return "---\n".join((text, demo.router_manifest(100, 0)))


def _start(network: HostNetwork, host: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPMESH_")}
        return network.popen(
            host, argv, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


async def _wait_for(
    check: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoHostsError(f"{what} exited: {_tail(log)}")
        if check():
            return
        await asyncio.sleep(0.1)
    raise DemoHostsError(f"{what} did not start in 90 s: {_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


def _logged(log: Path, text: str) -> bool:
    return text in log.read_text(errors="replace")


async def run_demo_hosts(
    data_dir: Path, api_port: int, xds_port: int, prefix: str, say: Callable[[str], None]
) -> None:
    """Run the demo until cancelled (see the module docstring)."""
    check_root()
    network = HostNetwork(HOSTS, prefix)
    try:
        network.up()
    except MeshplaneError as error:
        raise DemoHostsError(error.message) from None
    processes: list[subprocess.Popen[bytes]] = []
    try:
        gateway = network.gateway
        settings = Settings.load(
            data_dir=data_dir,
            api_port=api_port,
            xds_port=xds_port,
            host=gateway,
            dns_port="53",
            dns_host=gateway,
            dns_upstreams=("off",),
            log_level="warning",
        )
        network.write_names({}, nameserver=gateway)

        async def started(application: Application) -> None:
            """The hosts' applications and captured sidecars, once the control plane listens."""
            work = settings.store.data_dir / "demo-hosts"
            work.mkdir(parents=True, exist_ok=True)
            manifests = work / "demo-hosts.yaml"
            manifests.write_text(_manifests(network))
            await asyncio.to_thread(demo._apply, application, manifests)
            for blue, green in ((100, 0), (50, 50), (0, 100)):
                manifest = demo.router_manifest(blue, green)
                (work / f"weights-{blue}-{green}.yaml").write_text(manifest)
            assert application.tokens is not None  # the control plane is off loopback
            admin = Principal("meshplane demo --hosts", (Grant(ALL_MESHES, Role.ADMIN),))
            token = application.tokens.create(
                demo.MESH, "editor", "meshplane demo --hosts", principal=admin, via="offline"
            )
            python = sys.executable
            for color in ("blue", "green"):
                log = work / f"app-{color}.log"
                app = _start(
                    network,
                    color,
                    [python, "-m", "meshplane.demo_hosts", "app", color, str(demo.PORT)],
                    log,
                )
                processes.append(app)
                await _wait_for(partial(_logged, log, "serving"), f"app {color}", app, log)
            for host in HOSTS:
                resource = f"mesh/{demo.MESH}/virtualNode/{host}"
                token_file = work / f"{host}.token"
                token_file.write_text(demo._proxy_token(application, resource))
                token_file.chmod(0o600)
                log = work / f"sidecar-{host}.log"
                sidecar = _start(
                    network,
                    host,
                    [
                        python,
                        "-m",
                        "meshplane",
                        "envoy",
                        "--capture",
                        "--resource",
                        resource,
                        "--xds",
                        f"{gateway}:{application.xds_port}",
                        "--token-file",
                        str(token_file),
                        "--admin-port",
                        str(ADMIN_PORT),
                        "--log-level",
                        "warning",
                    ],
                    log,
                )
                processes.append(sidecar)
                await _wait_for(
                    partial(_logged, log, "capture rules ipv4"),
                    f"the sidecar on {network.netns(host)}",
                    sidecar,
                    log,
                )
            say(_instructions(network, settings, work, token.bearer))

        await serve(settings, on_started=started)
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(processes):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        network.down()


def _instructions(network: HostNetwork, settings: Settings, work: Path, token: str) -> str:
    api = f"http://{settings.api.host}:{settings.api.port}"
    client = network.netns("client")
    hosts = ", ".join(
        f"{name} {host.address} ({host.netns})" for name, host in network.hosts.items()
    )
    return f"""
[bold green]meshplane demo --hosts is running[/] (Ctrl-C stops it and removes the hosts)

  hosts           {hosts}
  control plane   API {api}   xDS {settings.xds.host}:{settings.xds.port}   \
DNS {settings.api.host}:53
  mesh '{demo.MESH}'     client -> {demo.SERVICE} -> router 'color' -> blue 100% / green 0%
  capture         every host runs 'meshplane envoy --capture'; the applications know nothing

[bold]Call the service by name from the client host, unchanged:[/]
  ip netns exec {client} curl http://{demo.SERVICE}:{demo.PORT}/
  for i in $(seq 20); do ip netns exec {client} curl -s http://{demo.SERVICE}:{demo.PORT}/; \
done | sort | uniq -c

[bold]Shift the weights (in another terminal):[/]
  export MESHPLANE_SERVER={api} MESHPLANE_TOKEN={token}
  .venv/bin/meshplane apply -f {work}/weights-50-50.yaml
  .venv/bin/meshplane apply -f {work}/weights-0-100.yaml
"""


class _ColorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _ColorServer

    def do_GET(self) -> None:
        body = (json.dumps({"color": self.server.color, "path": self.path}) + "\n").encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class _ColorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, color: str, port: int) -> None:
        self.color = color
        super().__init__(("0.0.0.0", port), _ColorHandler)


def main(argv: list[str]) -> int:
    """``app COLOR PORT``: the demo application of a host (until SIGTERM)."""
    if len(argv) != 3 or argv[0] != "app" or not argv[2].isdigit():
        print("usage: python -m meshplane.demo_hosts app COLOR PORT", file=sys.stderr)
        return 2
    server = _ColorServer(argv[1], int(argv[2]))
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    print(f"serving {argv[1]} on 0.0.0.0:{argv[2]}", flush=True)
    import threading

    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
