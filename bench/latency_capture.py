"""The cost of transparent capture: captured vs explicit-egress vs direct, in the same run.

Run by ``python -m bench.latency --capture`` (root: it builds two hosts as network namespaces,
``tests/support/capture.py``).  On host ``server``, nginx answers ``ok`` on two ports: the
virtual node's listener port L, captured by the server's ``meshplane envoy --capture`` sidecar,
and a port D nobody captures.  On host ``client``, the load generator (h2load, wrk) calls:

- **direct**: ``http://<server>:D/`` — D is an ignored egress port of the client's capture
  rules, so no Envoy is on the path;
- **explicit egress**: ``http://127.0.0.1:E/`` with ``Host: server.lat`` — an explicit-egress
  sidecar of the client (``meshplane envoy``, running as the ignored uid) -> the server's
  captured sidecar -> nginx;
- **captured**: ``http://server.lat:L/`` — the name resolves (mesh DNS) to the service's virtual
  IP, the client's capture rules redirect the connection to its captured sidecar, which
  recovers the destination and routes by Host -> the server's captured sidecar -> nginx.

The explicit and captured paths differ only on the client side (a REDIRECT and
``original_dst`` + ``http_inspector`` instead of a connection to the egress listener), so their
difference is the cost of capture.  Method, rates and rounds as in :mod:`bench.latency`; CPU
per request of each process from wrk runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import machine
from bench.latency import Nginx, Path_, children, run_constant, run_wrk
from tests.support.capture import CapturedMesh

MESH = "lat"
SERVICE = f"server.{MESH}"
LISTENER = 8080
DIRECT = 8081
EGRESS = 15101
EXPLICIT_ADMIN = 9902


def wait_ok(path: Path_, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        args = ["curl", "-s", "--max-time", "2"]
        if path.host:
            args += ["-H", f"Host: {path.host}"]
        done = subprocess.run([*path.prefix, *args, path.url], capture_output=True, text=True)
        if done.stdout == "ok\n":
            return
        last = done.stdout[:200] + done.stderr[:200]
        time.sleep(0.2)
    raise TimeoutError(f"{path.name}: {path.url} never answered ok: {last}")


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def main(args: argparse.Namespace) -> None:
    print(machine.describe() + (f", nice {args.nice}" if args.nice else ""))
    os.environ["ENVOY_CONCURRENCY"] = str(args.envoy_concurrency)  # every sidecar's
    with tempfile.TemporaryDirectory(prefix="meshplane-latency-capture-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the explicit sidecar (uid 1337) reads its token file here
        mesh = CapturedMesh(root, ("client", "server"), "lat")
        nginx: Nginx | None = None
        explicit: subprocess.Popen[bytes] | None = None
        try:
            mesh.start()
            api = mesh.api
            api.create_mesh(meshName=MESH)
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName="server",
                spec={
                    "listeners": [{"portMapping": {"port": LISTENER, "protocol": "http"}}],
                    "serviceDiscovery": {"dns": {"hostname": mesh.address("server")}},
                },
            )
            api.create_virtual_service(
                meshName=MESH,
                virtualServiceName=SERVICE,
                spec={"provider": {"virtualNode": {"virtualNodeName": "server"}}},
            )
            for name in ("client", "client-explicit"):
                api.create_virtual_node(
                    meshName=MESH,
                    virtualNodeName=name,
                    spec={"backends": [{"virtualService": {"virtualServiceName": SERVICE}}]},
                )
            server_ns = mesh.network.hosts["server"].command([])
            nginx = Nginx(
                root / "nginx",
                LISTENER,
                listens=(f"0.0.0.0:{LISTENER}", f"0.0.0.0:{DIRECT}"),
                prefix=tuple(server_ns),
            )
            mesh.sidecar("server", "server", mesh=MESH)
            mesh.sidecar("client", "client", "--ignored-port", str(DIRECT), mesh=MESH)
            token = mesh.proxy_token("client-explicit", MESH)
            subprocess.run(["chown", "1337:1337", str(token)], check=True)
            log = (root / "explicit.log").open("wb")
            explicit = mesh.network.popen(
                "client",
                [
                    "setpriv",
                    "--reuid=1337",
                    "--regid=1337",
                    "--clear-groups",
                    sys.executable,
                    "-m",
                    "meshplane",
                    "envoy",
                    "--resource",
                    f"mesh/{MESH}/virtualNode/client-explicit",
                    "--xds",
                    mesh.xds,
                    "--token-file",
                    str(token),
                    "--egress-port",
                    str(EGRESS),
                    "--admin-port",
                    str(EXPLICIT_ADMIN),
                    "--log-level",
                    "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            mesh.wait(lambda: mesh.resolves("client", SERVICE).startswith("240.240."), "the VIP")
            client_ns = tuple(mesh.network.hosts["client"].command([]))
            paths = [
                Path_("direct", f"http://{mesh.address('server')}:{DIRECT}/", None, client_ns),
                Path_("explicit egress", f"http://127.0.0.1:{EGRESS}/", SERVICE, client_ns),
                Path_("captured", f"http://{SERVICE}:{LISTENER}/", None, client_ns),
            ]
            for path in paths:
                try:
                    wait_ok(path)
                except TimeoutError as error:
                    raise TimeoutError(f"{error}\n{_tail(root / 'explicit.log')}") from None
            print(
                f"hosts client {mesh.address('client')}, server {mesh.address('server')}; "
                f"nginx :{LISTENER} (captured by the server's sidecar) and :{DIRECT} (direct); "
                f"client: explicit egress 127.0.0.1:{EGRESS}, captured {SERVICE}:{LISTENER} "
                f"-> {mesh.resolves('client', SERVICE)}"
            )
            run_constant(root, paths, args)
            if args.wrk_seconds:
                processes = {
                    "nginx": children(nginx.process.pid)[0],
                    "server Envoy": children(mesh.sidecars["server"].pid)[0],
                    "explicit Envoy": children(explicit.pid)[0],
                    "captured Envoy": children(mesh.sidecars["client"].pid)[0],
                }
                run_wrk(paths, args.wrk_seconds, processes)
        finally:
            if explicit is not None and explicit.poll() is None:
                explicit.terminate()
                explicit.wait(20)
            if nginx is not None:
                nginx.stop()
            mesh.close()
