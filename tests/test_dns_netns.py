"""The system resolver of a host (a network namespace whose resolv.conf points at meshplane's
DNS server, listening on port 53 of the host network's gateway address) resolves virtual
service names to their VIPs and Cloud Map DNS names to instance addresses: ``getent hosts``."""

from __future__ import annotations

import ipaddress
import time
import uuid
from pathlib import Path

from tests.support.hosts import host_network
from tests.support.server import MeshplaneServer

VIP_RANGE = ipaddress.ip_network("240.240.0.0/16")


def test_getent_in_a_network_namespace_resolves_mesh_names(tmp_path: Path) -> None:
    with host_network(["client"]) as network:
        server = MeshplaneServer(
            tmp_path / "data",
            extra_args=["--dns-host", network.gateway, "--dns-port", "53"],
        ).start()
        try:
            appmesh = server.boto3()
            mesh = f"n{uuid.uuid4().hex[:6]}"
            appmesh.create_mesh(meshName=mesh)
            appmesh.create_virtual_node(
                meshName=mesh,
                virtualNodeName="api",
                spec={
                    "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
                    "serviceDiscovery": {"dns": {"hostname": "198.18.0.77"}},
                },
            )
            name = f"api.{mesh}.local"
            appmesh.create_virtual_service(
                meshName=mesh,
                virtualServiceName=name,
                spec={"provider": {"virtualNode": {"virtualNodeName": "api"}}},
            )
            sd = server.cloudmap()
            zone = f"{mesh}.svc"
            op = sd.create_private_dns_namespace(Name=zone, Vpc="vpc-1")["OperationId"]
            ns_id = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
            srv = sd.create_service(
                Name="db", NamespaceId=ns_id, DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 1}]}
            )["Service"]["Id"]
            sd.register_instance(
                ServiceId=srv, InstanceId="db-1", Attributes={"AWS_INSTANCE_IPV4": "198.18.0.88"}
            )

            def getent(host_name: str) -> list[str]:
                result = network.run("client", ["getent", "ahostsv4", host_name])
                return sorted({line.split()[0] for line in result.stdout.splitlines() if line})

            deadline = time.monotonic() + 15
            vips = getent(name)
            while not vips and time.monotonic() < deadline:
                time.sleep(0.1)
                vips = getent(name)
            assert len(vips) == 1 and ipaddress.ip_address(vips[0]) in VIP_RANGE, vips
            assert getent(f"db.{zone}") == ["198.18.0.88"]
            plain = network.run("client", ["getent", "hosts", name])
            assert plain.returncode == 0 and plain.stdout.split()[0] == vips[0]
            missing = network.run("client", ["getent", "hosts", f"nope.{zone}"])
            assert missing.returncode == 2  # NXDOMAIN: not found
        finally:
            server.stop()
