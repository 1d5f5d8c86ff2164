"""Leases of the instances that sidecars register: an instance whose sidecar stops renewing
(SIGKILL, a lost host) stops receiving traffic, then leaves the registry.

``meshplane envoy`` registers its workload with a lease (the ``MeshplaneLeaseSeconds`` member of
RegisterInstance, a meshplane extension) and renews it by registering again well before it
ends.  :func:`sweep` marks every instance whose lease has ended UNHEALTHY (``Lease.Expired``:
the registry reports it UNHEALTHY whatever the service's health check, so EDS and DNS drop it at
once) and deregisters those whose lease ended more than :data:`GRACE_LEASES` leases ago.  It
also keeps the finished operations to the newest :data:`MAX_OPERATIONS`.
Instances registered without a lease (ECS-style agents, scripts) stay until deregistered, as in
Cloud Map.  :class:`LeaseSweeper` runs it every ``interval`` seconds; built and started by
``meshplane.server``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from meshplane.model.kinds import REGISTRY_MESH, Kind
from meshplane.service.periodic import Periodic
from meshplane.store import registry
from meshplane.store.protocols import Store, Transaction

log = logging.getLogger(__name__)

GRACE_LEASES = 3
PRINCIPAL = "meshplane@lease-sweeper"
MAX_OPERATIONS = 10_000
"""Finished Cloud Map operations kept for GetOperation/ListOperations; older ones are dropped
(their ids are time-ordered), so a registration flood does not grow the store for ever."""


def prune_operations(tx: Transaction) -> int:
    """Delete the oldest operations beyond :data:`MAX_OPERATIONS`; return how many."""
    operations = tx.list_kind(Kind.CLOUD_MAP_OPERATION, REGISTRY_MESH, "")
    excess = operations[: max(0, len(operations) - MAX_OPERATIONS)]
    for record in excess:
        tx.delete(record.key)
    return len(excess)


def sweep(tx: Transaction, now: float) -> tuple[int, int]:
    """Expire and remove lapsed leases; return (expired, removed)."""
    expired = removed = 0
    for record in tx.list_kind(Kind.CLOUD_MAP_INSTANCE, REGISTRY_MESH):
        lease = record.spec.get("Lease")
        if not lease or float(lease.get("ExpiresAt", now + 1)) > now:
            continue
        seconds = float(lease.get("Seconds", 30))
        resource = f"cloudmap/instance/{record.key.name}"
        if now - float(lease["ExpiresAt"]) > GRACE_LEASES * seconds:
            tx.delete(record.key)
            service = registry.service(tx, record.key.parent)
            if service is not None:
                count = max(0, int(service.spec.get("InstanceCount", 1)) - 1)
                tx.update(service.key, {**service.spec, "InstanceCount": count})
            tx.audit(
                PRINCIPAL, "DeregisterInstance", mesh=REGISTRY_MESH, resource=resource, via="lease"
            )
            removed += 1
        elif not lease.get("Expired"):
            updated = tx.update(record.key, {**record.spec, "Lease": {**lease, "Expired": True}})
            tx.audit(
                PRINCIPAL,
                "ExpireInstanceLease",
                mesh=REGISTRY_MESH,
                resource=resource,
                version=updated.version,
                via="lease",
            )
            expired += 1
    return expired, removed


class LeaseSweeper:
    """Sweeps the registry's leases every ``interval`` seconds."""

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 0.5,
        clock: Callable[[], float] = time.time,
        duty: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.duty = duty
        """Whether this replica runs the fleet's singleton duties now (its duty lease)."""
        self.interval = interval
        self.clock = clock
        self._periodic = Periodic(self._tick, interval=interval, name="lease sweep")

    async def start(self) -> None:
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    def sweep_now(self) -> tuple[int, int]:
        if not self.duty():  # another replica of the fleet sweeps
            return 0, 0
        operations = len(self.store.list_kind(Kind.CLOUD_MAP_OPERATION, REGISTRY_MESH, ""))
        if operations > MAX_OPERATIONS:
            self.store.transact(prune_operations)
        leased = any(
            r.spec.get("Lease")
            for r in self.store.list_kind(Kind.CLOUD_MAP_INSTANCE, REGISTRY_MESH)
        )
        if not leased:  # nothing to do: no write, no revision
            return 0, 0
        return self.store.transact(lambda tx: sweep(tx, self.clock()))

    def _tick(self) -> None:
        expired, removed = self.sweep_now()
        if expired or removed:
            log.info("instance leases: %d expired, %d removed", expired, removed)
