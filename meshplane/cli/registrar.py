"""A sidecar's own Cloud Map registration: ``meshplane envoy`` keeps its workload registered
while Envoy runs.

When the sidecar's virtual node uses ``awsCloudMap`` service discovery, :class:`Registrar`
registers the workload as an instance of that Cloud Map service (instance id
``<address>-<port>``; the attributes App Mesh's controller set — ``AWS_INSTANCE_IPV4``,
``AWS_INSTANCE_PORT``, ``appmesh.k8s.aws/mesh``, ``appmesh.k8s.aws/virtualNode`` — plus the
node's own ``attributes`` and ``--attribute``s) with a lease (``MeshplaneLeaseSeconds``), renews
it every third of the lease, sets the instance's custom health (when the service has a custom
health check) from whether the application's port answers, and deregisters it on a clean stop.
A sidecar that dies without deregistering loses its traffic when the lease ends (the server's
lease sweeper).  It runs in its own thread beside Envoy; it talks to the API with the CLI's API
token (an editor token of the mesh is enough).  Used by :mod:`meshplane.cli.proxy_commands`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from meshplane.client import Client, connect
from meshplane.errors import MeshplaneError
from meshplane.model.kinds import Kind, ResourceKey

log = logging.getLogger("meshplane.registrar")


@dataclass(frozen=True, slots=True)
class Registration:
    server: str
    token: str | None
    ca_file: str | None
    mesh: str
    node: str
    address: str
    app_port: int | None
    lease_seconds: int = 30
    attributes: dict[str, str] = field(default_factory=dict)


class Registrar:
    """Keeps one workload registered until :meth:`stop`."""

    def __init__(self, registration: Registration) -> None:
        self.registration = registration
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.instance_id: str | None = None
        self.service_id: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._run()), name="meshplane-registrar", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Deregister (when registered) and end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    async def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when asked to stop."""
        return await asyncio.to_thread(self._stop.wait, seconds)

    async def _run(self) -> None:
        reg = self.registration
        async with connect(reg.server, token=reg.token, ca_file=reg.ca_file) as client:
            target = None
            said = ""
            while target is None:
                try:
                    target = await self._target(client)
                except MeshplaneError as error:
                    if error.message != said:  # say each reason once, not every retry
                        log.warning("Cloud Map registration waits: %s", error.message)
                        said = error.message
                if target is None and await self._wait(max(1.0, reg.lease_seconds / 3)):
                    return
            if not target:
                return  # not a Cloud Map node: nothing to register
            service_id, custom_health, attributes, port = target
            self.service_id = service_id
            self.instance_id = f"{reg.address}-{port}"
            app_port = reg.app_port or port
            while True:
                try:
                    await client.cloud_map(
                        "RegisterInstance",
                        {
                            "ServiceId": service_id,
                            "InstanceId": self.instance_id,
                            "Attributes": attributes,
                            "MeshplaneLeaseSeconds": reg.lease_seconds,
                        },
                    )
                    if custom_health:
                        healthy = await asyncio.to_thread(_answers, app_port)
                        await client.cloud_map(
                            "UpdateInstanceCustomHealthStatus",
                            {
                                "ServiceId": service_id,
                                "InstanceId": self.instance_id,
                                "Status": "HEALTHY" if healthy else "UNHEALTHY",
                            },
                        )
                except MeshplaneError as error:
                    log.warning("Cloud Map registration of %s: %s", self.instance_id, error.message)
                if await self._wait(max(0.2, reg.lease_seconds / 3)):
                    break
            try:
                await client.cloud_map(
                    "DeregisterInstance", {"ServiceId": service_id, "InstanceId": self.instance_id}
                )
                log.info("deregistered %s from Cloud Map", self.instance_id)
            except MeshplaneError as error:
                log.warning("Cloud Map deregistration of %s: %s", self.instance_id, error.message)

    async def _target(
        self, client: Client
    ) -> tuple[str, bool, dict[str, str], int] | tuple[()] | None:
        """(service id, custom health?, attributes, port); () for a node without Cloud Map;
        None while the namespace or service does not exist yet."""
        reg = self.registration
        node = await client.describe(ResourceKey(Kind.VIRTUAL_NODE, reg.mesh, reg.node))
        spec: dict[str, Any] = node.get("spec", {})
        cloud_map = (spec.get("serviceDiscovery") or {}).get("awsCloudMap")
        listeners = spec.get("listeners") or []
        if not cloud_map or not listeners:
            return ()
        port = int(listeners[0]["portMapping"]["port"])
        namespaces = await client.cloud_map(
            "ListNamespaces",
            {"Filters": [{"Name": "HTTP_NAME", "Values": [cloud_map["namespaceName"]]}]},
        )
        if not namespaces.get("Namespaces"):
            raise MeshplaneError(f"no Cloud Map namespace {cloud_map['namespaceName']!r} yet")
        ns_id = namespaces["Namespaces"][0]["Id"]
        services = await client.cloud_map(
            "ListServices", {"Filters": [{"Name": "NAMESPACE_ID", "Values": [ns_id]}]}
        )
        found = [s for s in services.get("Services", []) if s["Name"] == cloud_map["serviceName"]]
        if not found:
            raise MeshplaneError(f"no Cloud Map service {cloud_map['serviceName']!r} yet")
        service = found[0]
        attributes = {a["key"]: a["value"] for a in cloud_map.get("attributes") or []}
        attributes.update(reg.attributes)
        attributes.update(
            {
                "AWS_INSTANCE_IPV4": reg.address,
                "AWS_INSTANCE_PORT": str(port),
                "appmesh.k8s.aws/mesh": reg.mesh,
                "appmesh.k8s.aws/virtualNode": reg.node,
            }
        )
        return service["Id"], bool(service.get("HealthCheckCustomConfig")), attributes, port


def _answers(port: int) -> bool:
    """Whether the application accepts a connection on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
