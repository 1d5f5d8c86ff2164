"""A resource the control loop cannot translate is isolated, never a proxy's whole config.

Finding 6 of the hardening issue: a virtual node whose DNS hostname held a lone surrogate
was stored, and from then on every proxy routing to it got no configuration at all.  Now the
model refuses such text (the API answers 400), a spec stored before that is treated as
invalid, and whatever else makes a translation fail leaves out only the resource it comes
from: the consumers get everything else, and the problem in proxy-status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshplane.control import ControlLoop
from meshplane.errors import BadRequestError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.service.arns import Partition
from meshplane.service.resources import ResourceService
from meshplane.store import SqlStore, open_store
from meshplane.translate import clusters
from meshplane.xds import SnapshotCache, types
from tests.support.control import CALLER, node_spec
from tests.support.xds import connection

CLIENT = "mesh/m/virtualNode/client"


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = open_store(data_dir=tmp_path)
    yield s
    s.close()


def key(kind: Kind, name: str) -> ResourceKey:
    return ResourceKey(kind, "m", name)


def mesh_with_two_backends(store: SqlStore, bad_spec: dict[str, Any] | None = None) -> None:
    """Nodes a and b behind services a.svc and b.svc, and a client of both; node a is stored
    as ``bad_spec`` as-is (as an older server could have stored it) when given."""
    service = ResourceService(store, Partition("us-east-1", "000000000000"))
    service.create(ResourceKey(Kind.MESH, "m", "m"), None, caller=CALLER)
    if bad_spec is None:
        service.create(key(Kind.VIRTUAL_NODE, "a"), node_spec("10.0.0.1"), caller=CALLER)
    else:
        store.transact(
            lambda tx: tx.create(
                key(Kind.VIRTUAL_NODE, "a"),
                bad_spec,
                mesh_owner="000000000000",
                resource_owner="000000000000",
            )
        )
    service.create(key(Kind.VIRTUAL_NODE, "b"), node_spec("10.0.0.2"), caller=CALLER)
    for name in ("a", "b"):
        service.create(
            key(Kind.VIRTUAL_SERVICE, f"{name}.svc"),
            {"provider": {"virtualNode": {"virtualNodeName": name}}},
            caller=CALLER,
        )
    service.create(
        key(Kind.VIRTUAL_NODE, "client"), node_spec("10.0.0.3", ("a.svc", "b.svc")), caller=CALLER
    )


def test_the_model_refuses_a_hostname_with_a_lone_surrogate(store: SqlStore) -> None:
    mesh_with_two_backends(store)
    service = ResourceService(store, Partition("us-east-1", "000000000000"))
    with pytest.raises(BadRequestError, match=r"hostname: must be Unicode text"):
        service.update(key(Kind.VIRTUAL_NODE, "a"), node_spec("a\ud800.local"), caller=CALLER)


async def test_a_stored_spec_with_a_lone_surrogate_leaves_only_its_node_out(
    store: SqlStore,
) -> None:
    mesh_with_two_backends(store, bad_spec=node_spec("a\ud800.local"))
    cache = SnapshotCache()
    loop = ControlLoop(store, cache)
    await loop.proxy_connected(connection(1, CLIENT))
    snapshot = cache.get(CLIENT)
    assert snapshot is not None
    names = set(snapshot.get(types.CLUSTER))
    assert "cds_egress_m_b_http_8080" in names
    assert not any("_a_" in name for name in names)
    assert snapshot.get(types.LISTENER)
    problems = " ".join(loop.problems(1))
    assert "VirtualNode 'a' is ignored" in problems
    assert "Unicode text" in problems


async def test_a_resource_whose_translation_fails_is_left_out_for_its_consumers(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    mesh_with_two_backends(store)
    real = clusters.egress_cluster

    def failing(ctx: Any, *, provider: Any) -> Any:
        if provider.node == "a":
            raise ValueError("cannot encode this provider")
        return real(ctx, provider=provider)

    monkeypatch.setattr(clusters, "egress_cluster", failing)
    cache = SnapshotCache()
    loop = ControlLoop(store, cache)
    await loop.proxy_connected(connection(1, CLIENT))
    snapshot = cache.get(CLIENT)
    assert snapshot is not None, "the client got no configuration at all"
    names = set(snapshot.get(types.CLUSTER))
    assert "cds_egress_m_b_http_8080" in names
    assert not any("_a_" in name for name in names)
    problems = loop.problems(1)
    assert any(
        "VirtualNode 'a' is left out: it cannot be translated" in p
        and "cannot encode this provider" in p
        for p in problems
    ), problems

    # the fix reaches the client: node a is an input of its translation
    monkeypatch.setattr(clusters, "egress_cluster", real)
    service = ResourceService(store, Partition("us-east-1", "000000000000"))
    service.update(key(Kind.VIRTUAL_NODE, "a"), node_spec("10.0.0.9"), caller=CALLER)
    loop.apply(store.changes_since(0))
    fixed = cache.get(CLIENT)
    assert fixed is not None
    assert "cds_egress_m_a_http_8080" in set(fixed.get(types.CLUSTER))
    assert not any("left out" in p for p in loop.problems(1))
