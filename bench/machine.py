"""The machine a benchmark ran on, for the first line of its output (and docs/benchmarks.md):
cores, CPU model, memory, Python and Envoy versions, load average and the date.

Used by every ``bench.*`` module; not part of the test suite.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def envoy_version() -> str:
    try:
        from meshplane.proxy.runner import find_envoy_binary

        out = subprocess.run(
            [find_envoy_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except Exception:  # no Envoy: the pure-Python benchmarks still run
        return "none"
    found = re.search(r"/(\d+\.\d+\.\d+)/", out)
    return found.group(1) if found else out.strip()[:40]


def describe() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} cores ({cpu_model()}), {memory_gib():.1f} GiB, "
        f"Python {platform.python_version()}, Envoy {envoy_version()}, load {load}, "
        f"{datetime.datetime.now().astimezone().isoformat(timespec='minutes')}"
    )
