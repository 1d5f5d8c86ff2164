"""``meshplane demo``: a working mesh on one machine, without root.

Runs the control plane (API + xDS, embedded SQLite) in this process, applies the blue/green
example as App Mesh Kubernetes manifests (the shape of the App Mesh guide's example), starts
two small demo applications and an Envoy sidecar for each of ``blue``, ``green`` and
``client``, and a gateway Envoy (virtual gateway ``ingress`` on 127.0.0.1:8080 by default)
whose gateway route sends everything to the blue/green service, so the split can be watched
from outside the mesh too; then prints how to send requests and shift the weights.  Ctrl-C
stops everything and says what it stopped.  The demo's manifests, weights files and Envoy
folders are in ``<data dir>/demo``; every port it binds is checked first, and a taken one is
reported with the flag that moves it.  Called by the CLI (``meshplane demo``, which
``scripts/run`` runs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from meshplane.manifests import parse_documents
from meshplane.proxy import BootstrapOptions, EnvoyOptions, EnvoyProcess, start_envoy
from meshplane.server import Application, Settings, serve
from meshplane.server.settings_server import DEFAULT_API_PORT

log = logging.getLogger("meshplane.demo")

MESH = "demo"
SERVICE = "color.demo.local"
PORT = 8080
GATEWAY = "ingress"

MANIFESTS = f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: demo
  labels:
    mesh: {MESH}
    gateway: {GATEWAY}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata:
  name: {MESH}
spec:
  namespaceSelector:
    matchLabels:
      mesh: {MESH}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata:
  name: blue
  namespace: demo
spec:
  awsName: blue
  listeners:
    - portMapping:
        port: {PORT}
        protocol: http
  serviceDiscovery:
    dns:
      hostname: 127.0.0.2
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata:
  name: green
  namespace: demo
spec:
  awsName: green
  listeners:
    - portMapping:
        port: {PORT}
        protocol: http
  serviceDiscovery:
    dns:
      hostname: 127.0.0.3
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata:
  name: color
  namespace: demo
spec:
  awsName: {SERVICE}
  provider:
    virtualRouter:
      virtualRouterRef:
        name: color
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata:
  name: client
  namespace: demo
spec:
  awsName: client
  backends:
    - virtualService:
        virtualServiceRef:
          name: color
"""


def gateway_manifest(port: int) -> str:
    """The virtual gateway (listening on ``port``) and its route to the blue/green service."""
    return f"""\
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualGateway
metadata:
  name: {GATEWAY}
  namespace: demo
spec:
  awsName: {GATEWAY}
  namespaceSelector:
    matchLabels:
      gateway: {GATEWAY}
  podSelector:
    matchLabels:
      app: {GATEWAY}
  listeners:
    - portMapping:
        port: {port}
        protocol: http
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: GatewayRoute
metadata:
  name: color
  namespace: demo
spec:
  awsName: color
  httpRoute:
    match:
      prefix: /
    action:
      target:
        virtualService:
          virtualServiceRef:
            name: color
"""


def router_manifest(blue: int, green: int) -> str:
    return f"""\
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualRouter
metadata:
  name: color
  namespace: demo
spec:
  awsName: color
  listeners:
    - portMapping:
        port: {PORT}
        protocol: http
  routes:
    - name: color-route
      httpRoute:
        match:
          prefix: /
        action:
          weightedTargets:
            - virtualNodeRef:
                name: blue
              weight: {blue}
            - virtualNodeRef:
                name: green
              weight: {green}
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

    def __init__(self, color: str) -> None:
        self.color = color
        super().__init__(("127.0.0.1", 0), _ColorHandler)


@dataclass(frozen=True, slots=True)
class DemoPorts:
    egress: int = 15001
    admin_base: int = 9901
    """Admin ports: blue, green, client, then the gateway (9901-9904 by default)."""
    gateway: int = 8080
    """The gateway's listener on 127.0.0.1 (the sidecars bind 8080 on 127.0.0.2 and .3)."""


def _apply(application: Application, path: Path) -> None:
    application.manifests.apply(
        parse_documents(path.read_text(), _shown(path)), caller=application.caller, dry_run=False
    )


