"""The Envoy runner: finding the binary, starting and stopping Envoy, signal forwarding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from meshplane.proxy import (
    BootstrapOptions,
    EnvoyNotFoundError,
    EnvoyOptions,
    find_envoy_binary,
    run_envoy,
    start_envoy,
)
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(60)

NODE = "mesh/demo/virtualNode/web"


def options(**kwargs: object) -> BootstrapOptions:
    # an xDS port nobody listens on: Envoy starts, serves admin, and keeps retrying ADS
    return BootstrapOptions(resource=NODE, xds_port=free_port(), admin_port=0, **kwargs)  # type: ignore[arg-type]


def test_find_envoy_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MESHPLANE_ENVOY_BINARY", raising=False)
    found = find_envoy_binary()
    assert os.access(found, os.X_OK)
    fake = tmp_path / "envoy"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setenv("MESHPLANE_ENVOY_BINARY", str(fake))
    with pytest.raises(EnvoyNotFoundError, match="not executable"):
        find_envoy_binary()
    fake.chmod(0o755)
    assert find_envoy_binary() == str(fake)


def test_start_envoy_serves_admin_and_cleans_up() -> None:
    with start_envoy(EnvoyOptions(options(log_level="warning"))) as envoy:
        address = envoy.wait_admin(15)
        host, _, port = address.rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0
        with urllib.request.urlopen(f"http://{address}/server_info", timeout=5) as response:
            info = json.loads(response.read())
        assert info["node"]["id"] == NODE
        # a listener update moves keep-alive connections to the new filter chain at once
        # (a tap's access logger reaches connections opened before it, see EnvoyOptions)
        assert info["command_line_options"]["drain_strategy"] == "Immediate", info
        assert "--use-dynamic-base-id" in " ".join(envoy.popen.args)  # type: ignore[arg-type]
        bootstrap = json.loads(envoy.bootstrap_path.read_text())
        assert bootstrap["node"]["id"] == NODE
        run_dir = envoy.run_dir
    assert envoy.popen.returncode is not None
    assert not run_dir.exists()


def test_two_envoys_side_by_side(tmp_path: Path) -> None:
    first = start_envoy(EnvoyOptions(options(), run_dir=str(tmp_path / "a")))
    second = start_envoy(EnvoyOptions(options(), run_dir=str(tmp_path / "b")))
    try:
        assert first.wait_admin(15) != second.wait_admin(15)
    finally:
        first.stop()
        second.stop()
    assert (tmp_path / "a" / "bootstrap.json").exists()  # a given run dir is kept


def test_run_envoy_returns_the_exit_code() -> None:
    assert run_envoy(EnvoyOptions(options(), extra_args=("--mode", "validate"))) == 0
    assert run_envoy(EnvoyOptions(options(), extra_args=("--no-such-flag",))) != 0


def test_run_envoy_forwards_sigterm(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from meshplane.proxy import BootstrapOptions, EnvoyOptions, run_envoy\n"
        f"opts = BootstrapOptions(resource={NODE!r}, xds_port={free_port()}, admin_port=0,"
        " log_level='warning')\n"
        f"sys.exit(run_envoy(EnvoyOptions(opts, run_dir={str(tmp_path)!r})))\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", script])
    try:
        # Envoy installs its signal handlers when its main loop runs, which is also when the
        # admin listener starts answering
        address_file = tmp_path / "admin-address.txt"
        deadline = time.monotonic() + 15
        while not _answers(address_file) and time.monotonic() < deadline:
            assert runner.poll() is None
            time.sleep(0.05)
        assert _answers(address_file)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(15) == 0  # Envoy got SIGTERM, exited cleanly, and so did we
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def _answers(address_file: Path) -> bool:
    try:
        address = address_file.read_text().strip()
        with urllib.request.urlopen(f"http://{address}/server_info", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False
