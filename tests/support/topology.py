"""Building blocks of the end-to-end tests: virtual nodes with their sidecars, and calls through
a consumer's egress listener.

:func:`workload` creates a virtual node through the App Mesh API (boto3) and starts its
sidecar on a fresh loopback address — the node's DNS hostname, as in the README's traffic
model.  :func:`call` sends one HTTP/1.1 request through a sidecar's egress listener with the
virtual service name as Host.  :func:`counted` tallies outcomes (app name or ``HTTP <code>``).

Used by the ``tests/test_e2e_*.py`` modules.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from tests.support.mesh import Mesh, Sidecar, next_address


def workload(
    mesh: Mesh,
    mesh_name: str,
    name: str,
    *,
    listeners: Sequence[Mapping[str, Any]] = (),
    backends: Sequence[str] = (),
    app_port: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Sidecar:
    """A virtual node named ``name`` (DNS hostname = its loopback address) and its sidecar."""
    address = next_address()
    spec: dict[str, Any] = {}
    if listeners:
        spec["listeners"] = [dict(item) for item in listeners]
        spec["serviceDiscovery"] = {"dns": {"hostname": address}}
    if backends:
        spec["backends"] = [{"virtualService": {"virtualServiceName": b}} for b in backends]
    mesh.appmesh.create_virtual_node(meshName=mesh_name, virtualNodeName=name, spec=spec)
    return mesh.sidecar(
        f"mesh/{mesh_name}/virtualNode/{name}", address=address, app_port=app_port, extra=extra
    )


def http_listener(port: int, protocol: str = "http", **fields: Any) -> dict[str, Any]:
    """A virtual node listener: ``portMapping`` plus any other listener fields."""
    return {"portMapping": {"port": port, "protocol": protocol}, **fields}


def call(
    http: httpx.Client,
    client: Sidecar,
    host: str,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """One request through ``client``'s egress listener to the virtual service ``host``."""
    return http.request(
        method,
        f"http://127.0.0.1:{client.egress_port}{path}",
        headers={"host": host, **(headers or {})},
    )


def outcome(response: httpx.Response) -> str:
    """The answering app's name, or ``HTTP <status>`` for anything but a 200."""
    if response.status_code == 200:
        return str(response.json()["app"])
    return f"HTTP {response.status_code}"


def counted(
    client: Sidecar, host: str, n: int, path: str = "/", timeout: float = 5.0
) -> Counter[str]:
    """Outcomes of ``n`` sequential requests to ``host``."""
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=timeout) as http:
        for _ in range(n):
            seen[outcome(call(http, client, host, path))] += 1
    return seen


def cluster_hosts(sidecar: Sidecar, cluster: str) -> list[dict[str, Any]]:
    """The hosts of ``cluster`` from the admin ``/clusters?format=json``."""
    _, body = sidecar.admin_get("/clusters?format=json")
    for status in json.loads(body).get("cluster_statuses", []):
        if status["name"] == cluster:
            return list(status.get("host_statuses", []))
    return []
