"""A real Envoy for tests: started from a meshplane bootstrap, inspected through its admin API.

:class:`EnvoyHarness` starts Envoy (via :func:`meshplane.proxy.start_envoy`) with the admin
listener on a free loopback port, waits until it is bound, and offers async helpers over the
admin API (``config_dump``, ``stats``, ``clusters``, ``wait_for``).  ``close()`` always kills
the process and removes its run directory; use it in a fixture's teardown or as a context
manager.

Used by the real-Envoy (tier 3) tests of the xDS layer and, later, of translation.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import replace
from types import TracebackType
from typing import Any

from meshplane.proxy import BootstrapOptions, EnvoyOptions, EnvoyProcess, start_envoy


class EnvoyHarness:
    """One Envoy process; admin on 127.0.0.1 at a port Envoy picks."""

    def __init__(self, options: BootstrapOptions, *, drain_time: float = 1.0) -> None:
        self.options = replace(options, admin_address="127.0.0.1", admin_port=0)
        self.drain_time = drain_time
        self.process: EnvoyProcess | None = None
        self.admin = ""

    def start(self, timeout: float = 15.0) -> EnvoyHarness:
        self.process = start_envoy(EnvoyOptions(self.options, drain_time=self.drain_time))
        try:
            self.admin = self.process.wait_admin(timeout)
        except Exception:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=5)
            self.process = None

    def log(self) -> str:
        return self.process.log_tail(20_000) if self.process is not None else ""

    # -- admin API ----------------------------------------------------------------------

    def get_sync(self, path: str) -> tuple[int, str]:
        url = f"http://{self.admin}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return int(error.code), error.read().decode()

    async def get(self, path: str) -> tuple[int, str]:
        return await asyncio.to_thread(self.get_sync, path)

    async def config_dump(self, resource: str | None = None) -> dict[str, Any]:
        path = "/config_dump?include_eds" + (f"&resource={resource}" if resource else "")
        status, body = await self.get(path)
        assert status == 200, body
        return dict(json.loads(body))

    async def stats(self) -> dict[str, int | str]:
        status, body = await self.get("/stats")
        assert status == 200, body
        out: dict[str, int | str] = {}
        for line in body.splitlines():
            name, _, value = line.partition(": ")
            out[name] = int(value) if value.isdigit() else value
        return out

    async def clusters(self) -> dict[str, Any]:
        status, body = await self.get("/clusters?format=json")
        assert status == 200, body
        return dict(json.loads(body))

    async def cluster_names(self) -> set[str]:
        data = await self.clusters()
        return {c["name"] for c in data.get("cluster_statuses", [])}

    async def listener_names(self) -> set[str]:
        dump = await self.config_dump("dynamic_listeners")
        return {c["name"] for c in dump.get("configs", [])}

    async def ready(self) -> bool:
        status, _ = await self.get("/ready")
        return status == 200

    async def wait_for(
        self,
        predicate: Callable[[], Awaitable[bool]],
        timeout: float = 10.0,
        what: str = "condition",
    ) -> None:
        """Poll ``predicate`` until true; fail with the Envoy log tail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await predicate():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; envoy log:\n{self.log()[-5000:]}")

    def __enter__(self) -> EnvoyHarness:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
