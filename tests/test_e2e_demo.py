"""End to end: ``meshplane demo`` (the README's run command) as a user runs it.

The demo is started as a real process on free ports; a client outside the mesh calls the
gateway's port and watches the blue/green split follow the weights files the demo prints,
applied with ``meshplane apply``.  The demo's sidecars always bind 127.0.0.2:8080 and
127.0.0.3:8080: the test fails loudly when something else holds them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_run

pytestmark = pytest.mark.e2e


def bindable(address: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    log: Path
    api: str
    gateway: int
    demo_dir: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    if not (bindable("127.0.0.2", 8080) and bindable("127.0.0.3", 8080)):
        pytest.fail(
            "127.0.0.2:8080 or 127.0.0.3:8080 is taken (a demo already running?): "
            "the demo binds them, stop whatever holds them"
        )
    tmp = tmp_path_factory.mktemp("demo")
    ports = {"api": free_run(1), "xds": free_run(1), "egress": free_run(3)}
    ports["admin"], ports["gateway"] = free_run(4), free_run(1)
    log = tmp / "demo.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "meshplane",
                "demo",
                "--data-dir",
                str(tmp / "data"),
                *(f"--{name}-port={port}" for name, port in ports.items()),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
    found = Demo(
        process, log, f"http://127.0.0.1:{ports['api']}", ports["gateway"], tmp / "data" / "demo"
    )
    try:
        deadline = time.monotonic() + 60
        while "meshplane demo is running" not in found.output():
            assert process.poll() is None, found.output()
            assert time.monotonic() < deadline, found.output()
            time.sleep(0.1)
        yield found
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def split(demo: Demo, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=5) as http:
        for _ in range(n):
            response = http.get(f"http://127.0.0.1:{demo.gateway}/")
            seen[
                response.json()["color"]
                if response.status_code == 200
                else f"HTTP {response.status_code}"
            ] += 1
    return seen


def shift(demo: Demo, blue: int, green: int) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "meshplane",
            "--server",
            demo.api,
            "apply",
            "-f",
            str(demo.demo_dir / f"weights-{blue}-{green}.yaml"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def wait_for(demo: Demo, colors: set[str]) -> Counter[str]:
    deadline = time.monotonic() + 20
    while True:
        seen = split(demo, 40)
        if set(seen) == colors or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def test_the_demo_prints_the_gateway_curl_line(demo: Demo) -> None:
    assert f"curl -s http://127.0.0.1:{demo.gateway}/hello" in demo.output()


def test_curl_the_gateway_and_watch_the_split_follow_the_weights(demo: Demo) -> None:
    with httpx.Client(timeout=5) as http:
        hello = http.get(f"http://127.0.0.1:{demo.gateway}/hello")
    assert hello.json() == {"color": "blue", "path": "/hello"}
    assert wait_for(demo, {"blue"}) == Counter({"blue": 40})
    shift(demo, 50, 50)
    assert set(wait_for(demo, {"blue", "green"})) == {"blue", "green"}
    shift(demo, 0, 100)
    assert wait_for(demo, {"green"}) == Counter({"green": 40})
    shift(demo, 100, 0)
