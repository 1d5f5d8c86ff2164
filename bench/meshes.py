"""Synthetic App Mesh meshes for the benchmarks, as JSON specs by resource key.

:func:`service_mesh` builds a mesh shaped like a microservice estate: ``nodes`` virtual nodes
``n<i>`` (one HTTP listener on 8080, DNS discovery), one virtual service ``s<i>.<mesh>`` per
node, every ``router_every``-th of them provided by a virtual router ``r<i>`` whose route splits
traffic 50/50 between ``n<i>`` and ``n<i+1>`` (the others by the node itself), and every node
declaring ``backends`` virtual services (those of the next nodes, wrapping).  So a proxy's
configuration is a few virtual hosts and clusters whatever the size of the mesh.

:func:`weights_mesh` is the convergence benchmark's mesh: providers ``blue`` and ``green``
behind router ``color`` (route ``split``) and service ``color.<mesh>``, and ``clients``
consumer nodes ``c<i>`` that each declare ``color.<mesh>`` as their only backend.

Used by ``bench.translate`` and ``bench.convergence``; not part of the test suite.
"""

from __future__ import annotations

from typing import Any

from meshplane.model import Kind, ResourceKey
from meshplane.store.records import Record

Json = dict[str, Any]
Specs = dict[ResourceKey, Json]


def http_listener(port: int = 8080) -> Json:
    return {"portMapping": {"port": port, "protocol": "http"}}


def provider_node(hostname: str, backends: list[str] | None = None) -> Json:
    spec: Json = {
        "listeners": [http_listener()],
        "serviceDiscovery": {"dns": {"hostname": hostname}},
    }
    if backends:
        spec["backends"] = [{"virtualService": {"virtualServiceName": b}} for b in backends]
    return spec


def consumer_node(backends: list[str]) -> Json:
    return {"backends": [{"virtualService": {"virtualServiceName": b}} for b in backends]}


def weighted_route(targets: dict[str, int]) -> Json:
    return {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [{"virtualNode": n, "weight": w} for n, w in targets.items()]
            },
        }
    }


def service_by_node(node: str) -> Json:
    return {"provider": {"virtualNode": {"virtualNodeName": node}}}


def service_by_router(router: str) -> Json:
    return {"provider": {"virtualRouter": {"virtualRouterName": router}}}


def service_mesh(mesh: str, nodes: int, *, backends: int = 3, router_every: int = 4) -> Specs:
    """The microservice-estate mesh described in the module docstring."""
    specs: Specs = {ResourceKey(Kind.MESH, mesh, mesh): {}}
    for i in range(nodes):
        wanted = [f"s{(i + k) % nodes}.{mesh}" for k in range(1, backends + 1)]
        specs[ResourceKey(Kind.VIRTUAL_NODE, mesh, f"n{i}")] = provider_node(
            f"n{i}.{mesh}.local", wanted
        )
        if router_every and i % router_every == 0:
            specs[ResourceKey(Kind.VIRTUAL_ROUTER, mesh, f"r{i}")] = {
                "listeners": [http_listener()]
            }
            specs[ResourceKey(Kind.ROUTE, mesh, "split", f"r{i}")] = weighted_route(
                {f"n{i}": 50, f"n{(i + 1) % nodes}": 50}
            )
            specs[ResourceKey(Kind.VIRTUAL_SERVICE, mesh, f"s{i}.{mesh}")] = service_by_router(
                f"r{i}"
            )
        else:
            specs[ResourceKey(Kind.VIRTUAL_SERVICE, mesh, f"s{i}.{mesh}")] = service_by_node(
                f"n{i}"
            )
    return specs


def records(specs: Specs, revision: int = 1) -> list[Record]:
    """Store records for ``specs`` (as the store would hand them out)."""
    return [record(key, spec, revision) for key, spec in specs.items()]


def record(key: ResourceKey, spec: Json, revision: int = 1) -> Record:
    return Record(
        key=key,
        spec=spec,
        uid=f"uid-{key.kind.value}-{key.parent}-{key.name}",
        version=revision,
        created_at=0.0,
        updated_at=0.0,
        mesh_owner="000000000000",
        resource_owner="000000000000",
        revision=revision,
    )


# --- the convergence benchmark's mesh (created through the API) -------------------------

COLOR_PORT = 8080


def weights_route(blue: int, green: int) -> Json:
    return weighted_route({"blue": blue, "green": green})


def weight_steps(count: int) -> list[tuple[int, int]]:
    """``count`` weight pairs, each different from the one before, never 0 (so every write
    changes only the consumers' route configuration, not their clusters)."""
    cycle = [(90, 10), (70, 30), (50, 50), (30, 70), (10, 90), (30, 70), (50, 50), (70, 30)]
    return [cycle[i % len(cycle)] for i in range(count)]


def weights_mesh(mesh: str, clients: int) -> Specs:
    """The convergence benchmark's mesh as specs (see the module docstring)."""
    service = f"color.{mesh}"
    specs: Specs = {ResourceKey(Kind.MESH, mesh, mesh): {}}
    for i, color in enumerate(("blue", "green")):
        specs[ResourceKey(Kind.VIRTUAL_NODE, mesh, color)] = provider_node(f"127.0.1.{i + 2}")
    specs[ResourceKey(Kind.VIRTUAL_ROUTER, mesh, "color")] = {
        "listeners": [http_listener(COLOR_PORT)]
    }
    specs[ResourceKey(Kind.ROUTE, mesh, "split", "color")] = weights_route(90, 10)
    specs[ResourceKey(Kind.VIRTUAL_SERVICE, mesh, service)] = service_by_router("color")
    for i in range(clients):
        specs[ResourceKey(Kind.VIRTUAL_NODE, mesh, f"c{i}")] = consumer_node([service])
    return specs
