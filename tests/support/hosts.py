"""The multi-host fixture: hosts as network namespaces on a bridge (198.18.0.0/15).

:func:`host_network` is a context manager around :class:`meshplane.proxy.hosts.HostNetwork`
with namespaces named after this test process (``mp<pid>t<n>-<host>``), removed at the end
even when the test fails.  :func:`namespace` is one bare namespace (for the proxy-init tests).
A test that needs them fails loudly when not root or without ``ip``/``iptables``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from meshplane.proxy.hosts import HostNetwork

_counter = itertools.count()


def require_root_tools(*tools: str) -> None:
    """Fail (never skip) when the test cannot build namespaces."""
    assert os.geteuid() == 0, "this test builds network namespaces: run it as root"
    for tool in ("ip", *tools):
        assert shutil.which(tool), f"{tool} is missing: scripts/test installs it (apt-get)"


@contextmanager
def host_network(names: Sequence[str]) -> Iterator[HostNetwork]:
    require_root_tools("iptables")
    network = HostNetwork(names, prefix=f"mp{os.getpid()}t{next(_counter)}-")
    with network:
        yield network


@contextmanager
def namespace() -> Iterator[str]:
    """A fresh, empty network namespace (loopback up), deleted afterwards."""
    require_root_tools("iptables")
    name = f"mp{os.getpid()}n{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
