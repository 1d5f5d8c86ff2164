"""The health checks of Cloud Map services with ``HealthCheckConfig``, run as Route 53 runs them.

A service created with ``HealthCheckConfig`` (``Type`` HTTP, HTTPS or TCP, ``ResourcePath``,
``FailureThreshold``; Cloud Map allows it in public DNS namespaces) has each of its instances
checked every ``interval`` seconds (Route 53's standard 30) at ``AWS_INSTANCE_IPV4`` (or
``AWS_INSTANCE_IPV6``) and ``AWS_INSTANCE_PORT`` (80 for HTTP and 443 for HTTPS when the
instance gives none; a TCP check needs the port):

- TCP: healthy when a connection is established within :data:`CONNECT_TIMEOUT` seconds;
- HTTP and HTTPS: a ``GET`` of the ``ResourcePath``, healthy when the status is 2xx or 3xx within
  :data:`RESPONSE_TIMEOUT` seconds of connecting (the body is not read; HTTPS certificates are
  not validated, as Route 53 does not).

An instance's ``HealthStatus`` changes after ``FailureThreshold`` consecutive checks that
disagree with it, as in Route 53, and the change is written like any other (audited as
``UpdateInstanceHealthStatus`` by ``meshplane@health-checker/<replica>``), so EDS and the DNS
server follow it.  Instances whose lease lapsed are not checked (they are UNHEALTHY already).
Link-local addresses (the cloud metadata endpoints live there) are never checked: they count
as failing.  Checks run concurrently, at most :data:`CONCURRENCY` at a time, on the event loop,
each bounded in time; reading and writing the store happens in a thread.

Only the replica holding the fleet's duty lease checks.  Built and started by
``meshplane.server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from meshplane.model.kinds import REGISTRY_MESH
from meshplane.store import registry
from meshplane.store.protocols import ResourceReader, Store, Transaction

log = logging.getLogger(__name__)

INTERVAL = 30.0
"""Seconds between two checks of an instance (Route 53's standard request interval)."""
CONNECT_TIMEOUT = 4.0
RESPONSE_TIMEOUT = 2.0
CONCURRENCY = 32
PRINCIPAL = "meshplane@health-checker"
OPERATION = "UpdateInstanceHealthStatus"
DEFAULT_PORTS = {"HTTP": 80, "HTTPS": 443}


@dataclass(frozen=True, slots=True)
class Target:
    """One instance to check, and how."""

    service_id: str
    instance_id: str
    kind: str  # HTTP | HTTPS | TCP
    host: str
    port: int | None
    path: str
    threshold: int
    health: str  # its HealthStatus now

    @property
    def key(self) -> tuple[str, str]:
        return self.service_id, self.instance_id


def targets(reader: ResourceReader) -> list[Target]:
    """Every instance of a service with ``HealthCheckConfig`` whose lease has not lapsed."""
    out: list[Target] = []
    for service in registry.services(reader):
        config = service.spec.get("HealthCheckConfig")
        if not config:
            continue
        kind = str(config.get("Type", "HTTP"))
        for record in registry.instance_records(reader, service.key.name):
            if record.spec.get("Lease", {}).get("Expired"):
                continue
            instance = registry.instance_of(record, service.spec)
            host = instance.ipv4 or instance.ipv6
            if host is None:
                continue
            out.append(
                Target(
                    service.key.name,
                    instance.id,
                    kind,
                    host,
                    instance.port or DEFAULT_PORTS.get(kind),
                    str(config.get("ResourcePath", "/")),
                    int(config.get("FailureThreshold", 1)),
                    instance.health,
                )
            )
    return out


def _checkable(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_link_local and not address.is_multicast and not address.is_unspecified


async def probe(target: Target) -> bool:
    """One check of ``target``: whether it passed (see the module docstring); never longer
    than :data:`CONNECT_TIMEOUT` + :data:`RESPONSE_TIMEOUT` seconds, however slowly the
    instance answers."""
    if target.port is None or not _checkable(target.host):
        return False
    try:
        return await asyncio.wait_for(_probe(target), CONNECT_TIMEOUT + RESPONSE_TIMEOUT)
    except TimeoutError:
        return False


async def _probe(target: Target) -> bool:
    assert target.port is not None
    if target.kind == "TCP":
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    host = f"[{target.host}]" if ":" in target.host else target.host
    url = f"{target.kind.lower()}://{host}:{target.port}{target.path}"
    timeout = httpx.Timeout(RESPONSE_TIMEOUT, connect=CONNECT_TIMEOUT)
    try:
        async with (
            httpx.AsyncClient(verify=False, trust_env=False, timeout=timeout) as client,
            client.stream("GET", url, headers={"user-agent": "meshplane-health-check"}) as answer,
        ):
            return 200 <= answer.status_code < 400
    except (httpx.HTTPError, OSError, ValueError):
        return False


class HealthChecker:
    """Checks the instances of the services with ``HealthCheckConfig`` every ``interval``
    seconds while ``duty()`` says this replica holds the duty lease."""

    def __init__(
        self,
        store: Store,
        *,
        replica: str,
        interval: float = INTERVAL,
        duty: Callable[[], bool] = lambda: True,
        check: Callable[[Target], Awaitable[bool]] = probe,
    ) -> None:
        self.store = store
        self.principal = f"{PRINCIPAL}/{replica}"
        self.interval = interval
        self.duty = duty
        self.check = check
        self._streaks: dict[tuple[str, str], tuple[bool, int]] = {}
        """Per instance: the result of its last checks and how many in a row."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="meshplane-health-checks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception as error:
                log.warning("Cloud Map health checks failed (%s); retrying", error)

    async def run_once(self) -> dict[tuple[str, str], str]:
        """Check every target once; return the health statuses changed."""
        if not self.duty():
            self._streaks.clear()  # the next holder starts counting afresh
            return {}
        found = await asyncio.to_thread(targets, self.store)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(target: Target) -> bool:
            async with gate:
                return await self.check(target)

        results = await asyncio.gather(*(one(t) for t in found))
        due: dict[tuple[str, str], str] = {}
        streaks: dict[tuple[str, str], tuple[bool, int]] = {}
        for target, passed in zip(found, results, strict=True):
            last, count = self._streaks.get(target.key, (passed, 0))
            streak = (passed, count + 1 if last == passed else 1)
            streaks[target.key] = streak
            status = registry.HEALTHY if passed else registry.UNHEALTHY
            if status != target.health and streak[1] >= target.threshold:
                due[target.key] = status
        self._streaks = streaks  # instances gone are forgotten
        if not due:
            return {}
        changed = await asyncio.to_thread(self.store.transact, lambda tx: self._write(tx, due))
        for (service_id, instance_id), status in changed.items():
            log.info("Cloud Map instance %s of %s is %s", instance_id, service_id, status)
        return changed

    def _write(
        self, tx: Transaction, due: dict[tuple[str, str], str]
    ) -> dict[tuple[str, str], str]:
        changed: dict[tuple[str, str], str] = {}
        for (service_id, instance_id), status in due.items():
            record = tx.get(registry.instance_key(service_id, instance_id))
            if record is None or record.spec.get("Health", registry.HEALTHY) == status:
                continue
            updated = tx.update(record.key, {**record.spec, "Health": status})
            tx.audit(
                self.principal,
                OPERATION,
                mesh=REGISTRY_MESH,
                resource=f"cloudmap/instance/{instance_id}",
                version=updated.version,
                via="health-check",
            )
            changed[(service_id, instance_id)] = status
        return changed
