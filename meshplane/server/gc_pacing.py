"""Garbage collection paced by the serving load: young garbage is collected when the process
is idle, not every so many allocations in the middle of a convergence burst.

A process that serves xDS keeps every stream's in-flight gRPC read alive in the young
generation (a coroutine, futures, Cython scopes: about fifteen objects per stream, new for every
message).  With collections every 50,000 allocations, each collection during a 10,000-proxy
write scanned 60,000 to 170,000 live objects for 40 to 150 ms, several times per write: 17 % of
an xDS worker's CPU for that write (``docs/benchmarks.md``, section 3b).  Collections that wait
for a quiet moment find far fewer objects alive and do not stretch the burst.

:func:`pace` freezes what start-up built (it lives as long as the process), then lets the
interpreter collect on its own only once :data:`CAP` young objects have accumulated (the bound
on memory and on one collection's pause under non-stop load), and runs a task that collects the
young generation when it holds more than :data:`YOUNG` objects and ``activity()`` (a count of
xDS messages handled) has not moved for :data:`IDLE` seconds.  Every :data:`MIDDLE_EVERY`-th such
collection takes the middle generation too, as the interpreter would.

Called by :class:`meshplane.server.run.Application` and :mod:`meshplane.server.worker` once
they serve.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

YOUNG = 50_000
"""Young objects above which an idle moment is used to collect."""
CAP = 400_000
"""Young objects at which the interpreter collects anyway (non-stop load)."""
IDLE = 0.05
"""Seconds without an xDS message that count as idle."""
MIDDLE_EVERY = 50
"""Young collections per middle-generation collection (the interpreter's default is 10)."""


async def pace(activity: Callable[[], int]) -> None:
    """Freeze start-up's objects and collect at idle moments until cancelled (see the module
    docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(CAP, MIDDLE_EVERY, 100)
    seen = activity()
    while True:
        await asyncio.sleep(IDLE)
        now = activity()
        if now == seen:
            collect_if_due()
        seen = now


def collect_if_due() -> bool:
    """Collect the young generation (and, when due, the middle one) if it holds more than
    :data:`YOUNG` objects; return whether it did."""
    young, middle, _ = gc.get_count()
    if young < YOUNG:
        return False
    gc.collect(1 if middle >= MIDDLE_EVERY else 0)
    return True
