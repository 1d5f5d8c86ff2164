"""A whole mesh on one host for end-to-end tests: a real ``meshplane serve``, real Envoy
sidecars started the way ``meshplane envoy`` starts them, and real applications.

Each workload gets its own loopback address (127.0.0.x), as the README's traffic model says:
its sidecar binds ``<address>:<listener port>`` and forwards to its app on 127.0.0.1.  Every
sidecar authenticates to the xDS server with a proxy token for its resource (made through the
API, as ``meshplane proxy-token create`` does) unless told otherwise.
:class:`Mesh` cleans up every process it started.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from meshplane.proxy import BootstrapOptions, EnvoyOptions, EnvoyProcess, start_envoy
from tests.support.apps import App
from tests.support.ports import free_port
from tests.support.server import MeshplaneServer

_ADDRESSES = itertools.count(2)


def next_address() -> str:
    """A fresh loopback address for a workload (127.0.0.2, 127.0.0.3, ... wrapping)."""
    n = next(_ADDRESSES)
    return f"127.0.{n // 250}.{n % 250 + 2}"


class Sidecar:
    def __init__(
        self, process: EnvoyProcess, admin: str, resource: str, egress_port: int, address: str
    ) -> None:
        self.process = process
        self.admin = admin
        self.resource = resource
        self.egress_port = egress_port
        self.address = address

    def admin_get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return int(error.code), error.read().decode()

    def stats(self) -> dict[str, int]:
        _, body = self.admin_get("/stats")
        out = {}
        for line in body.splitlines():
            name, _, value = line.partition(": ")
            if value.isdigit():
                out[name] = int(value)
        return out

    def config_dump(self) -> dict[str, Any]:
        return dict(json.loads(self.admin_get("/config_dump?include_eds")[1]))

    def log(self) -> str:
        return self.process.log_tail(20_000)

    def stop(self) -> None:
        self.process.stop(timeout=5)


class Mesh:
    """A control plane plus the sidecars and apps of one test."""

    def __init__(
        self,
        tmp: Path,
        server_args: list[str] | None = None,
        server: MeshplaneServer | None = None,
    ) -> None:
        self.tmp = tmp
        self.server = server or MeshplaneServer(tmp / "data", extra_args=server_args).start()
        self.appmesh = self.server.boto3()
        self.sidecars: list[Sidecar] = []
        self.apps: list[App] = []

    def app(self, name: str) -> App:
        app = App(name).start()
        self.apps.append(app)
        return app

    def sidecar(
        self,
        resource: str,
        *,
        address: str | None = None,
        app_port: int | None = None,
        egress_port: int | None = None,
        delta: bool = False,
        extra: dict[str, Any] | None = None,
        token: str | None = None,
        authenticate: bool = True,
        bootstrap: dict[str, Any] | None = None,
        xds_ports: list[int] | None = None,
    ) -> Sidecar:
        """A sidecar (or gateway) Envoy for ``resource``; it presents ``token``, or a fresh
        proxy token for ``resource`` when ``authenticate`` (if the API can make one);
        ``bootstrap`` sets further :class:`BootstrapOptions` (``stats_flush_interval``...).
        It connects to the server's xDS port, or to the replicas at ``xds_ports`` (Envoy
        fails over between them)."""
        address = address or next_address()
        if token is None and authenticate:
            token = self.proxy_token(resource)
        egress_port = egress_port or free_port()
        admin_port = free_port()
        options = BootstrapOptions(
            resource=resource,
            xds_host="127.0.0.1",
            xds_port=(xds_ports or [self.server.xds_port])[0],
            xds_more=tuple(("127.0.0.1", port) for port in (xds_ports or [])[1:]),
            api_type="DELTA_GRPC" if delta else "GRPC",
            admin_port=admin_port,
            workload_address=address,
            app_port=app_port,
            egress_port=egress_port,
            extra_metadata={"admin": f"127.0.0.1:{admin_port}", **(extra or {})},
            xds_token=token,
            **(bootstrap or {}),
        )
        process = start_envoy(EnvoyOptions(options, drain_time=1.0))
        process.wait_admin(15)
        sidecar = Sidecar(process, f"127.0.0.1:{admin_port}", resource, egress_port, address)
        self.sidecars.append(sidecar)
        return sidecar

    def proxy_token(self, resource: str, ttl: int = 3600) -> str | None:
        """A proxy token for ``resource``; None when the server cannot make one (no mesh)."""
        response = httpx.post(
            f"{self.server.url}/meshplane/v1/proxy-tokens",
            json={"resource": resource, "ttlSeconds": ttl},
            timeout=10,
        )
        return str(response.json()["token"]) if response.status_code == 200 else None

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (OSError, httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.05)
        logs = "\n".join(f"--- {s.resource}\n{s.log()[-3000:]}" for s in self.sidecars)
        raise AssertionError(
            f"timed out waiting for {what}\n{logs}\n--- server\n{self.server.log()[-3000:]}"
        )

    def close(self) -> None:
        for sidecar in self.sidecars:
            sidecar.stop()
        for app in self.apps:
            app.stop()
        self.server.stop()
