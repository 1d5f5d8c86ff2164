"""A real ``meshplane serve`` process for tests: free ports, its own data directory (and a
database URL if it is given one), waits until healthy, stops with SIGTERM (and is killed if it
does not stop).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.ports import free_port

TEST_KEK = "6b" * 32
"""The key-encryption key test replicas on one database share (servers on PostgreSQL need
one)."""


class MeshplaneServer:
    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        https: bool = False,
        database_url: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.api_port = free_port()
        self.xds_port = free_port()
        self.dns_port = free_port()
        self.https = https
        self.url = f"{'https' if https else 'http'}://127.0.0.1:{self.api_port}"
        self.env = env or {}
        if (
            database_url
            and database_url.startswith("postgresql")
            and "MESHPLANE_KEK" not in self.env
        ):
            self.env = {**self.env, "MESHPLANE_KEK": TEST_KEK}
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"meshplane-{self.api_port}.log"

    def start(self, timeout: float = 60.0) -> MeshplaneServer:
        env = {**os.environ, **self.env}
        env.pop("MESHPLANE_SERVER", None)
        if "MESHPLANE_KEK" not in self.env:
            env.pop("MESHPLANE_KEK", None)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "meshplane",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--api-port",
                str(self.api_port),
                "--xds-port",
                str(self.xds_port),
                *(["--database-url", self.database_url] if self.database_url else []),
                # its own DNS port, and no forwarding unless a test names an upstream
                *([] if "--dns-port" in self.extra_args else ["--dns-port", str(self.dns_port)]),
                *([] if "--dns-upstream" in self.extra_args else ["--dns-upstream", "off"]),
                *self.extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"meshplane serve exited early:\n{self.log()}")
            try:
                health = httpx.get(f"{self.url}/healthz", timeout=1, verify=not self.https)
                if health.status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"meshplane serve did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        self._log.close()
        return code

    def restart(self, timeout: float = 60.0) -> MeshplaneServer:
        """Stop (SIGTERM) and start again on the same ports and data directory."""
        self.stop()
        return self.start(timeout)

    def kill(self) -> None:
        """SIGKILL: the control plane vanishes without a goodbye."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
            self._log.close()

    def cloudmap(
        self, key_id: str = "x", secret: str = "x", *, validate: bool = True, **options: Any
    ) -> Any:
        """A Cloud Map (servicediscovery) client; DiscoverInstances' ``data-`` host prefix is
        off, as it must be against an IP endpoint.  ``validate=False`` sends what botocore
        would refuse itself (to test the server's own validation)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "servicediscovery",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(
                inject_host_prefix=False,
                retries={"max_attempts": 1},
                parameter_validation=validate,
            ),
            **options,
        )

    def boto3(self, key_id: str = "x", secret: str = "x", **options: Any) -> Any:
        """An App Mesh client; ``key_id``/``secret`` are an API token's id and secret."""
        import boto3

        return boto3.client(
            "appmesh",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            **options,
        )
