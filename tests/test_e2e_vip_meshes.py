"""One virtual service name in two meshes (a production and a staging mesh, as App Mesh users
run them): applications in each mesh call ``color.tcp.local:7100`` by name and reach their own
mesh's provider.  The one mesh DNS server answers the name alike for every host (the meshes'
services share one virtual IP, ``meshplane.service.vips``) and each sidecar sends it to its own
mesh's service.  TCP, with a decoy service on the same port in each mesh (``alpha.tcp.local``,
which a connection to an address the sidecar does not know falls back to by port): the
sidecars must tell the services apart by virtual IP.  Real Envoys, real iptables, hosts as
network namespaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.capture import CapturedMesh

pytestmark = pytest.mark.e2e

PORT = 7100
MESHES = {"prod": ("c1", "p1"), "staging": ("c2", "p2")}  # mesh -> (client host, provider host)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapturedMesh]:
    m = CapturedMesh(tmp_path_factory.mktemp("vipmeshes"), ("c1", "c2", "p1", "p2"), "m")
    try:
        m.start()
        api = m.api
        tcp = [{"portMapping": {"port": PORT, "protocol": "tcp"}}]
        for name, (client, provider) in MESHES.items():
            api.create_mesh(meshName=name, spec={"egressFilter": {"type": "DROP_ALL"}})
            # the decoy's address serves nothing on the port
            hosts = {"alpha": m.address(client), "color": m.address(provider)}
            for node, host in hosts.items():
                api.create_virtual_node(
                    meshName=name,
                    virtualNodeName=node,
                    spec={"listeners": tcp, "serviceDiscovery": {"dns": {"hostname": host}}},
                )
                api.create_virtual_service(
                    meshName=name,
                    virtualServiceName=f"{node}.tcp.local",
                    spec={"provider": {"virtualNode": {"virtualNodeName": node}}},
                )
            api.create_virtual_node(
                meshName=name,
                virtualNodeName="client",
                spec={
                    "backends": [
                        {"virtualService": {"virtualServiceName": f"{n}.tcp.local"}}
                        for n in ("alpha", "color")
                    ]
                },
            )
        for client, _ in MESHES.values():
            for service in ("alpha.tcp.local", "color.tcp.local"):
                m.wait(
                    lambda c=client, s=service: m.resolves(c, s).startswith("240.240."),
                    f"{service}'s VIP on {client}",
                )
        for name, (client, provider) in MESHES.items():
            m.app(provider, f"{name}-color", "--port", "8080", "--tcp-echo", str(PORT))
            m.sidecar(provider, "color", mesh=name)
            m.sidecar(client, "client", mesh=name)
        yield m
    finally:
        m.close()


def _echo(mesh: CapturedMesh, host: str) -> str:
    script = (
        "import socket\n"
        f"s = socket.create_connection(('color.tcp.local', {PORT}), timeout=5)\n"
        "s.sendall(b'hello from the same name')\n"
        "print(s.recv(100).decode())\n"
    )
    done = mesh.run(host, ["python3", "-c", script])
    return done.stdout.strip() or done.stderr.strip()[-300:]


def test_one_name_in_two_meshes_reaches_each_meshs_own_service(mesh: CapturedMesh) -> None:
    # every host resolves the name to one address, distinct from the other service's
    color = {mesh.resolves(client, "color.tcp.local") for client, _ in MESHES.values()}
    alpha = {mesh.resolves(client, "alpha.tcp.local") for client, _ in MESHES.values()}
    assert len(color) == 1 and len(alpha) == 1 and color != alpha, (color, alpha)
    for name, (client, provider) in MESHES.items():
        egress = f"cluster.cds_egress_{name}_color_tcp_{PORT}.upstream_cx_total"
        ingress = "listener.0.0.0.0_15000.downstream_cx_total"
        before = (mesh.stats(client).get(egress, 0), mesh.stats(provider).get(ingress, 0))
        mesh.wait(
            lambda c=client: _echo(mesh, c) == "hello from the same name",
            f"the client of mesh {name} to be echoed",
            30,
        )
        # through its own mesh's cluster, to its own mesh's provider host
        assert mesh.stats(client).get(egress, 0) > before[0], (name, before)
        assert mesh.stats(provider).get(ingress, 0) > before[1], (name, before)
