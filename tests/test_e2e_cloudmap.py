"""End to end with real Envoys: virtual nodes discovered through meshplane's Cloud Map registry.

A client calls a virtual service provided by the node ``blue`` (``awsCloudMap`` with the
attribute filter ``version=blue``); instances are registered with boto3's servicediscovery
client and reach the client's Envoy over EDS alone (no listener, route or cluster is resent).
A router splitting between a DNS node and the Cloud Map node works too.  ``meshplane envoy``
keeps its own workload registered under a lease: SIGKILLed, its instance leaves the rotation
when the lease ends; stopped cleanly, it deregisters at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port
from tests.support.topology import call, cluster_hosts, counted, outcome

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

    # the instances in the client's endpoints (proxy-config) and the registry's metrics
    env = {**os.environ, "MESHPLANE_SERVER": mesh.server.url}
    shown = subprocess.run(
        [sys.executable, "-m", "meshplane", "proxy-config", f"mesh/{MESH}/virtualNode/client",
         "--type", "endpoints", "-o", "json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert world.addresses["blue-2"] in shown.stdout and '"hostname": "blue-2"' in shown.stdout
    metrics = httpx.get(f"{mesh.server.url}/metrics", timeout=10).text
    assert 'meshplane_registry_instances{health="HEALTHY"} 3.0' in metrics
    assert "meshplane_registry_endpoint_updates_total" in metrics

    # deregistering takes it out
    world.sd.deregister_instance(ServiceId=world.srv, InstanceId="blue-2")
    mesh.wait(lambda: world.seen(20) == {"blue-1"}, "deregistered blue-2 taken out")
    assert world.control_stats() == lds_cds


def test_router_splits_between_dns_and_cloud_map_nodes(world: World) -> None:
    world.register("blue-1")  # already there after the test above; new when run alone
    world.mesh.wait(lambda: world.seen(5) == {"blue-1"}, "blue-1 serving colors.cm")
    seen = counted(world.client, "split.cm", 60)
    assert set(seen) == {"plain", "blue-1"}, seen


def _meshplane_envoy(world: World, name: str, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """``meshplane envoy`` for the node blue at a fresh address, its app named ``name``."""
    mesh = world.mesh
    app = mesh.app(name)
    address = next_address()
    resource = f"mesh/{MESH}/virtualNode/blue"
    token = mesh.proxy_token(resource)
    assert token
    with (mesh.tmp / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "meshplane", "envoy",
                "--resource", resource,
                "--xds", f"127.0.0.1:{mesh.server.xds_port}",
                "--address", address,
                "--app-port", str(app.port),
                "--admin-port", str(free_port()),
                "--egress-port", str(free_port()),
                "--token", token,
                "--no-telemetry",
                *args,
            ],
            env={**os.environ, "MESHPLANE_SERVER": mesh.server.url},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, address


def test_sidecars_register_themselves_under_a_lease(world: World) -> None:
    mesh = world.mesh
    world.register("blue-1")
    process, address = _meshplane_envoy(world, "blue-3", "--lease", "2", "--attribute", "zone=z1")
    try:
        instance_id = f"{address}-{world.port}"
        mesh.wait(lambda: "blue-3" in world.seen(20), "the self-registered blue-3 serving", 30)
        attributes = world.sd.get_instance(ServiceId=world.srv, InstanceId=instance_id)["Instance"][
            "Attributes"
        ]
        assert attributes == {
            "AWS_INSTANCE_IPV4": address,
            "AWS_INSTANCE_PORT": str(world.port),
            "appmesh.k8s.aws/mesh": MESH,
            "appmesh.k8s.aws/virtualNode": "blue",
            "version": "blue",
            "zone": "z1",
        }
        # SIGKILL: no goodbye; the lease (2 s) runs out and the instance leaves the
        # consumer's endpoints (EDS), while requests keep flowing
        cluster = f"cds_egress_{MESH}_blue_http_{world.port}"
        process.kill()
        process.wait()
        killed = time.monotonic()
        failures = requests = 0
        gone_after = None
        with httpx.Client(timeout=5) as http:
            while time.monotonic() - killed < 10 and gone_after is None:
                requests += 1
                if outcome(call(http, world.client, "colors.cm")) not in ("blue-1", "blue-3"):
                    failures += 1
                hosts = cluster_hosts(world.client, cluster)
                addresses = {h["address"]["socket_address"]["address"] for h in hosts}
                if address not in addresses:
                    gone_after = time.monotonic() - killed
        print(
            f"SIGKILLed sidecar (lease 2 s): out of the consumer's endpoints {gone_after} s after "
            f"the kill; {failures} failed of {requests} requests meanwhile"
        )
        assert gone_after is not None and gone_after < 2 + 2.5  # the lease + sweep + EDS
        health = world.sd.get_instances_health_status(ServiceId=world.srv, Instances=[instance_id])
        assert health["Status"][instance_id] == "UNHEALTHY"
        assert world.seen(20) == {"blue-1"}
        # three leases later it is gone from the registry
        mesh.wait(
            lambda: (
                instance_id
                not in {i["Id"] for i in world.sd.list_instances(ServiceId=world.srv)["Instances"]}
            ),
            "the lapsed instance removed",
            20,
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # a clean stop deregisters at once
    process, address = _meshplane_envoy(world, "blue-4", "--lease", "30")
    instance_id = f"{address}-{world.port}"
    try:
        mesh.wait(lambda: "blue-4" in world.seen(20), "the self-registered blue-4 serving", 30)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    ids = {i["Id"] for i in world.sd.list_instances(ServiceId=world.srv)["Instances"]}
    assert instance_id not in ids
