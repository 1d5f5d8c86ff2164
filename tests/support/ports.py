"""Loopback ports for the servers and proxies that tests start.

A port picked by binding to port 0 comes from the kernel's *ephemeral* range, the same range
every outgoing connection takes its local port from.  Between the moment a test picks such a
port and the moment Envoy binds it, any client connection on the machine (the control plane
dialling a proxy, a proxy dialling an upstream) may take it, and Envoy then exits with "Address
already in use".  So ports are handed out from below the ephemeral range instead, from a cursor
that only moves forward: no outgoing connection ever uses them, and one test run never hands the
same port out twice.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

_LOWEST = 20000


def _ephemeral_floor() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_CEILING = max(_LOWEST + 1000, _ephemeral_floor())
_SPAN = _CEILING - _LOWEST
_lock = threading.Lock()
# Start somewhere that depends on the process, so two test processes rarely walk the same ports.
_cursor = (os.getpid() * 7919) % _SPAN


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_run(count: int = 1, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive TCP ports on ``host``, free now and outside the
    ephemeral range; never handed out before in this process."""
    global _cursor
    with _lock:
        for _ in range(_SPAN):
            base = _LOWEST + _cursor
            _cursor = (_cursor + count) % _SPAN
            if base + count > _CEILING:
                continue
            if all(_bindable(host, port) for port in range(base, base + count)):
                return base
    raise AssertionError(f"no {count} consecutive free ports on {host} in {_LOWEST}-{_CEILING}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, outside the ephemeral range (see the module text)."""
    return free_run(1, host)