def _shown(path: Path) -> str:
    """``path`` as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


SIDECARS = (("blue", "127.0.0.2"), ("green", "127.0.0.3"), ("client", "127.0.0.4"))


def addresses(ports: DemoPorts) -> list[tuple[str, int, str]]:
    """(host, port, the flag that moves it) of what the demo binds besides the control plane."""
    found = [("127.0.0.1", ports.gateway, "--gateway-port")]
    found += [("127.0.0.1", ports.egress + i, "--egress-port") for i in range(len(SIDECARS))]
    found += [("127.0.0.1", ports.admin_base + i, "--admin-port") for i in range(len(SIDECARS) + 1)]
    found += [
        (address, PORT, "the demo's sidecars always bind it: stop the other demo first")
        for _, address in SIDECARS[:2]
    ]
    return found


class _Demo:
    """What the demo starts beside the control plane, and stops when it ends."""

    def __init__(self, settings: Settings, ports: DemoPorts, say: Callable[[str], None]) -> None:
        self.settings = settings
        self.ports = ports
        self.say = say
        self.demo_dir = settings.store.data_dir / "demo"
        self.servers: list[_ColorServer] = []
        self.envoys: list[EnvoyProcess] = []

    async def started(self, application: Application) -> None:
        """Apply the example, start the apps and their Envoys (the control plane listens)."""
        settings, ports, demo_dir = self.settings, self.ports, self.demo_dir
        demo_dir.mkdir(parents=True, exist_ok=True)
        for blue, green in ((100, 0), (50, 50), (0, 100)):
            (demo_dir / f"weights-{blue}-{green}.yaml").write_text(router_manifest(blue, green))
        manifests = demo_dir / "demo.yaml"
        manifests.write_text(
            "---\n".join((MANIFESTS, router_manifest(100, 0), gateway_manifest(ports.gateway)))
        )
        await asyncio.to_thread(_apply, application, manifests)
        apps: dict[str, int] = {}
        for color in ("blue", "green"):
            app = _ColorServer(color)
            threading.Thread(target=app.serve_forever, daemon=True).start()
            self.servers.append(app)
            apps[color] = int(app.server_address[1])
        proxies: list[tuple[str, str, int | None, int | None]] = [
            (f"mesh/{MESH}/virtualNode/blue", "127.0.0.2", apps["blue"], ports.egress + 1),
            (f"mesh/{MESH}/virtualNode/green", "127.0.0.3", apps["green"], ports.egress + 2),
            (f"mesh/{MESH}/virtualNode/client", "127.0.0.4", None, ports.egress),
            (f"mesh/{MESH}/virtualGateway/{GATEWAY}", "127.0.0.1", None, None),
        ]
        for i, (resource, address, app_port, egress_port) in enumerate(proxies):
            admin = ports.admin_base + i
            options = BootstrapOptions(
                resource=resource,
                xds_token=_proxy_token(application, resource),
                xds_host=settings.xds.host,
                xds_port=application.xds_port,
                workload_address=address,
                app_port=app_port,
                admin_port=admin,
                log_level="warning",
                extra_metadata={"admin": f"127.0.0.1:{admin}"},
            )
            if egress_port is not None:
                options = replace(options, egress_port=egress_port)
            run_dir = demo_dir / f"envoy-{resource.rsplit('/', 1)[1]}"
            self.envoys.append(
                start_envoy(EnvoyOptions(options, run_dir=str(run_dir), drain_time=1.0))
            )
        for envoy in self.envoys:
            await asyncio.to_thread(envoy.wait_admin, 20)
        self.say(_instructions(settings, ports, demo_dir))

    def stop(self) -> None:
        for envoy in self.envoys:
            envoy.stop()
        for app in self.servers:
            app.shutdown()

    def stopped(self) -> str:
        """What was stopped, said when the demo ends."""
        parts = [f"{len(self.envoys)} Envoy proxies"] if self.envoys else []
        parts += [f"{len(self.servers)} demo apps"] if self.servers else []
        return (
            f"meshplane demo stopped: {', '.join([*parts, 'the control plane'])}; its data "
            f"stays in {_shown(self.settings.store.data_dir)}"
        )


async def run_demo(settings: Settings, ports: DemoPorts, say: Callable[[str], None]) -> None:
    """Serve the control plane (:func:`meshplane.server.serve`) with the demo started on it."""
    demo = _Demo(settings, ports, say)
    try:
        await serve(settings, on_started=demo.started, extra_ports=addresses(ports))
    finally:
        demo.stop()
        say(demo.stopped())


def _proxy_token(application: Application, resource: str) -> str:
    """A proxy token for one demo proxy, as 'meshplane proxy-token create' makes them."""
    token, _ = application.proxy_tokens.issue(resource, int(time.time()), 7 * 24 * 3600)
    return token


def _commands() -> tuple[str, str]:
    """How to type ``meshplane`` and ``aws`` here: bare when this environment's bin directory
    is on the PATH (an activated venv), else its path (``.venv/bin/meshplane`` from a clone)."""
    bindir = Path(sys.executable).parent
    on_path = any(
        Path(entry).resolve() == bindir.resolve()
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry
    )

    def command(name: str) -> str:
        if on_path or not (bindir / name).exists():
            return name
        return _shown(bindir / name)

    return command("meshplane"), command("aws")


def _instructions(settings: Settings, ports: DemoPorts, demo_dir: Path) -> str:
    api = f"http://{settings.api.host}:{settings.api.port}"
    meshplane, aws = _commands()
    if settings.api.port != DEFAULT_API_PORT:
        meshplane += f" --server {api}"
    weights = _shown(demo_dir)
    return f"""
[bold green]meshplane demo is running[/] (Ctrl-C stops it)

  control plane   API {api}   xDS {settings.xds.host}:{settings.xds.port}
  mesh '{MESH}'     client -> {SERVICE} -> router 'color' -> blue 100% / green 0%
  sidecars        blue 127.0.0.2:{PORT}, green 127.0.0.3:{PORT}, \
client egress 127.0.0.1:{ports.egress}
  gateway         '{GATEWAY}' on 127.0.0.1:{ports.gateway}, every path -> {SERVICE}

[bold]Send requests through the client's sidecar:[/]
  curl -s -H 'Host: {SERVICE}' http://127.0.0.1:{ports.egress}/
  for i in $(seq 20); do curl -s -H 'Host: {SERVICE}' http://127.0.0.1:{ports.egress}/; \
done | sort | uniq -c

[bold]Or from outside the mesh, through the gateway:[/]
  curl -s http://127.0.0.1:{ports.gateway}/hello
  for i in $(seq 20); do curl -s http://127.0.0.1:{ports.gateway}/; done | sort | uniq -c

[bold]Shift the weights (in another terminal):[/]
  {meshplane} apply -f {weights}/weights-50-50.yaml
  {meshplane} apply -f {weights}/weights-0-100.yaml

[bold]Look around:[/]
  {meshplane} get virtualnodes -A
  {meshplane} proxy-status
  {meshplane} proxy-config client --type clusters
  {meshplane} proxy-config {GATEWAY} --type routes
  AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x {aws} appmesh list-virtual-nodes \\
      --mesh-name {MESH} --endpoint-url {api} --region us-east-1
"""
