"""Automatic rotation of the mesh CAs, one of the fleet's singleton duties.

Every ``interval`` seconds, on the replica that holds the duty lease only, :class:`CaRotation`
asks :meth:`~meshplane.authority.CertificateAuthorities.rotate_if_due` of every mesh: a
generated CA whose signing root is within ``--ca-rotate-before`` of its expiry is rotated, and
the rotation is audited as ``RotateMeshCa`` by ``meshplane@ca-rotation/<replica>`` (the replica
that did it), on the resource ``mesh/<mesh>/ca/<old serial>-><new serial>`` (hex serials of the
signing roots: a chain, so a rotation made twice from one root would show).  The other replicas
read the rotated CA from the shared keystore (the identity state's change feed).  On SQLite the
one server always holds the lease.

Built and started by ``meshplane.server``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from meshplane.authority import CertificateAuthorities
from meshplane.model.kinds import Kind
from meshplane.service.periodic import Periodic
from meshplane.store.protocols import Store, Transaction

log = logging.getLogger(__name__)

PRINCIPAL = "meshplane@ca-rotation"
OPERATION = "RotateMeshCa"


class CaRotation:
    """Rotates the mesh CAs that are due, while ``duty()`` says this replica holds the lease."""

    def __init__(
        self,
        store: Store,
        authorities: CertificateAuthorities,
        *,
        replica: str,
        duty: Callable[[], bool] = lambda: True,
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.authorities = authorities
        self.principal = f"{PRINCIPAL}/{replica}"
        self.duty = duty
        self.interval = interval
        self._periodic = Periodic(self.rotate_due, interval=interval, name="CA rotation check")

    async def start(self) -> None:
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    def rotate_due(self) -> list[str]:
        """Rotate every CA that is due (if this replica holds the duty lease); the meshes."""
        rotated: list[str] = []
        for record in self.store.list_kind(Kind.MESH):
            if not self.duty():  # the lease was lost: another replica takes over
                break
            mesh = record.key.name
            change = self.authorities.rotate_if_due(mesh)
            if change is None:
                continue
            before, after = change
            now = self.authorities.clock()
            resource = (
                f"mesh/{mesh}/ca/{before.signing_root(now).serial:x}->{after.roots[-1].serial:x}"
            )
            self._audit(mesh, resource)
            log.info("mesh %s: CA rotated (%s), its root was near its expiry", mesh, resource)
            rotated.append(mesh)
        return rotated

    def _audit(self, mesh: str, resource: str) -> None:
        def work(tx: Transaction) -> None:
            tx.audit(self.principal, OPERATION, mesh=mesh, resource=resource, via="lease")

        self.store.transact(work)
