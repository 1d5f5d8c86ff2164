"""The registry's own duties on a real SQLite store: leases (expiry -> UNHEALTHY -> removed),
the bound on kept operations, and virtual IP allocation (stable, distinct, freed)."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshplane.model.kinds import REGISTRY_MESH, Kind, ResourceKey
from meshplane.service import leases, vips
from meshplane.service.access import ANONYMOUS
from meshplane.service.arns import Partition
from meshplane.service.cloudmap import CloudMapService
from meshplane.service.resources import Caller
from meshplane.store import SqlStore, registry

CALLER = Caller("000000000000", ANONYMOUS)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = SqlStore.open(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def _service(sd: CloudMapService) -> str:
    op = sd.call("CreateHttpNamespace", {"Name": "apps"}, CALLER)["OperationId"]
    ns = sd.call("GetOperation", {"OperationId": op}, CALLER)["Operation"]["Targets"]["NAMESPACE"]
    return str(sd.call("CreateService", {"Name": "s", "NamespaceId": ns}, CALLER)["Service"]["Id"])


def test_a_lapsed_lease_marks_the_instance_unhealthy_then_removes_it(store: SqlStore) -> None:
    sd = CloudMapService(store, Partition("us-east-1", "000000000000"))
    srv = _service(sd)
    attributes = {"AWS_INSTANCE_IPV4": "198.18.0.1"}
    sd.call(
        "RegisterInstance",
        {
            "ServiceId": srv,
            "InstanceId": "leased",
            "Attributes": attributes,
            "MeshplaneLeaseSeconds": 2,
        },
        CALLER,
    )
    sd.call(
        "RegisterInstance",
        {"ServiceId": srv, "InstanceId": "plain", "Attributes": attributes},
        CALLER,
    )
    now = time.time()
    assert store.transact(lambda tx: leases.sweep(tx, now)) == (0, 0)  # not lapsed yet
    assert store.transact(lambda tx: leases.sweep(tx, now + 3)) == (1, 0)
    service = registry.service(store, srv)
    assert service is not None
    health = {i.id: i.health for i in registry.instances(store, service)}
    assert health == {"leased": "UNHEALTHY", "plain": "UNKNOWN"}
    # renewing brings it back
    sd.call(
        "RegisterInstance",
        {
            "ServiceId": srv,
            "InstanceId": "leased",
            "Attributes": attributes,
            "MeshplaneLeaseSeconds": 2,
        },
        CALLER,
    )
    assert {i.id: i.health for i in registry.instances(store, service)}["leased"] == "UNKNOWN"
    # three leases after the end: gone, and counted out of the service
    assert store.transact(lambda tx: leases.sweep(tx, time.time() + 2 + 7)) == (0, 1)
    service = registry.service(store, srv)
    assert service is not None
    assert [i.id for i in registry.instances(store, service)] == ["plain"]
    assert service.spec["InstanceCount"] == 1
    assert any(
        e.operation == "DeregisterInstance" and e.via == "lease"
        for e in store.audit_log(limit=1000)
    )


def test_operations_are_bounded(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leases, "MAX_OPERATIONS", 3)
    sd = CloudMapService(store, Partition("us-east-1", "000000000000"))
    srv = _service(sd)
    for i in range(5):
        sd.call(
            "RegisterInstance",
            {"ServiceId": srv, "InstanceId": f"i{i}", "Attributes": {"k": "v"}},
            CALLER,
        )
    before = store.list_kind(Kind.CLOUD_MAP_OPERATION, REGISTRY_MESH, "")
    assert len(before) == 6  # the namespace's and five registrations
    leases.LeaseSweeper(store).sweep_now()
    after = store.list_kind(Kind.CLOUD_MAP_OPERATION, REGISTRY_MESH, "")
    assert [r.key.name for r in after] == [r.key.name for r in before[-3:]]


def test_vips_are_stable_distinct_and_freed(store: SqlStore) -> None:
    network = vips.parse_range("240.240.0.0/29")  # six usable addresses
    names = [f"s{i}.local" for i in range(6)]

    def add(name: str) -> None:
        store.transact(
            lambda tx: tx.create(
                ResourceKey(Kind.VIRTUAL_SERVICE, "m", name), {}, mesh_owner="0", resource_owner="0"
            )
        )

    for name in names:
        add(name)
    assert store.transact(lambda tx: vips.sync(tx, network)) == 6
    first = registry.vips(store)
    assert len(set(first.values())) == 6
    assert all(ipaddress.ip_address(ip) in network for ip in first.values())
    assert store.transact(lambda tx: vips.sync(tx, network)) == 0  # nothing moves
    assert registry.vips(store) == first
    add("one-too-many.local")
    with pytest.raises(Exception, match="no free address"):
        store.transact(lambda tx: vips.sync(tx, network))
    store.transact(lambda tx: tx.delete(ResourceKey(Kind.VIRTUAL_SERVICE, "m", "s0.local")))
    store.transact(lambda tx: vips.sync(tx, network))  # frees s0's, gives it to the new one
    after = registry.vips(store)
    assert ("m", "s0.local") not in after
    assert after[("m", "one-too-many.local")] == first[("m", "s0.local")]
    assert {k: v for k, v in after.items() if k[1] != "one-too-many.local"} == {
        k: v for k, v in first.items() if k[1] != "s0.local"
    }
    with pytest.raises(ValueError, match="--vip-range"):
        vips.parse_range("240.240.0.0/31")


async def test_only_the_duty_holder_allocates_and_a_new_holder_catches_up(
    store: SqlStore,
) -> None:
    """In a fleet two allocators could give one free address to two services, so only the
    holder of the duty lease allocates; a replica that takes the lease later allocates what
    was created while it did not hold it."""
    holder = False
    allocator = vips.VipAllocator(store, vips.parse_range("240.240.0.0/24"), duty=lambda: holder)
    await allocator.start()
    try:
        for name in ("a.local", "b.local"):
            store.transact(
                lambda tx, name=name: tx.create(
                    ResourceKey(Kind.VIRTUAL_SERVICE, "m", name),
                    {},
                    mesh_owner="0",
                    resource_owner="0",
                )
            )
        for _ in range(30):  # three lease polls and more: nothing is allocated
            await asyncio.sleep(0.1)
        assert registry.vips(store) == {}
        holder = True  # this replica takes the lease: the owed allocation runs
        for _ in range(100):
            if len(registry.vips(store)) == 2:
                break
            await asyncio.sleep(0.1)
        assert sorted(registry.vips(store)) == [("m", "a.local"), ("m", "b.local")]
    finally:
        await allocator.stop()


def test_one_name_in_two_meshes_shares_its_vip_until_the_last_goes(store: SqlStore) -> None:
    """The one DNS server answers every mesh: a name must mean the same address in all of
    them (each proxy routes it to its own mesh's service), and that address stays taken
    while any mesh has the name."""
    network = vips.parse_range("240.240.0.0/29")

    def add(mesh: str, name: str) -> None:
        store.transact(
            lambda tx: tx.create(
                ResourceKey(Kind.VIRTUAL_SERVICE, mesh, name),
                {},
                mesh_owner="0",
                resource_owner="0",
            )
        )

    def delete(mesh: str, name: str) -> None:
        store.transact(lambda tx: tx.delete(ResourceKey(Kind.VIRTUAL_SERVICE, mesh, name)))

    add("staging", "color.local")
    add("staging", "db.local")
    store.transact(lambda tx: vips.sync(tx, network))
    add("prod", "color.local")
    add("prod", "Color.local")  # names are exact: another service, another address
    assert store.transact(lambda tx: vips.sync(tx, network)) == 2
    given = registry.vips(store)
    assert given[("prod", "color.local")] == given[("staging", "color.local")]
    assert len({given[("staging", k)] for k in ("color.local", "db.local")}) == 2
    assert given[("prod", "Color.local")] not in {
        given[("staging", "color.local")],
        given[("staging", "db.local")],
    }
    delete("staging", "color.local")
    store.transact(lambda tx: vips.sync(tx, network))
    add("staging", "new.local")
    store.transact(lambda tx: vips.sync(tx, network))
    after = registry.vips(store)
    # prod still has color.local's address: nobody else got it
    assert after[("prod", "color.local")] == given[("prod", "color.local")]
    assert ("staging", "color.local") not in after
    assert len(set(after.values())) == len(after) == 4
    delete("prod", "color.local")
    store.transact(lambda tx: vips.sync(tx, network))
    assert given[("prod", "color.local")] not in registry.vips(store).values()


def test_addresses_given_apart_before_names_were_shared_move_together(store: SqlStore) -> None:
    """An older release gave ``color.local`` of two meshes two addresses; the DNS server
    answers the first mesh's, so the other mesh's clients reached nothing.  The next sync
    moves the other to the first's address, audited, and frees the old one."""
    network = vips.parse_range("240.240.0.0/29")

    def legacy(tx: Any) -> None:
        for mesh, ip in (("a", "240.240.0.3"), ("b", "240.240.0.5")):
            key = ResourceKey(Kind.VIRTUAL_SERVICE, mesh, "color.local")
            tx.create(key, {}, mesh_owner="0", resource_owner="0")
            tx.create(
                registry.vip_key(mesh, "color.local"), {"ip": ip}, mesh_owner="", resource_owner=""
            )

    store.transact(legacy)
    assert store.transact(lambda tx: vips.sync(tx, network)) == 1
    assert registry.vips(store) == {
        ("a", "color.local"): "240.240.0.3",
        ("b", "color.local"): "240.240.0.3",
    }
    moved = [e for e in store.audit_log(meshes=["b"]) if e.operation == "MoveVirtualIp"]
    assert [e.resource for e in moved] == ["vip/b/color.local"]
    assert store.transact(lambda tx: vips.sync(tx, network)) == 0
