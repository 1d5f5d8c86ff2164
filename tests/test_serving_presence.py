"""The fleet's proxy rows wait while the xDS server is busy (meshplane.server.serving.BusyGate):
held back while the work counter moves fast, for a bounded time, and never for a small mesh."""

from __future__ import annotations

from meshplane.server.serving import BusyGate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_holds_reports_back_until_it_ends() -> None:
    work, clock = [0], Clock()
    gate = BusyGate(lambda: work[0], busy=1_000, limit=10.0, clock=clock)
    assert not gate.hold()  # quiet: the report goes out
    work[0] += 5_000
    clock.now += 2
    assert gate.hold()  # a burst: held back
    work[0] += 20
    clock.now += 2
    assert not gate.hold()  # it ended: what changed meanwhile goes out


def test_a_burst_that_does_not_end_is_reported_every_limit() -> None:
    work, clock = [0], Clock()
    gate = BusyGate(lambda: work[0], busy=1_000, limit=10.0, clock=clock)
    sent = []
    for beat in range(15):  # 30 s of non-stop churn, a question every 2 s
        work[0] += 10_000
        clock.now += 2
        if not gate.hold():
            sent.append(beat)
    assert sent == [4, 9, 14]  # at most 10 s apart


def test_a_small_mesh_is_never_held_back() -> None:
    work, clock = [0], Clock()
    gate = BusyGate(lambda: work[0], busy=1_000, limit=10.0, clock=clock)
    for _ in range(10):
        work[0] += 1_000  # up to the bound: not busy
        clock.now += 2
        assert not gate.hold()
