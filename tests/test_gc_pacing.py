"""Garbage collection paced by the xDS load (meshplane.server.gc_pacing): collections wait for
an idle moment, and the interpreter still collects on its own past the cap."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from meshplane.server import gc_pacing


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.collect()


def young_objects(count: int) -> list[list[int]]:
    """``count`` new container objects the collector tracks."""
    return [[i] for i in range(count)]


def test_collects_only_above_the_young_bound() -> None:
    gc.set_threshold(gc_pacing.CAP, gc_pacing.MIDDLE_EVERY, 100)
    gc.collect()
    kept = young_objects(gc_pacing.YOUNG // 2)
    assert not gc_pacing.collect_if_due()
    kept += young_objects(gc_pacing.YOUNG)
    assert gc.get_count()[0] >= gc_pacing.YOUNG
    assert gc_pacing.collect_if_due()
    assert gc.get_count()[0] < gc_pacing.YOUNG
    assert len(kept) == gc_pacing.YOUNG * 3 // 2


async def test_waits_while_busy_and_collects_when_idle() -> None:
    busy = [0]
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collections.append(info["generation"])

    task = asyncio.create_task(gc_pacing.pace(lambda: busy[0]))
    await asyncio.sleep(0.1)  # started: the interpreter's own threshold is the cap
    assert gc.get_threshold()[0] == gc_pacing.CAP
    gc.callbacks.append(count)
    try:
        kept = young_objects(gc_pacing.YOUNG * 2)
        for _ in range(10):  # serving: xDS messages keep being handled
            busy[0] += 1
            await asyncio.sleep(gc_pacing.IDLE / 2)
        assert collections == []
        for _ in range(100):  # idle: the young generation is collected
            if collections:
                break
            await asyncio.sleep(gc_pacing.IDLE)
        assert collections and gc.get_count()[0] < gc_pacing.YOUNG
        assert len(kept) == gc_pacing.YOUNG * 2
    finally:
        gc.callbacks.remove(count)
        task.cancel()


def test_the_interpreter_still_collects_past_the_cap() -> None:
    gc.set_threshold(gc_pacing.CAP, gc_pacing.MIDDLE_EVERY, 100)
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collections.append(info["generation"])

    gc.collect()
    gc.callbacks.append(count)
    try:
        kept = young_objects(gc_pacing.CAP + 1_000)
    finally:
        gc.callbacks.remove(count)
    assert collections, "no collection past the cap"
    assert len(kept) == gc_pacing.CAP + 1_000
