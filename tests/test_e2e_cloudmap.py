"""End to end with real Envoys: virtual nodes discovered through meshplane's Cloud Map registry.

A client calls a virtual service provided by the node ``blue`` (``awsCloudMap`` with the
attribute filter ``version=blue``); instances are registered with boto3's servicediscovery
client and reach the client's Envoy over EDS alone (no listener, route or cluster is resent).
A router splitting between a DNS node and the Cloud Map node works too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port
from tests.support.topology import counted

pytestmark = pytest.mark.e2e

MESH = "cm"
NAMESPACE = "cm.local"


class World:
    def __init__(self, mesh: Mesh, client: Sidecar, srv: str, port: int, blue: dict[str, str]):
        self.mesh = mesh
        self.client = client
        self.srv = srv
        self.port = port
        self.addresses = blue
        self.sd = mesh.server.cloudmap()

    def register(self, name: str, version: str = "blue") -> None:
        self.sd.register_instance(
            ServiceId=self.srv,
            InstanceId=name,
            Attributes={"AWS_INSTANCE_IPV4": self.addresses[name], "version": version},
        )

    def control_stats(self) -> tuple[int, int]:
        stats = self.client.stats()
        return (
            stats.get("listener_manager.lds.update_success", 0),
            stats.get("cluster_manager.cds.update_success", 0),
        )

    def eds_updates(self) -> int:
        cluster = f"cds_egress_{MESH}_blue_http_{self.port}"
        return self.client.stats().get(f"cluster.{cluster}.update_success", 0)

    def seen(self, n: int = 30) -> set[str]:
        return set(counted(self.client, "colors.cm", n))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    mesh = Mesh(tmp_path_factory.mktemp("cloudmap"))
    try:
        api = mesh.appmesh
        sd = mesh.server.cloudmap()
        port = free_port()
        listener = [{"portMapping": {"port": port, "protocol": "http"}}]
        api.create_mesh(meshName=MESH)
        op = sd.create_http_namespace(Name=NAMESPACE)["OperationId"]
        ns_id = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
        srv = sd.create_service(
            Name="colors", NamespaceId=ns_id, HealthCheckCustomConfig={"FailureThreshold": 1}
        )["Service"]["Id"]
        for node, version in (("blue", "blue"), ("red", "red")):
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName=node,
                spec={
                    "listeners": listener,
                    "serviceDiscovery": {
                        "awsCloudMap": {
                            "namespaceName": NAMESPACE,
                            "serviceName": "colors",
                            "attributes": [{"key": "version", "value": version}],
                        }
                    },
                },
            )
        dns_address = next_address()
        api.create_virtual_node(
            meshName=MESH,
            virtualNodeName="plain",
            spec={"listeners": listener, "serviceDiscovery": {"dns": {"hostname": dns_address}}},
        )
        addresses = {}
        for name, node, address in (
            ("blue-1", "blue", next_address()),
            ("blue-2", "blue", next_address()),
            ("red-1", "red", next_address()),
            ("plain", "plain", dns_address),
        ):
            app = mesh.app(name)
            mesh.sidecar(f"mesh/{MESH}/virtualNode/{node}", address=address, app_port=app.port)
            addresses[name] = address
        api.create_virtual_service(
            meshName=MESH,
            virtualServiceName="colors.cm",
            spec={"provider": {"virtualNode": {"virtualNodeName": "blue"}}},
        )
        api.create_virtual_router(
            meshName=MESH, virtualRouterName="split", spec={"listeners": listener}
        )
        api.create_route(
            meshName=MESH,
            virtualRouterName="split",
            routeName="half",
            spec={
                "httpRoute": {
                    "match": {"prefix": "/"},
                    "action": {
                        "weightedTargets": [
                            {"virtualNode": "plain", "weight": 50},
                            {"virtualNode": "blue", "weight": 50},
                        ]
                    },
                }
            },
        )
        api.create_virtual_service(
            meshName=MESH,
            virtualServiceName="split.cm",
            spec={"provider": {"virtualRouter": {"virtualRouterName": "split"}}},
        )
        api.create_virtual_node(
            meshName=MESH,
            virtualNodeName="client",
            spec={
                "backends": [
                    {"virtualService": {"virtualServiceName": "colors.cm"}},
                    {"virtualService": {"virtualServiceName": "split.cm"}},
                ]
            },
        )
        client = mesh.sidecar(f"mesh/{MESH}/virtualNode/client")
        yield World(mesh, client, srv, port, addresses)
    finally:
        mesh.close()


def test_registry_drives_endpoints(world: World) -> None:
    mesh = world.mesh
    # no instance yet: the cluster has no endpoint (503), then blue-1 and red-1 register
    assert world.seen(3) == {"HTTP 503"}
    world.register("blue-1")
    world.register("red-1", version="red")
    mesh.wait(lambda: world.seen(5) == {"blue-1"}, "blue-1 serving colors.cm")
    # the attribute filter: red-1 never answers
    assert world.seen(30) == {"blue-1"}

    # a second blue instance spreads the load, through EDS alone
    lds_cds = world.control_stats()
    eds = world.eds_updates()
    world.register("blue-2")
    mesh.wait(lambda: world.seen(20) == {"blue-1", "blue-2"}, "load spread over blue-1 and blue-2")
    assert world.control_stats() == lds_cds  # no listener or cluster was resent
    assert world.eds_updates() > eds

    # a custom health status of UNHEALTHY takes an instance out; HEALTHY brings it back
    world.sd.update_instance_custom_health_status(
        ServiceId=world.srv, InstanceId="blue-1", Status="UNHEALTHY"
    )
    mesh.wait(lambda: world.seen(20) == {"blue-2"}, "unhealthy blue-1 taken out")
    world.sd.update_instance_custom_health_status(
        ServiceId=world.srv, InstanceId="blue-1", Status="HEALTHY"
    )
    mesh.wait(lambda: world.seen(20) == {"blue-1", "blue-2"}, "healthy blue-1 back")

    # deregistering takes it out
    world.sd.deregister_instance(ServiceId=world.srv, InstanceId="blue-2")
    mesh.wait(lambda: world.seen(20) == {"blue-1"}, "deregistered blue-2 taken out")
    assert world.control_stats() == lds_cds


def test_router_splits_between_dns_and_cloud_map_nodes(world: World) -> None:
    world.register("blue-1")
    seen = counted(world.client, "split.cm", 60)
    assert set(seen) == {"plain", "blue-1"}, seen
