"""Two TCP virtual services on the same port, told apart by their virtual IPs: a captured
client on one host calls ``a.tcp.local:7100`` and ``b.tcp.local:7100`` by name (the mesh DNS
server answers each with its VIP), and its sidecar's egress listener sends each connection to
the right provider (App Mesh could not: roadmap #46).  Real Envoys, real iptables, hosts as
network namespaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.capture import CapturedMesh

pytestmark = pytest.mark.e2e

PORT = 7100


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapturedMesh]:
    m = CapturedMesh(tmp_path_factory.mktemp("vip"), ("client", "a", "b"), "v")
    try:
        m.start()
        api = m.api
        api.create_mesh(meshName="demo", spec={"egressFilter": {"type": "DROP_ALL"}})
        for name in ("a", "b"):
            api.create_virtual_node(
                meshName="demo",
                virtualNodeName=name,
                spec={
                    "listeners": [{"portMapping": {"port": PORT, "protocol": "tcp"}}],
                    "serviceDiscovery": {"dns": {"hostname": m.address(name)}},
                },
            )
            api.create_virtual_service(
                meshName="demo",
                virtualServiceName=f"{name}.tcp.local",
                spec={"provider": {"virtualNode": {"virtualNodeName": name}}},
            )
        api.create_virtual_node(
            meshName="demo",
            virtualNodeName="client",
            spec={
                "backends": [
                    {"virtualService": {"virtualServiceName": "a.tcp.local"}},
                    {"virtualService": {"virtualServiceName": "b.tcp.local"}},
                ]
            },
        )
        for name in ("a.tcp.local", "b.tcp.local"):
            m.wait(lambda n=name: m.resolves("client", n).startswith("240.240."), f"{name}'s VIP")
        for name in ("a", "b"):
            m.app(name, name, "--port", "8080", "--tcp-echo", str(PORT))
            m.sidecar(name, name)
        m.sidecar("client", "client")
        yield m
    finally:
        m.close()


def _echo(mesh: CapturedMesh, name: str) -> str:
    script = (
        "import socket\n"
        f"s = socket.create_connection(({name!r}, {PORT}), timeout=5)\n"
        "s.sendall(b'hello by vip')\n"
        "print(s.recv(100).decode())\n"
    )
    done = mesh.run("client", ["python3", "-c", script])
    return done.stdout.strip() or done.stderr.strip()[-300:]


def _connections(mesh: CapturedMesh, node: str) -> int:
    return mesh.stats("client").get(
        f"cluster.cds_egress_demo_{node}_tcp_{PORT}.upstream_cx_total", 0
    )


def test_two_tcp_services_on_one_port_by_vip(mesh: CapturedMesh) -> None:
    assert mesh.resolves("client", "a.tcp.local") != mesh.resolves("client", "b.tcp.local")
    for name, other in (("a", "b"), ("b", "a"), ("a", "b")):
        before = (_connections(mesh, name), _connections(mesh, other))
        mesh.wait(
            lambda n=name: _echo(mesh, f"{n}.tcp.local") == "hello by vip", f"{name} echoes", 30
        )
        after = (_connections(mesh, name), _connections(mesh, other))
        assert after[0] > before[0], (name, before, after)
        assert after[1] == before[1], (name, before, after)
