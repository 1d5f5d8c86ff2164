"""Transparent capture across three hosts: unmodified applications call ``color.demo.local`` by
name; real Envoy sidecars run by ``meshplane envoy --capture`` on each host, real iptables.

One set of hosts (client, blue, green, ext: network namespaces on a bridge, 198.18.0.0/15) and
one control plane serve the whole module.  Each host's resolver is the mesh DNS server, which
answers ``color.demo.local`` with the service's virtual IP (240.240.0.0/16): nothing listens
there, only capture makes the call work.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.capture import CapturedMesh

pytestmark = pytest.mark.e2e

PORT = 8080
ECHO_PORT = 7000
GRPC_PORT = 9090
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
                listeners.append({"portMapping": {"port": GRPC_PORT, "protocol": "grpc"}})
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
        for service in ("echo.demo.local", "grpc.demo.local"):
            api.create_virtual_service(
                meshName="demo",
                virtualServiceName=service,
                spec={"provider": {"virtualNode": {"virtualNodeName": "green"}}},
            )
        api.create_virtual_node(
            meshName="demo",
            virtualNodeName="client",
            spec={
                "backends": [
                    {"virtualService": {"virtualServiceName": "color.demo.local"}},
                    {"virtualService": {"virtualServiceName": "echo.demo.local"}},
                    {"virtualService": {"virtualServiceName": "grpc.demo.local"}},
                ]
            },
        )
        for name in ("color.demo.local", "echo.demo.local", "grpc.demo.local"):
            m.wait(lambda n=name: m.resolves("client", n).startswith("240.240."), f"{name}'s VIP")
        assert m.network.network is not None
        m.ext_second = str(m.network.network.network_address + 200)
        m.run("ext", ["ip", "addr", "add", f"{m.ext_second}/24", "dev", "eth0"])
        m.baseline = m.saved_rules("client")
        m.app("blue", "blue", "--port", str(PORT))
        m.app(
            "green", "green", "--port", str(PORT), "--tcp-echo", str(ECHO_PORT),
            "--grpc", str(GRPC_PORT),
        )  # fmt: skip
        m.app("ext", "ext", "--port", "9000", "--port", "9001", "--tcp-echo", "9002")
        m.sidecar("blue", "blue")
        m.sidecar("green", "green")
        m.sidecar("client", "client", *CLIENT_FLAGS(m))
        yield m
    finally:
        m.close()


def CLIENT_FLAGS(m: CapturedMesh) -> tuple[str, ...]:
    return ("--ignored-port", "9001", "--ignored-ip", m.ext_second)


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
    # Envoy draws each request's cluster at random: with 400 requests one run in 22 falls
    # outside 45-55 % (2 standard deviations), with 4,000 one in billions (6.3)
    split = mesh.caller("client", URL, "--count", "4000", "--max-seconds", "300", timeout=330)
    answers = split["answers"]
    assert set(answers) == {"blue", "green"}
    assert 0.45 <= answers["blue"] / 4000 <= 0.55, answers
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
    done = mesh.run("client", [sys.executable, "-c", script])
    interesting = ("tcp.", "listener.0.0.0.0_15001", "cluster.cds_egress_demo_green_tcp")
    client = {k: v for k, v in mesh.stats("client").items() if k.startswith(interesting) and v}
    green = {k: v for k, v in mesh.stats("green").items() if ("7000" in k or "15000" in k) and v}
    assert done.returncode == 0, (done.stderr, client, green)
    assert done.stdout.strip() == "ping through capture"
    assert mesh.stats("client")["tcp.egress.tcp.7000.downstream_cx_total"] >= 1


def test_grpc_service_by_name_through_capture(mesh: CapturedMesh) -> None:
    script = (
        "import grpc\n"
        f"with grpc.insecure_channel('grpc.demo.local:{GRPC_PORT}') as channel:\n"
        "    print(channel.unary_unary('/demo.Echo/Say')(b'hello', timeout=10).decode())\n"
    )
    done = mesh.run("client", ["env", f"PYTHONPATH={Path(__file__).parents[1]}", sys.executable,
                               "-c", script])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "green:hello"
    stats = mesh.stats("client")
    assert stats["cluster.cds_egress_demo_green_grpc_9090.upstream_rq_200"] >= 1


def set_egress(mesh: CapturedMesh, kind: str) -> None:
    mesh.api.update_mesh(meshName="demo", spec={"egressFilter": {"type": kind}})


def echo(mesh: CapturedMesh, address: str, port: int) -> str:
    script = (
        "import socket\n"
        f"s = socket.create_connection(({address!r}, {port}), timeout=5)\n"
        "s.sendall(b'hello')\n"
        "try:\n    print(s.recv(100).decode() or 'closed')\n"
        "except ConnectionResetError:\n    print('closed')\n"
        "except OSError as e:\n    print(type(e).__name__)\n"
    )
    return mesh.run("client", [sys.executable, "-c", script]).stdout.strip()


def test_drop_all_refuses_undeclared_destinations_allow_all_passes_them(
    mesh: CapturedMesh,
) -> None:
    ext = mesh.address("ext")
    refused = mesh.curl("client", f"http://{ext}:9000/", "-o", "/dev/null", "-w", "%{http_code}")
    assert refused.stdout == "404"  # the client's Envoy: no such service in the mesh
    assert echo(mesh, ext, 9002) == "closed"  # no filter chain: the connection is closed
    set_egress(mesh, "ALLOW_ALL")
    try:
        mesh.wait(
            lambda: '"app": "ext"' in mesh.curl("client", f"http://{ext}:9000/").stdout,
            "ALLOW_ALL to reach the undeclared server",
        )
        before = mesh.stats("client").get("tcp.egress.passthrough.downstream_cx_total", 0)
        assert echo(mesh, ext, 9002) == "hello"
        after = mesh.stats("client")["tcp.egress.passthrough.downstream_cx_total"]
        assert after == before + 1  # passed straight through the client's Envoy
        assert mesh.caller("client", URL, "--count", "10")["answers"] == {"blue": 10}
    finally:
        set_egress(mesh, "DROP_ALL")
    mesh.wait(lambda: echo(mesh, ext, 9002) == "closed", "DROP_ALL again")


def test_ignored_ports_and_addresses_bypass_envoy(mesh: CapturedMesh) -> None:
    ext = mesh.address("ext")
    stat = "listener.0.0.0.0_15001.downstream_cx_total"
    before = mesh.stats("client")[stat]
    # 9001 is an ignored port and ext_second an ignored address: DROP_ALL does not apply,
    # because the connections never reach Envoy
    assert '"app": "ext"' in mesh.curl("client", f"http://{ext}:9001/").stdout
    assert '"app": "ext"' in mesh.curl("client", f"http://{mesh.ext_second}:9000/").stdout
    assert echo(mesh, mesh.ext_second, 9002) == "hello"
    assert mesh.stats("client")[stat] == before
    # the same server on a port that is not ignored is captured (and refused)
    assert (
        mesh.curl("client", f"http://{ext}:9000/", "-o", "/dev/null", "-w", "%{http_code}").stdout
        == "404"
    )
    assert mesh.stats("client")[stat] == before + 1


def test_envoys_own_connections_are_never_captured(mesh: CapturedMesh) -> None:
    # Envoy's xDS stream and its connections to blue pass the uid rule (counted by iptables);
    # had they been captured, they would loop through Envoy's own egress listener
    listing = mesh.run(
        "client", ["iptables", "-t", "nat", "-L", "APPMESH_EGRESS", "-v", "-x", "-n"]
    )
    owner = next(line for line in listing.stdout.splitlines() if "owner UID match 1337" in line)
    assert int(owner.split()[0]) > 0, listing.stdout
    before = mesh.stats("client")["listener.0.0.0.0_15001.downstream_cx_total"]
    assert mesh.caller("client", URL, "--count", "5")["answers"] == {"blue": 5}
    # one keep-alive connection from the application; none from Envoy itself
    assert mesh.stats("client")["listener.0.0.0.0_15001.downstream_cx_total"] == before + 1


def test_strict_mesh_mtls_across_hosts(mesh: CapturedMesh) -> None:
    arn = mesh.api.describe_mesh(meshName="demo")["mesh"]["metadata"]["arn"]
    mesh.api.tag_resource(resourceArn=arn, tags=[{"key": "meshplane.io/mtls", "value": "STRICT"}])
    try:
        mesh.wait(
            lambda: (
                "DownstreamTlsContext"
                in mesh.admin("blue", "/config_dump?resource=dynamic_listeners")
            ),
            "blue's inbound listener to require TLS",
        )
        wait_answer(mesh, "blue")
        assert mesh.stats("blue")["listener.0.0.0.0_15000.ssl.handshake"] > 0
        # a client outside the mesh (ext has no sidecar) is refused by blue's sidecar
        outside = mesh.curl("ext", f"http://{mesh.address('blue')}:{PORT}/")
        assert outside.returncode != 0 and '"app"' not in outside.stdout
    finally:
        mesh.api.untag_resource(resourceArn=arn, tagKeys=["meshplane.io/mtls"])
    mesh.wait(
        lambda: (
            '"app": "blue"' in mesh.curl("ext", f"http://{mesh.address('blue')}:{PORT}/").stdout
        ),
        "plain text accepted again",
    )


def test_retries_and_timeouts_apply_to_captured_calls(mesh: CapturedMesh) -> None:
    api = mesh.api
    mesh.app("blue", "flaky", "--port", "8090", "--fail-every", "2")
    mesh.app("blue", "slow", "--port", "8091", "--delay", "3")
    api.update_virtual_node(
        meshName="demo",
        virtualNodeName="blue",
        spec={
            "listeners": [
                {"portMapping": {"port": port, "protocol": "http"}} for port in (PORT, 8090, 8091)
            ],
            "serviceDiscovery": {"dns": {"hostname": mesh.address("blue")}},
        },
    )
    policies = {
        "flaky": (
            8090,
            {
                "retryPolicy": {
                    "httpRetryEvents": ["server-error"],
                    "maxRetries": 3,
                    "perRetryTimeout": {"unit": "s", "value": 2},
                }
            },
        ),
        "slow": (8091, {"timeout": {"perRequest": {"unit": "ms", "value": 500}}}),
    }
    for name, (port, extra) in policies.items():
        api.create_virtual_router(
            meshName="demo",
            virtualRouterName=name,
            spec={"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]},
        )
        api.create_route(
            meshName="demo",
            virtualRouterName=name,
            routeName=name,
            spec={
                "httpRoute": {
                    "match": {"prefix": "/"},
                    "action": {
                        "weightedTargets": [{"virtualNode": "blue", "weight": 1, "port": port}]
                    },
                    **extra,
                }
            },
        )
        api.create_virtual_service(
            meshName="demo",
            virtualServiceName=f"{name}.demo.local",
            spec={"provider": {"virtualRouter": {"virtualRouterName": name}}},
        )
    backends = ("color", "echo", "grpc", "flaky", "slow")
    api.update_virtual_node(
        meshName="demo",
        virtualNodeName="client",
        spec={
            "backends": [
                {"virtualService": {"virtualServiceName": f"{b}.demo.local"}} for b in backends
            ]
        },
    )
    for name in ("flaky", "slow"):
        mesh.wait(
            lambda n=name: mesh.resolves("client", f"{n}.demo.local").startswith("240.240."),
            f"{name}'s VIP",
        )
    flaky = "http://flaky.demo.local:8090/"
    mesh.wait(
        lambda: "flaky" in mesh.caller("client", flaky, "--count", "2")["answers"],
        "the flaky service to be reachable",
    )
    # every second answer of the app is a 503: the route's retries hide them all
    assert mesh.caller("client", flaky, "--count", "20")["answers"] == {"flaky": 20}
    retries = mesh.stats("client")["cluster.cds_egress_demo_blue_http_8090.upstream_rq_retry"]
    assert retries >= 10
    slow = mesh.curl("client", "http://slow.demo.local:8091/", "-w", "\\n%{http_code}")
    assert slow.stdout.splitlines()[-1] == "504", slow.stdout
    assert "upstream request timeout" in slow.stdout


def test_sidecar_killed_recovery(mesh: CapturedMesh) -> None:
    """Envoy killed: the runner removes the rules. The runner killed (SIGKILL): the rules stay,
    connections are refused at once, and 'proxy-init disable' restores the host."""

    def envoys() -> list[int]:
        """The pids of the Envoy processes in the client's namespace."""
        listed = subprocess.run(
            ["ip", "netns", "pids", mesh.network.netns("client")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        found = []
        for pid in listed:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "envoy":
                    found.append(int(pid))
            except FileNotFoundError:
                continue
        return found

    runner = mesh.sidecars["client"]
    (envoy,) = envoys()
    subprocess.run(["kill", "-KILL", str(envoy)], check=True)
    assert runner.wait(20) == 137
    assert mesh.saved_rules("client") == mesh.baseline
    mesh.sidecars.pop("client")
    runner = mesh.sidecar("client", "client", *CLIENT_FLAGS(mesh))
    wait_answer(mesh, "blue")
    assert envoys()
    runner.kill()
    runner.wait(10)
    mesh.sidecars.pop("client")
    mesh.wait(lambda: not envoys(), "Envoy to exit after its runner (parent-death signal)")
    status = mesh.run("client", [sys.executable, "-m", "meshplane", "proxy-init", "status"])
    assert "capture: enabled" in status.stdout
    refused = mesh.curl("client", URL)
    assert refused.returncode == 7  # connection refused at once: nobody on the egress port
    done = mesh.run("client", [sys.executable, "-m", "meshplane", "proxy-init", "disable"])
    assert done.returncode == 0, done.stderr
    assert mesh.saved_rules("client") == mesh.baseline
    direct = mesh.curl("client", f"http://{mesh.address('blue')}:{PORT}/")
    assert '"app": "blue"' in direct.stdout  # the host's traffic flows again (outside the mesh)
