"""End to end: ``meshplane demo --hosts`` as a user runs it (root), and its refusal otherwise.

The demo builds three hosts (network namespaces named with this test's own prefix), runs the
control plane and ``meshplane envoy --capture`` on each host; the test runs the ``curl`` command
the demo prints, shifts the weights with the ``meshplane apply`` command it prints, and checks
that stopping the demo removes the hosts.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.hosts import require_root_tools
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def test_demo_hosts_refuses_without_root(tmp_path: Path) -> None:
    prefix = f"mp{os.getpid()}r-"
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "meshplane",
            "demo",
            "--hosts",
            "--data-dir",
            str(tmp_path / "data"),
            "--hosts-prefix",
            prefix,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "needs root" in done.stderr and "meshplane demo" in done.stderr
    assert "Traceback" not in done.stderr
    assert not {ns for ns in namespaces() if ns.startswith(prefix)}


def test_demo_hosts_runs_the_printed_commands(tmp_path: Path) -> None:
    require_root_tools("iptables", "curl")
    prefix = f"mp{os.getpid()}d-"
    log = tmp_path / "demo.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "meshplane",
                "demo",
                "--hosts",
                "--data-dir",
                str(tmp_path / "data"),
                "--api-port",
                str(free_port()),
                "--xds-port",
                str(free_port()),
                "--hosts-prefix",
                prefix,
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "300"},
        )
    try:
        deadline = time.monotonic() + 120
        while "is running" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        assert "is running" in text, text
        assert {f"{prefix}client", f"{prefix}blue", f"{prefix}green"} <= namespaces()
        curl = next(
            line.strip()
            for line in text.splitlines()
            if line.strip().startswith("ip netns exec") and "curl http://color.demo.local" in line
        )
        assert curl == f"ip netns exec {prefix}client curl http://color.demo.local:8080/"
        answer = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=30)
        assert answer.stdout.strip() == '{"color": "blue", "path": "/"}', answer
        exports = re.search(r"export (MESHPLANE_SERVER=\S+) (MESHPLANE_TOKEN=\S+)", text)
        assert exports is not None, text
        env = {**os.environ, **dict(item.split("=", 1) for item in exports.groups())}
        weights = re.search(r"apply -f (\S+weights-0-100.yaml)", text)
        assert weights is not None
        applied = subprocess.run(
            [sys.executable, "-m", "meshplane", "apply", "-f", weights.group(1)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert applied.returncode == 0, applied.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=30)
            if '"green"' in answer.stdout:
                break
            time.sleep(0.2)
        assert answer.stdout.strip() == '{"color": "green", "path": "/"}', answer
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    assert code == 0, log.read_text()[-3000:]
    assert not {ns for ns in namespaces() if ns.startswith(prefix)}
