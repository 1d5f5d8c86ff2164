"""End to end: ``meshplane demo`` (the README's run command) as a user runs it.

The demo is started as a real process on free ports; a client outside the mesh calls the
gateway's port and watches the blue/green split follow the weights files the demo prints,
applied with ``meshplane apply``.  The demo's sidecars always bind 127.0.0.2:8080 and
127.0.0.3:8080: the test fails loudly when something else holds them.
"""

from __future__ import annotations

import os
import re
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


def test_the_demo_keeps_its_files_inside_its_data_directory(demo: Demo) -> None:
    data = demo.demo_dir.parent
    assert sorted(p.name for p in demo.demo_dir.iterdir() if p.name.startswith("envoy-")) == [
        "envoy-blue",
        "envoy-client",
        "envoy-green",
        "envoy-ingress",
    ]
    assert (demo.demo_dir / "demo.yaml").is_file()
    assert not (data.parent / "demo").exists()
    assert f"apply -f {demo.demo_dir}/weights-50-50.yaml" in demo.output()
    # what apply cites as the origin of unchanged resources is a file the user has
    applied = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshplane",
            "apply",
            "-f",
            str(demo.demo_dir / "weights-100-0.yaml"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MESHPLANE_SERVER": demo.api, "NO_COLOR": "1"},
        timeout=60,
        check=True,
    )
    origins = re.findall(r"\((\S+)#\d+ ", applied.stdout)
    assert origins
    assert all(Path(origin).is_file() for origin in origins), applied.stdout


def second_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshplane", "demo", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=60,
    )


def test_a_second_demo_says_what_is_in_its_way(
    demo: Demo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    api = int(demo.api.rsplit(":", 1)[1])
    first = demo.process.args
    assert isinstance(first, list)
    given = {
        a.split("=")[0]: int(a.split("=")[1])
        for a in first
        if str(a).startswith("--") and "=" in str(a)
    }
    other = str(tmp_path_factory.mktemp("second") / "data")
    fresh = {
        "--api-port": free_run(1),
        "--xds-port": free_run(1),
        "--gateway-port": free_run(1),
        "--egress-port": free_run(3),
        "--admin-port": free_run(4),
    }
    flags = [f"{k}={v}" for k, v in given.items()]
    taken = second_demo("--data-dir", other, *flags)
    assert taken.returncode == 5, taken.stderr
    assert f"127.0.0.1:{api} is already in use" in taken.stderr
    assert "choose another port with --api-port" in taken.stderr
    for flag in ("--xds-port", "--gateway-port", "--egress-port", "--admin-port"):
        # every port checked before `flag` is moved out of the way
        order = ["--api-port", "--xds-port", "--gateway-port", "--egress-port", "--admin-port"]
        moved = {**given, **{k: fresh[k] for k in order[: order.index(flag)]}}
        result = second_demo("--data-dir", other, *(f"{k}={v}" for k, v in moved.items()))
        assert result.returncode == 5, result.stderr
        assert f"choose another port with {flag}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    sidecars = second_demo("--data-dir", other, *(f"{k}={v}" for k, v in fresh.items()))
    assert sidecars.returncode == 5
    assert "127.0.0.2:8080 is already in use" in sidecars.stderr
    assert "the demo's sidecars always bind it: stop the other demo first" in sidecars.stderr
    locked = second_demo("--data-dir", str(demo.demo_dir.parent), *flags)
    assert locked.returncode == 5
    pid = demo.process.pid
    assert f"is in use by another meshplane process (pid {pid})" in locked.stderr
    assert f"kill {pid}" in locked.stderr


def test_stopping_the_demo_says_what_was_stopped(demo: Demo) -> None:
    """Runs last: it stops the module's demo."""
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(30) == 0
    assert (
        "meshplane demo stopped: 4 Envoy proxies, 2 demo apps, the control plane; its data "
        f"stays in {demo.demo_dir.parent}"
    ) in demo.output()
