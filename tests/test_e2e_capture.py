"""Transparent capture across three hosts: unmodified applications call ``color.demo.local`` by
name; real Envoy sidecars run by ``meshplane envoy --capture`` on each host, real iptables.

One set of hosts (client, blue, green, ext: network namespaces on a bridge, 198.18.0.0/15) and
one control plane serve the whole module.  ``color.demo.local`` resolves through each host's
``/etc/netns/<namespace>/hosts`` to an address in 240.240.0.0/16 (the mesh's virtual IP range):
nothing listens there, only capture makes the call work.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.capture import CapturedMesh

pytestmark = pytest.mark.e2e

PORT = 8080
COLOR_VIP = "240.240.0.10"
ECHO_VIP = "240.240.0.11"
ECHO_PORT = 7000
URL = f"http://color.demo.local:{PORT}/"


def route(blue: int, green: int, **extra: Any) -> dict[str, Any]:
    return {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [
                    {"virtualNode": "blue", "weight": blue},
                    {"virtualNode": "green", "weight": green},
                ]
            },
            **extra,
        }
    }


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapturedMesh]:
    m = CapturedMesh(tmp_path_factory.mktemp("capture"), ("client", "blue", "green", "ext"), "c")
    try:
        m.start()
        api = m.api
        api.create_mesh(meshName="demo", spec={"egressFilter": {"type": "DROP_ALL"}})
        for color in ("blue", "green"):
            listeners = [{"portMapping": {"port": PORT, "protocol": "http"}}]
            if color == "green":
                listeners.append({"portMapping": {"port": ECHO_PORT, "protocol": "tcp"}})
            api.create_virtual_node(
                meshName="demo",
                virtualNodeName=color,
                spec={
                    "listeners": listeners,
                    "serviceDiscovery": {"dns": {"hostname": m.address(color)}},
                },
            )
        api.create_virtual_router(
            meshName="demo",
            virtualRouterName="color",
            spec={"listeners": [{"portMapping": {"port": PORT, "protocol": "http"}}]},
        )
        api.create_route(
            meshName="demo", virtualRouterName="color", routeName="color", spec=route(100, 0)
        )
        api.create_virtual_service(
            meshName="demo",
            virtualServiceName="color.demo.local",
            spec={"provider": {"virtualRouter": {"virtualRouterName": "color"}}},
        )
        api.create_virtual_service(
            meshName="demo",
            virtualServiceName="echo.demo.local",
            spec={"provider": {"virtualNode": {"virtualNodeName": "green"}}},
        )
        api.create_virtual_node(
            meshName="demo",
            virtualNodeName="client",
            spec={
                "backends": [
                    {"virtualService": {"virtualServiceName": "color.demo.local"}},
                    {"virtualService": {"virtualServiceName": "echo.demo.local"}},
                ]
            },
        )
        m.network.write_names({"color.demo.local": COLOR_VIP, "echo.demo.local": ECHO_VIP})
        m.app("blue", "blue", "--port", str(PORT))
        m.app("green", "green", "--port", str(PORT), "--tcp-echo", str(ECHO_PORT))
        m.app("ext", "ext", "--port", "9000", "--port", "9001", "--tcp-echo", "9002")
        m.sidecar("blue", "blue")
        m.sidecar("green", "green")
        m.sidecar("client", "client", "--ignored-port", "9001")
        yield m
    finally:
        m.close()


def set_weights(mesh: CapturedMesh, blue: int, green: int, **extra: Any) -> None:
    mesh.api.update_route(
        meshName="demo",
        virtualRouterName="color",
        routeName="color",
        spec=route(blue, green, **extra),
    )


def wait_answer(mesh: CapturedMesh, expected: str, *args: str) -> None:
    def answered() -> bool:
        got = mesh.caller("client", URL, "--count", "20", *args)["answers"]
        return got == {expected: 20}

    mesh.wait(answered, f"every call answered by {expected}", 30)


def test_curl_calls_the_service_by_name_through_capture(mesh: CapturedMesh) -> None:
    done = mesh.curl("client", URL)
    assert done.returncode == 0, done.stderr
    assert '"app": "blue"' in done.stdout
    assert '"host": "color.demo.local:8080"' in done.stdout
    # the calls went through the client's captured egress listener and blue's ingress one
    client = mesh.stats("client")
    assert client["listener.0.0.0.0_15001.downstream_cx_total"] >= 1
    assert mesh.stats("blue")["listener.0.0.0.0_15000.downstream_cx_total"] >= 1
    listeners = mesh.admin("client", "/listeners")
    assert "lds_egress_0.0.0.0_15001" in listeners


def test_weights_are_honoured_for_an_unmodified_httpx_program(mesh: CapturedMesh) -> None:
    answers = mesh.caller("client", URL, "--count", "100")["answers"]
    assert answers == {"blue": 100}
    set_weights(mesh, 50, 50)
    mesh.wait(
        lambda: set(mesh.caller("client", URL, "--count", "20")["answers"]) == {"blue", "green"},
        "both colors",
    )
    answers = mesh.caller("client", URL, "--count", "400")["answers"]
    assert set(answers) == {"blue", "green"}
    assert 0.45 <= answers["blue"] / 400 <= 0.55, answers
    set_weights(mesh, 0, 100)
    wait_answer(mesh, "green")
    answers = mesh.caller("client", URL, "--count", "100")["answers"]
    assert answers == {"green": 100}
    set_weights(mesh, 100, 0)
    wait_answer(mesh, "blue")


def test_a_ten_step_shift_under_load_fails_no_request(mesh: CapturedMesh, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    result: dict[str, Any] = {}

    def load() -> None:
        result.update(mesh.caller("client", URL, "--until", str(stop), "--max-seconds", "90"))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        for step in range(1, 11):
            set_weights(mesh, 100 - 10 * step, 10 * step)
            mesh.wait(lambda: True, "a step", 0.1)
            subprocess.run(["sleep", "0.4"], check=True)
    finally:
        stop.touch()
        worker.join(120)
    answers = result["answers"]
    assert set(answers) == {"blue", "green"}, answers
    assert result["requests"] == answers["blue"] + answers["green"] > 50
    wait_answer(mesh, "green")
    set_weights(mesh, 100, 0)
    wait_answer(mesh, "blue")


def test_header_routes_retries_and_timeouts_apply(mesh: CapturedMesh) -> None:
    header = {
        "httpRoute": {
            "match": {"prefix": "/", "headers": [{"name": "x-color", "match": {"exact": "green"}}]},
            "action": {"weightedTargets": [{"virtualNode": "green", "weight": 1}]},
        },
        "priority": 1,
    }
    mesh.api.create_route(
        meshName="demo", virtualRouterName="color", routeName="header", spec=header
    )
    try:
        wait_answer(mesh, "green", "--header", "x-color:green")
        assert mesh.caller("client", URL, "--count", "10")["answers"] == {"blue": 10}
        done = mesh.curl("client", URL, "-H", "x-color: green")
        assert '"app": "green"' in done.stdout
    finally:
        mesh.api.delete_route(meshName="demo", virtualRouterName="color", routeName="header")
    wait_answer(mesh, "blue", "--header", "x-color:green")


def test_tcp_service_by_name_through_capture(mesh: CapturedMesh) -> None:
    script = (
        "import socket; s = socket.create_connection(('echo.demo.local', 7000), timeout=5); "
        "s.sendall(b'ping through capture'); print(s.recv(100).decode())"
    )
    done = mesh.run("client", ["python3", "-c", script.replace("timeout=5", "timeout=5")])
    interesting = ("tcp.", "listener.0.0.0.0_15001", "cluster.cds_egress_demo_green_tcp")
    client = {k: v for k, v in mesh.stats("client").items() if k.startswith(interesting) and v}
    green = {k: v for k, v in mesh.stats("green").items() if ("7000" in k or "15000" in k) and v}
    assert done.returncode == 0, (done.stderr, client, green)
    assert done.stdout.strip() == "ping through capture"
    assert mesh.stats("client")["tcp.egress.tcp.7000.downstream_cx_total"] >= 1
