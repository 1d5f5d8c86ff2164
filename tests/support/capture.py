"""A mesh across several hosts with transparent capture, for end-to-end tests.

:class:`CapturedMesh` builds hosts (network namespaces on a bridge, ``tests/support/hosts.py``),
runs one real ``meshplane serve`` in this namespace bound to the bridge's gateway address (so it
requires API and proxy tokens, as any control plane reachable from other hosts does), starts
applications with no mesh knowledge on the hosts (``tests/support/hostapp.py``) and their
sidecars with the real CLI, ``meshplane envoy --capture``.  Clients are real programs run on a
host: ``curl`` and ``tests/support/caller.py`` (httpx).  :meth:`CapturedMesh.close` stops every
process it started and removes the hosts, also after a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from meshplane.proxy.hosts import HostNetwork
from tests.support.hosts import require_root_tools
from tests.support.server import MeshplaneServer

ADMIN_PORT = 9901
REPO = Path(__file__).resolve().parents[2]


class CapturedMesh:
    def __init__(self, tmp: Path, names: Sequence[str], tag: str) -> None:
        require_root_tools("iptables", "curl")
        self.tmp = tmp
        self.network = HostNetwork(names, prefix=f"mp{os.getpid()}{tag}-")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.sidecars: dict[str, subprocess.Popen[bytes]] = {}
        self.server: MeshplaneServer | None = None
        self.ext_second = ""
        self.baseline = ""

    def start(self) -> CapturedMesh:
        try:
            self.network.up()
            data = self.tmp / "data"
            made = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "meshplane",
                    "token",
                    "create",
                    "--data-dir",
                    str(data),
                    "--mesh",
                    "*",
                    "--role",
                    "admin",
                    "-o",
                    "json",
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            token = json.loads(made.stdout)
            self.token = str(token["token"])
            self.key_id, self.secret = str(token["id"]), str(token["secret"])
            gateway = self.network.gateway
            # the mesh DNS server on the gateway's port 53: every host's resolver; names that
            # are not the mesh's are refused (never forwarded off this machine)
            server = MeshplaneServer(
                data,
                extra_args=[
                    "--host",
                    gateway,
                    "--dns-port",
                    "53",
                    "--dns-host",
                    gateway,
                    "--dns-upstream",
                    "off",
                ],
            )
            server.url = f"http://{self.network.gateway}:{server.api_port}"
            self.server = server.start()
            self.api = server.boto3(self.key_id, self.secret)
            self.network.write_names({}, nameserver=gateway)
        except BaseException:
            self.close()
            raise
        return self

    @property
    def xds(self) -> str:
        assert self.server is not None
        return f"{self.network.gateway}:{self.server.xds_port}"

    def address(self, host: str) -> str:
        return self.network.hosts[host].address

    def run(
        self, host: str, argv: Sequence[str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self.network.run(host, list(argv), timeout=timeout)

    def _start(self, host: str, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        handle = log.open("wb")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env = {k: v for k, v in env.items() if not k.startswith("APPMESH_")}
        process = self.network.popen(host, argv, stdout=handle, stderr=subprocess.STDOUT, env=env)
        handle.close()
        self.processes.append(process)
        return process

    def app(self, host: str, name: str, *args: str) -> subprocess.Popen[bytes]:
        """An application on ``host`` (``tests/support/hostapp.py`` arguments)."""
        log = self.tmp / f"app-{host}-{name}-{len(self.processes)}.log"
        process = self._start(
            host, [sys.executable, "-m", "tests.support.hostapp", name, *args], log
        )
        self.wait(lambda: "ready" in log.read_text(), f"app {name} on {host}", 20)
        return process

    def proxy_token(self, node: str, mesh: str = "demo") -> Path:
        assert self.server is not None
        answer = httpx.post(
            f"{self.server.url}/meshplane/v1/proxy-tokens",
            json={"resource": f"mesh/{mesh}/virtualNode/{node}", "ttlSeconds": 3600},
            headers={"authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        path = self.tmp / f"{node}.token"
        path.write_text(answer.json()["token"])
        os.chmod(path, 0o600)
        return path

    def sidecar(
        self, host: str, node: str, *flags: str, mesh: str = "demo"
    ) -> subprocess.Popen[bytes]:
        """``meshplane envoy --capture`` for ``node`` on ``host``; returns once the capture
        rules are in."""
        log = self.tmp / f"sidecar-{host}-{len(self.processes)}.log"
        argv = [
            sys.executable,
            "-m",
            "meshplane",
            "envoy",
            "--capture",
            "--resource",
            f"mesh/{mesh}/virtualNode/{node}",
            "--xds",
            self.xds,
            "--token-file",
            str(self.proxy_token(node, mesh)),
            "--admin-port",
            str(ADMIN_PORT),
            "--log-level",
            "warning",
            *flags,
        ]
        process = self._start(host, argv, log)
        self.wait(
            lambda: process.poll() is None and "capture rules ipv4" in log.read_text(),
            f"the sidecar of {node} on {host} to capture",
            60,
            lambda: log.read_text()[-3000:],
        )
        self.sidecars[host] = process
        return process

    def stop_sidecar(self, host: str) -> int:
        process = self.sidecars.pop(host)
        process.send_signal(signal.SIGTERM)
        return process.wait(20)

    def saved_rules(self, host: str) -> str:
        """``iptables-save`` and ``ip6tables-save`` of ``host`` without timestamp comments."""
        out = ""
        for tool in ("iptables-save", "ip6tables-save"):
            text = self.run(host, [tool]).stdout
            out += "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        return out

    def resolves(self, host: str, name: str) -> str:
        """The address ``name`` resolves to on ``host`` (getaddrinfo, as applications do)."""
        done = self.run(host, ["getent", "ahostsv4", name], timeout=10)
        return done.stdout.split()[0] if done.returncode == 0 and done.stdout else ""

    def admin(self, host: str, path: str) -> str:
        done = self.run(
            host, ["curl", "-s", "--max-time", "5", f"http://127.0.0.1:{ADMIN_PORT}{path}"]
        )
        return done.stdout

    def stats(self, host: str) -> dict[str, int]:
        out = {}
        for line in self.admin(host, "/stats").splitlines():
            name, _, value = line.partition(": ")
            if value.isdigit():
                out[name] = int(value)
        return out

    def curl(self, host: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(host, ["curl", "-s", "--max-time", "10", *args, url])

    def caller(self, host: str, url: str, *args: str, timeout: float = 120) -> dict[str, Any]:
        """``tests/support/caller.py`` (httpx) on ``host``: its answers."""
        env_prefix = ["env", f"PYTHONPATH={REPO}"]
        done = self.run(
            host, [*env_prefix, sys.executable, "-m", "tests.support.caller", url, *args], timeout
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout.splitlines()[-1]))

    def wait(
        self,
        predicate: Callable[[], bool],
        what: str,
        timeout: float = 30,
        detail: Callable[[], str] | None = None,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        extra = detail() if detail else ""
        server = self.server.log()[-2000:] if self.server else ""
        raise AssertionError(f"timed out waiting for {what}\n{extra}\n--- server\n{server}")

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.server is not None:
            self.server.stop()
        self.network.down()
