"""Stable virtual IPs: one address from the VIP range (default ``240.240.0.0/16``, as Istio's
auto-allocation) for every virtual service, kept in the store.

A virtual service's VIP is allocated once, in a store transaction of its own right after the
service appears, and kept for as long as the service exists, across restarts (it is a record
of kind ``VIRTUAL_IP``, :mod:`meshplane.store.registry`); it is freed when the service is
deleted.  Virtual services of the same name in different meshes share one address (each
proxy only knows its own mesh's service behind it, so the one DNS server answers every mesh
alike: staging and production meshes with the same names both work); the address is freed
when the last of them goes.  The first choice is a hash of the name inside the range, so a
name tends to get the same address in another control plane too; a taken address moves to the
next free one.  Services given different addresses for one name before (older releases) move
to the first mesh's address, the one the DNS server answers.
A range that is changed later keeps the VIPs already given and allocates new ones from the
new range.  :class:`VipAllocator` follows the change feed; built and started by
``meshplane.server``; read by the DNS server and the control loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
from collections.abc import Callable

from meshplane.errors import LimitExceededError
from meshplane.model.kinds import Kind
from meshplane.store import registry
from meshplane.store.protocols import Store, Transaction

log = logging.getLogger(__name__)

DEFAULT_VIP_RANGE = "240.240.0.0/16"
PRINCIPAL = "meshplane@vip-allocator"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_range(text: str) -> Network:
    """The VIP range of ``--vip-range``; ValueError names what is wrong."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as error:
        raise ValueError(f"--vip-range: {text!r} is not a network in CIDR form ({error})") from None
    if network.num_addresses < 4:
        raise ValueError(f"--vip-range: {text!r} is too small (at least a /30)")
    return network


def allocate(name: str, taken: set[str], network: Network) -> str:
    """A new VIP for the virtual service ``name``: its hashed slot in ``network``, or the next
    free one."""
    size = network.num_addresses - 2  # neither the network nor the broadcast address
    digest = hashlib.sha256(name.encode()).digest()
    start = int.from_bytes(digest[:8], "big") % size
    for step in range(min(size, len(taken) + 1)):
        address = str(network[1 + (start + step) % size])
        if address not in taken:
            return address
    raise LimitExceededError(f"--vip-range {network} has no free address left")


def sync(tx: Transaction, network: Network) -> int:
    """Allocate a VIP for each virtual service without one, free those of services that are
    gone; return how many changed."""
    vips = registry.vips(tx)
    services = {(r.key.mesh, r.key.name) for r in tx.list_kind(Kind.VIRTUAL_SERVICE)}
    changed = 0
    for mesh, name in sorted(set(vips) - services):
        tx.delete(registry.vip_key(mesh, name))
        del vips[(mesh, name)]
        tx.audit(PRINCIPAL, "FreeVirtualIp", mesh=mesh, resource=f"vip/{mesh}/{name}", via="vip")
        changed += 1
    shared: dict[str, str] = {}  # name -> the address its services in other meshes have
    for (_, name), address in sorted(vips.items()):
        shared.setdefault(name, address)
    for (mesh, name), address in sorted(vips.items()):
        if address == shared[name]:
            continue
        # given before names were shared: the DNS server answers the first mesh's address, so
        # this one was reached by no name; it moves to the shared one
        key = registry.vip_key(mesh, name)
        record = tx.get(key)
        assert record is not None
        moved = tx.update(key, {**record.spec, "ip": shared[name]})
        vips[(mesh, name)] = shared[name]
        tx.audit(
            PRINCIPAL,
            "MoveVirtualIp",
            mesh=mesh,
            resource=f"vip/{mesh}/{name}",
            version=moved.version,
            via="vip",
        )
        changed += 1
    taken = set(vips.values())  # an address is free once no service of any mesh has it
    for mesh, name in sorted(services - set(vips)):
        address = shared.get(name) or allocate(name, taken, network)
        shared.setdefault(name, address)
        taken.add(address)
        record = tx.create(
            registry.vip_key(mesh, name), {"ip": address}, mesh_owner="", resource_owner=""
        )
        tx.audit(
            PRINCIPAL,
            "AllocateVirtualIp",
            mesh=mesh,
            resource=f"vip/{mesh}/{name}",
            version=record.version,
            via="vip",
        )
        changed += 1
    return changed


class VipAllocator:
    """Keeps a VIP for every virtual service: at start, then after each change.

    In a fleet only the holder of the duty lease allocates (``duty``): two replicas allocating
    at once could each give one free address to a different service.  A replica that takes
    the lease later catches up at once, and a change made through any replica reaches the
    holder through the change feed.
    """

    def __init__(
        self, store: Store, network: Network, *, duty: Callable[[], bool] = lambda: True
    ) -> None:
        self.store = store
        self.network = network
        self.duty = duty
        self._task: asyncio.Task[None] | None = None

    def sync_now(self) -> int:
        return self.store.transact(lambda tx: sync(tx, self.network))

    async def start(self) -> None:
        owed = True
        if self.duty():
            await asyncio.to_thread(self.sync_now)
            owed = False
        self._task = asyncio.create_task(self._follow(owed), name="meshplane-vip-allocator")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self, owed: bool) -> None:
        """``owed``: a sync is due (at start, or after a change to virtual services) and
        waits for this replica to hold the duty lease."""
        revision = self.store.revision
        while True:
            await self.store.wait_for_revision(revision, timeout=_LEASE_POLL if owed else None)
            try:
                changes = await asyncio.to_thread(self.store.changes_since, revision)
                if changes:
                    revision = changes[-1].revision
                owed = owed or any(c.key.kind is Kind.VIRTUAL_SERVICE for c in changes)
                if owed and self.duty():
                    await asyncio.to_thread(self.sync_now)
                    owed = False
            except Exception:
                log.exception("VIP allocation failed; retrying")
                owed = True
                await asyncio.sleep(1)


_LEASE_POLL = 1.0
"""Seconds between looks at the duty lease while a sync is owed and no change arrives."""
