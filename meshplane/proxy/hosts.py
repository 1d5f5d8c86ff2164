"""Several hosts on one machine: network namespaces joined by a bridge (198.18.0.0/15).

:class:`HostNetwork` builds N "hosts", each a network namespace with its own address from the
benchmarking range ``198.18.0.0/15`` (RFC 2544: never routed) on a veth joined to a bridge in
the root namespace, which holds the gateway address (``.1``) — so a control plane in the root
namespace is reachable from every host at :attr:`HostNetwork.gateway`.  Each host has a default
route through the gateway, so virtual IPs (``240.240.0.0/16``) are routable and the capture
rules see connections to them, and its own ``/etc/netns/<namespace>/hosts`` and
``resolv.conf`` (``ip netns exec`` mounts them over ``/etc``).

A network picks a /24 no address or route of the machine uses yet (under a lock file, so
parallel runs do not collide) and names everything after its ``prefix`` (namespaces
``<prefix><host>``; bridge and veths after a hash of it).  :meth:`HostNetwork.down` removes it
all — processes still in its namespaces, namespaces, bridge, ``/etc/netns`` files — and is
safe to call on a half-built network or twice.

Needs root.  Used by ``meshplane demo --hosts``, the tests' multi-host fixture
(``tests/support/hosts.py``) and ``scripts/hosts``::

    python -m meshplane.proxy.hosts up --prefix mp-try- client blue green
    python -m meshplane.proxy.hosts down --prefix mp-try- client blue green
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from meshplane.errors import MeshplaneError

RANGE = ipaddress.IPv4Network("198.18.0.0/15")
NETNS_ETC = Path("/etc/netns")
_LOCK = Path("/run/meshplane-hosts.lock")


class HostNetworkError(MeshplaneError):
    """The hosts could not be built (not root, no ``ip``, a name in use...)."""


@dataclass(frozen=True, slots=True)
class Host:
    """One host: its name, network namespace and address."""

    name: str
    netns: str
    address: str
    veth: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode != 0:
        raise HostNetworkError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _used_networks() -> set[ipaddress.IPv4Network]:
    text = _ip("-4", "-o", "addr").stdout + _ip("-4", "route").stdout
    used = set()
    for word in text.split():
        with contextlib.suppress(ValueError):
            network = ipaddress.ip_network(word, strict=False)
            if isinstance(network, ipaddress.IPv4Network) and network.overlaps(RANGE):
                used.add(network)
    return used


class HostNetwork:
    """N hosts as network namespaces on one bridge; a context manager (``down`` on exit)."""

    def __init__(self, names: Sequence[str], prefix: str | None = None) -> None:
        if not names or len(set(names)) != len(names) or len(names) > 200:
            raise HostNetworkError("give 1 to 200 distinct host names")
        self.prefix = prefix if prefix is not None else f"mp{os.getpid()}-"
        tag = hashlib.sha1(self.prefix.encode()).hexdigest()[:8]
        self.bridge = f"mpb{tag}"
        self.names = tuple(names)
        self._tag = tag
        self.hosts: dict[str, Host] = {}
        self.gateway = ""
        self.network: ipaddress.IPv4Network | None = None

    def netns(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def up(self) -> Self:
        """Build the bridge and the hosts (removing what was built if a step fails)."""
        if os.geteuid() != 0:
            raise HostNetworkError("building hosts (network namespaces) needs root")
        if shutil.which("ip") is None:
            raise HostNetworkError("the ip command is missing (Debian: apt-get install iproute2)")
        existing = set(_ip("netns", "list").stdout.split())
        taken = [self.netns(n) for n in self.names if self.netns(n) in existing]
        if taken:
            raise HostNetworkError(f"network namespace {taken[0]} already exists")
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self) -> None:
        _LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.network = self._free_network()
            gateway = self.network.network_address + 1
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{gateway}/{self.network.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        self.gateway = str(gateway)
        for index, name in enumerate(self.names):
            netns = self.netns(name)
            veth = f"mpv{self._tag}{index:x}"
            address = str(self.network.network_address + 10 + index)
            _ip("netns", "add", netns)
            self.hosts[name] = Host(name, netns, address, veth)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            inside = ("-n", netns)
            _ip(*inside, "link", "set", "lo", "up")
            _ip(*inside, "addr", "add", f"{address}/{self.network.prefixlen}", "dev", "eth0")
            _ip(*inside, "link", "set", "eth0", "up")
            _ip(*inside, "route", "add", "default", "via", self.gateway)
        self.write_names({})

    def _free_network(self) -> ipaddress.IPv4Network:
        used = _used_networks()
        subnets: list[ipaddress.IPv4Network] = list(RANGE.subnets(new_prefix=24))
        start = int(hashlib.sha1(self.prefix.encode()).hexdigest(), 16) % len(subnets)
        for offset in range(len(subnets)):
            candidate = subnets[(start + offset) % len(subnets)]
            if not any(candidate.overlaps(u) for u in used):
                return candidate
        raise HostNetworkError("no free /24 left in 198.18.0.0/15")

    def write_names(self, names: Mapping[str, str], nameserver: str | None = None) -> None:
        """Each host's ``/etc/hosts`` (``names``: name -> address, plus every host's own
        name) and ``resolv.conf`` (``nameserver``, default the gateway)."""
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        lines += [f"{host.address} {host.name}" for host in self.hosts.values()]
        lines += [f"{address} {name}" for name, address in names.items()]
        for host in self.hosts.values():
            folder = NETNS_ETC / host.netns
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text("\n".join(lines) + "\n")
            (folder / "resolv.conf").write_text(
                f"nameserver {nameserver or self.gateway}\noptions timeout:1 attempts:1\n"
            )

    def run(
        self, host: str, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on ``host`` and wait (text output captured)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("timeout", 60)
        return subprocess.run(self.hosts[host].command(argv), text=True, check=False, **kwargs)

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` on ``host`` in the background."""
        return subprocess.Popen(self.hosts[host].command(argv), **kwargs)

    def down(self) -> None:
        """Remove everything (processes left in the namespaces first); never raises."""
        existing = set(_ip("netns", "list", check=False).stdout.split())
        for name in self.names:
            netns = self.netns(name)
            if netns in existing:
                _kill_processes(netns)
                _ip("netns", "delete", netns, check=False)
            shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)
        _ip("link", "delete", self.bridge, check=False)
        self.hosts.clear()

    def __enter__(self) -> Self:
        return self.up()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()


def _kill_processes(netns: str) -> None:
    """Stop the processes still in our namespace ``netns`` (by pid), TERM then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [int(p) for p in _ip("netns", "pids", netns, check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and _ip("netns", "pids", netns, check=False).stdout:
            time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meshplane.proxy.hosts",
        description="Build or remove hosts (network namespaces on a bridge, 198.18.0.0/15).",
    )
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("names", nargs="+", help="host names, e.g. client blue green")
    parser.add_argument("--prefix", default="mp-", help="namespace prefix (default mp-)")
    args = parser.parse_args(argv)
    network = HostNetwork(args.names, args.prefix)
    try:
        if args.action == "down":
            network.down()
            print(f"removed hosts {', '.join(network.netns(n) for n in args.names)}")
            return 0
        network.up()
    except HostNetworkError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    print(f"bridge {network.bridge} {network.gateway}/24 (this namespace: the gateway)")
    for host in network.hosts.values():
        print(f"host {host.name:<10} {host.netns:<16} {host.address}")
    print(f"try: ip netns exec {network.netns(args.names[0])} ping -c1 {network.gateway}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
