"""Translation time for meshes of 1,000 and 10,000 virtual nodes (pure CPU, one process).

For each mesh size (:func:`bench.meshes.service_mesh`: every node one HTTP listener and three
backends, a quarter of the services behind a weighted virtual router):

- **view build**: ``MeshView.from_records`` over every stored record of the mesh;
- **one proxy**: ``translate_proxy`` of one virtual node with three backends, on a fresh view
  (cold: parses the specs it reads) and again on the same view (warm, mean of many), and the
  ``Snapshot`` the control loop builds from it (serialization and hashing of each resource);
- **every proxy once**: translate all N virtual nodes on a fresh view (per-proxy mean, parsing
  included), then translate all again and build each snapshot, as the control loop does when a
  change touches every proxy (per-proxy mean); the median of ``--passes`` such passes (one
  for meshes over 2,000 nodes);
- **one change**: ``MeshView.with_changes`` after an update of one route (the view the control
  loop rebuilds per change batch), against the full ``from_records`` build, and the
  re-translation of a proxy that reads the changed route.

Figures are medians/means of wall time on this machine; the ratios in the last column compare
with the full view build of the same run.  Not part of the test suite.

    python -m bench.translate [--sizes 1000,10000] [--repeat 200] [--passes 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import machine
from bench.meshes import record, records, service_mesh, weighted_route, weights_mesh
from meshplane.control import wrap_resources
from meshplane.model import Kind, ResourceKey
from meshplane.translate import MeshView, ProxyIdentity, ProxyOptions, translate_proxy
from meshplane.xds import Snapshot

MESH = "bench"


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run_size(nodes: int, repeat: int, passes: int, profile: bool) -> list[tuple[str, float, str]]:
    specs = service_mesh(MESH, nodes)
    recs = records(specs)
    rows: list[tuple[str, float, str]] = []
    options = ProxyOptions()

    def target(i: int) -> ProxyIdentity:
        return ProxyIdentity(MESH, Kind.VIRTUAL_NODE, f"n{i}")

    build = timed(lambda: MeshView.from_records(recs, MESH), max(3, repeat // 20))
    rows.append((f"view build ({len(recs)} records)", build, "1.00"))

    one = target(1)  # backends s2 (node), s3 (node), s4 (router: n4/n5 50/50)
    view = MeshView.from_records(recs, MESH)
    start = time.perf_counter()
    resources = translate_proxy(view, one, options)
    cold = time.perf_counter() - start
    assert not resources.problems, resources.problems
    counts = (
        f"{len(resources.clusters)} clusters, {len(resources.listeners)} listeners, "
        f"{len(resources.routes)} route configs"
    )

    def warm_once() -> None:
        view.memo.clear()  # parses kept, nothing shared: as after a change to its backends
        translate_proxy(view, one, options)

    warm = timed(warm_once, repeat)
    shared = timed(lambda: translate_proxy(view, one, options), repeat)
    snap = timed(lambda: Snapshot(resources.all()), repeat)
    rows.append((f"one proxy, cold view ({counts})", cold, f"{cold / build:.3f}"))
    rows.append(("one proxy, warm view", warm, f"{warm / build:.3f}"))
    rows.append(("one proxy, warm view, egress half shared", shared, f"{shared / build:.3f}"))
    rows.append(("  + its Snapshot (serialize, hash, refs)", snap, f"{snap / build:.3f}"))

    targets = [target(i) for i in range(nodes)]
    profiler = cProfile.Profile() if profile else None
    colds, snaps = [], []
    for _ in range(passes):
        gc.collect()
        fresh = MeshView.from_records(recs, MESH)
        start = time.perf_counter()
        for t in targets:
            translate_proxy(fresh, t, options)
        colds.append((time.perf_counter() - start) / nodes)
        if profiler is not None:
            profiler.enable()
        fresh.memo.clear()  # a change makes a new view: nothing shared yet
        start = time.perf_counter()
        for t in targets:
            Snapshot(wrap_resources(fresh, translate_proxy(fresh, t, options)))
        snaps.append((time.perf_counter() - start) / nodes)
        if profiler is not None:
            profiler.disable()
    all_cold, all_snap = statistics.median(colds), statistics.median(snaps)
    rows.append(
        (f"every proxy once, fresh view: per proxy ({nodes})", all_cold, f"{all_cold / build:.3f}")
    )
    rows.append(("every proxy again + Snapshot: per proxy", all_snap, f"{all_snap / build:.3f}"))
    rows.append(
        ("  = every proxy + Snapshot: total", all_snap * nodes, f"{all_snap * nodes / build:.3f}")
    )

    changed = record(
        ResourceKey(Kind.ROUTE, MESH, "split", "r4"),
        weighted_route({"n4": 30, "n5": 70}),
        revision=2,
    )
    update = timed(lambda: fresh.with_changes([changed], []), max(3, repeat // 20))
    rows.append(("view.with_changes(one route)", update, f"{update / build:.3f}"))
    after = fresh.with_changes([changed], [])
    start = time.perf_counter()
    translate_proxy(after, one, options)
    retranslate = time.perf_counter() - start
    rows.append(
        ("  re-translate a proxy reading it (first)", retranslate, f"{retranslate / build:.3f}")
    )
    rows.extend(consumers(nodes, passes))
    if profiler is not None:
        print(f"\n--- cProfile: every proxy + Snapshot, {nodes} nodes (top 25 by own time)")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return rows


def consumers(count: int, passes: int) -> list[tuple[str, float, str]]:
    """The convergence benchmark's mesh (``count`` consumers of one routed service): every
    consumer + Snapshot on a new view, as after a weight change, with the egress half shared
    between them (what the control loop does) against translating each on its own."""
    recs = records(weights_mesh(MESH, count))
    targets = [ProxyIdentity(MESH, Kind.VIRTUAL_NODE, f"c{i}") for i in range(count)]
    options = ProxyOptions()
    alone, together = [], []
    for _ in range(passes):
        view = MeshView.from_records(recs, MESH)
        for t in targets:  # parse every spec once, as a long-lived view has
            translate_proxy(view, t, options)
        gc.collect()
        start = time.perf_counter()
        for t in targets:
            view.memo.clear()
            Snapshot(wrap_resources(view, translate_proxy(view, t, options)))
        alone.append((time.perf_counter() - start) / count)
        view.memo.clear()
        start = time.perf_counter()
        for t in targets:
            Snapshot(wrap_resources(view, translate_proxy(view, t, options)))
        together.append((time.perf_counter() - start) / count)
    each, shared = statistics.median(alone), statistics.median(together)
    return [
        (f"{count} consumers of one service + Snapshot, each alone: per proxy", each, "1.00"),
        (
            "  the same, egress half shared (control loop): per proxy",
            shared,
            f"{shared / each:.3f}",
        ),
        ("  = total, shared", shared * count, ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000,10000", help="comma-separated mesh sizes (virtual nodes)"
    )
    parser.add_argument("--repeat", type=int, default=200, help="samples for the medians")
    parser.add_argument(
        "--passes",
        type=int,
        default=3,
        help="every-proxy passes (median; meshes over 2,000 nodes get one)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the every-proxy pass and print the hot spots",
    )
    args = parser.parse_args()
    print(machine.describe())
    for size in (int(s) for s in args.sizes.split(",")):
        started = time.perf_counter()
        passes = args.passes if size <= 2000 else 1
        rows = run_size(size, args.repeat, passes, args.profile)
        print(
            f"\nmesh of {size} virtual nodes ({time.perf_counter() - started:.0f} s for this size)"
        )
        print(f"{'measure':62s} {'time':>12s} {'x view build':>12s}")
        for name, seconds, ratio in rows:
            print(f"{name:62s} {_fmt(seconds):>12s} {ratio:>12s}")


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"


if __name__ == "__main__":
    main()
