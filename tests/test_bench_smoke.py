"""The benchmarks still run: each ``bench.*`` module at a tiny scale, as a subprocess.

No timing is asserted (speed goals live in ``docs/benchmarks.md``); these only catch a
benchmark broken by a change to the code it drives.  The convergence and latency runs start
real Envoys (latency needs nginx, h2load and wrk, which scripts/test installs).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_translate_benchmark_runs() -> None:
    out = run_bench("bench.translate", "--sizes", "20", "--repeat", "3")
    assert "mesh of 20 virtual nodes" in out
    assert "view.with_changes(one route)" in out


@pytest.mark.e2e
def test_convergence_benchmark_runs() -> None:
    out = run_bench(
        "bench.convergence",
        "--envoys",
        "2",
        "--clients",
        "4",
        "--writes",
        "1",
        "--large-writes",
        "1",
    )
    assert "2 Envoys: applied (Envoy)" in out
    assert "4 proxies: last ACK (= convergence)" in out
    assert "KiB per connected proxy" in out


def test_convergence_benchmark_runs_on_a_fleet() -> None:
    """Two replicas on one PostgreSQL, two xDS workers each: the shapes of issue 13."""
    out = run_bench(
        "bench.convergence",
        "--envoys",
        "0",
        "--clients",
        "4",
        "--writes",
        "1",
        "--backend",
        "postgresql",
        "--replicas",
        "2",
        "--xds-workers",
        "2",
    )
    assert "simulated ADS clients: node (bench/ads_clients.js" in out  # the default
    assert "4 proxies: last ACK (= convergence)" in out
    assert "server CPU (6 serving processes)" in out
    assert "| postgresql, 2 replicas, 2 xDS worker(s) each | 4 |" in out


def test_convergence_benchmark_runs_with_the_python_simulator() -> None:
    out = run_bench(
        "bench.convergence",
        "--envoys", "0",
        "--clients", "4",
        "--writes", "1",
        "--simulator", "python",
    )  # fmt: skip
    assert "simulated ADS clients: python (bench/ads_clients.py" in out
    assert "4 simulated ADS clients (1 python simulator process(es))" in out
    assert "4 proxies: last ACK (= convergence)" in out
    assert "| sqlite, 1 server, 1 xDS worker(s) each | 4 |" in out
    assert "| python: " in out


@pytest.mark.e2e
def test_latency_benchmark_runs() -> None:
    missing = [
        tool
        for tool, found in (
            ("nginx", shutil.which("nginx") or Path("/usr/sbin/nginx").exists()),
            ("h2load", shutil.which("h2load")),
            ("wrk", shutil.which("wrk")),
        )
        if not found
    ]
    assert not missing, (
        f"install {missing} (scripts/test does: apt-get install nginx nghttp2-client wrk)"
    )
    out = run_bench(
        "bench.latency", "--rates", "50", "--rounds", "1", "--seconds", "1", "--wrk-seconds", "1"
    )
    assert "two sidecars" in out


@pytest.mark.e2e
def test_registry_benchmark_runs() -> None:
    assert shutil.which("dnsperf"), "dnsperf is missing (scripts/test installs it: apt-get)"
    out = run_bench(
        "bench.registry",
        "--registrations", "40",
        "--consumers", "3",
        "--writes", "1",
        "--dns-seconds", "1",
        "--latency-queries", "80",
    )  # fmt: skip
    assert "a. registrations:" in out
    assert "consumers (3 proxies)" in out
    assert "'cds': 0.0, 'lds': 0.0, 'rds': 0.0" in out
    assert "c. DNS qps ratio meshplane/echo" in out


@pytest.mark.e2e
def test_capture_latency_benchmark_runs() -> None:
    """``bench.latency --capture``: captured vs explicit vs direct across two hosts (root)."""
    assert shutil.which("h2load") and shutil.which("wrk"), "scripts/test installs h2load and wrk"
    out = run_bench(
        "bench.latency",
        "--capture",
        "--rates",
        "50",
        "--rounds",
        "1",
        "--seconds",
        "1",
        "--wrk-seconds",
        "1",
    )
    for path in ("direct", "explicit egress", "captured"):
        assert f"\n{path} " in out, out
    assert "captured Envoy" in out


def test_abuse_benchmark_runs() -> None:
    out = run_bench("bench.abuse", "--idle", "1", "--scale", "0.02")
    assert "idle (baseline)" in out
    assert "7. 600 xDS streams naming meshes that do not exist" in out
    assert "| 0 (" not in out  # every attack row had probes answered


@pytest.mark.e2e
def test_telemetry_benchmark_runs() -> None:
    """``bench.telemetry``: three real sidecar pairs (no sink, stats, tracing to an OTLP
    receiver) under h2load, simulated proxies streaming a real sidecar's stat set, taps."""
    assert shutil.which("h2load"), "scripts/test installs h2load (nghttp2-client)"
    assert shutil.which("nginx") or Path("/usr/sbin/nginx").exists(), "scripts/test installs nginx"
    out = run_bench(
        "bench.telemetry",
        "--rate", "100",
        "--seconds", "1",
        "--rounds", "1",
        "--flush", "1",
        "--proxies", "20",
        "--sim-seconds", "4",
        "--taps", "1",
        "--tap-requests", "2",
    )  # fmt: skip
    for mode in ("none", "stats", "tracing"):
        assert f"\n{mode} " in out, out
    assert "CPU us/rq" in out and "spans received" in out
    assert "reporting proxies seen by the control plane: 20 of 20" in out, out
    assert "KiB per proxy" in out and "us of CPU per proxy per second" in out
    assert "its outbound entry read from the tap" in out and "tap closed ->" in out
