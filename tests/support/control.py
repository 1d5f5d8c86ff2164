"""Builders for the control loop's tests: the anonymous caller, a virtual node spec and
``settle`` (wait until the loop has caught up with the store).

Imported by ``tests/test_control_*.py`` (ADS connections: ``tests.support.xds.connection``;
the store: the ``embedded_store`` fixture of ``tests.support.stores``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from meshplane.control import ControlLoop
from meshplane.service.access import ANONYMOUS
from meshplane.service.resources import Caller
from meshplane.store import Store

CALLER = Caller("000000000000", ANONYMOUS)


def node_spec(host: str, backends: tuple[str, ...] = ()) -> dict[str, Any]:
    """A virtual node with one HTTP listener on 8080, DNS discovery and ``backends``."""
    return {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": host}},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
    }


async def settle(loop: ControlLoop, store: Store) -> None:
    """Return once the loop has applied every change of the store (AssertionError after ~20 s)."""
    for _ in range(400):
        if loop.revision >= store.revision:
            await asyncio.sleep(0.05)
            if loop.revision >= store.revision:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the control loop did not catch up with the store")
