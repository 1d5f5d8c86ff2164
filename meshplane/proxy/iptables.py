"""Installing, listing and removing the capture rules with the system's iptables.

Uses Debian's ``iptables`` package (``iptables``/``iptables-restore`` and the ``ip6tables``
pair, nf_tables backend): the tools every host and container image already has, which App
Mesh's own scripts and the ECS CNI plugin drive too.  Each change is one
``iptables-restore --noflush`` batch per family, which the kernel commits as one transaction:
a change is applied whole or not at all, and the rest of the table is never touched.

- :func:`enable`: makes our chains hold exactly the wanted rules (nothing is done when they
  already do: enabling twice is enabling once); when IPv6 fails after IPv4 succeeded, IPv4 is
  removed again.
- :func:`disable`: removes our jumps and chains from both families; when enable had to create
  the nat table, the table goes too (``nft delete table``), so ``iptables-save`` is exactly as
  before enable.
- :func:`status`: what is installed now.

Everything runs in the caller's network namespace.  Called by ``meshplane proxy-init``,
``meshplane envoy --capture`` and tests.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from meshplane.errors import MeshplaneError
from meshplane.proxy.capture import (
    CREATED_MARK_CHAIN,
    EGRESS_CHAIN,
    INGRESS_CHAIN,
    CaptureSettings,
    ChainRules,
    Family,
    chain_rules,
)

OUR_CHAINS = (INGRESS_CHAIN, EGRESS_CHAIN, CREATED_MARK_CHAIN)
_TOOLS: dict[Family, tuple[str, str]] = {
    "ipv4": ("iptables", "iptables-restore"),
    "ipv6": ("ip6tables", "ip6tables-restore"),
}
_FAMILIES: tuple[Family, ...] = ("ipv4", "ipv6")
_NFT_FAMILY: dict[Family, str] = {"ipv4": "ip", "ipv6": "ip6"}
_TIMEOUT = 30.0


class CaptureError(MeshplaneError):
    """iptables is missing, not permitted, or refused a change (nothing was left half-done)."""


@dataclass(frozen=True, slots=True)
class FamilyState:
    """Our part of one family's nat table."""

    family: Family
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    jumps: tuple[str, ...] = ()
    table_exists: bool = False

    @property
    def installed(self) -> bool:
        return bool(self.chains) or bool(self.jumps)

    def matches(self, wanted: ChainRules) -> bool:
        ours = {k: v for k, v in self.chains.items() if k != CREATED_MARK_CHAIN}
        return ours == dict(wanted.chains) and sorted(self.jumps) == sorted(wanted.jumps)


@dataclass(frozen=True, slots=True)
class Change:
    """What :func:`enable` or :func:`disable` did, per family: ``installed``, ``replaced``,
    ``unchanged``, ``removed`` or ``absent``."""

    actions: dict[Family, str]

    @property
    def changed(self) -> bool:
        return any(a in ("installed", "replaced", "removed") for a in self.actions.values())


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CaptureError(
            f"{name} is not on PATH: install it (Debian: apt-get install iptables); "
            "no rule was changed"
        )
    return path


def _run(command: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise CaptureError(f"{command[0]} did not answer in {_TIMEOUT:.0f}s") from None
    except OSError as error:
        raise CaptureError(f"cannot run {command[0]}: {error.strerror}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit code {done.returncode}"
        if "ermission denied" in done.stderr or "must be root" in done.stderr:
            reason = "permission denied: capture rules need root (CAP_NET_ADMIN)"
        raise CaptureError(f"{' '.join(command[:3])}: {reason}; no rule was changed")
    return done.stdout


def read_state(family: Family) -> FamilyState:
    """Our chains and jumps in ``family``'s nat table as ``iptables -S`` prints them."""
    listing = _run([_tool(_TOOLS[family][0]), "-w", "-t", "nat", "-S"])
    # `iptables-save -t nat` prints an empty nat table even where none exists: ask for all
    saved = _run([_tool(_TOOLS[family][0] + "-save")])
    chains: dict[str, list[str]] = {}
    jumps: list[str] = []
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "-N" and parts[1] in OUR_CHAINS:
            chains.setdefault(parts[1], [])
        elif len(parts) >= 2 and parts[0] == "-A" and parts[1] in OUR_CHAINS:
            chains.setdefault(parts[1], []).append(line)
        elif parts and parts[0] == "-A" and parts[-1] in OUR_CHAINS:
            jumps.append(line)
    return FamilyState(
        family,
        {name: tuple(rules) for name, rules in chains.items()},
        tuple(jumps),
        table_exists="*nat" in saved.splitlines(),
    )


def _restore(family: Family, lines: list[str]) -> None:
    script = "*nat\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"
    _run([_tool(_TOOLS[family][1]), "-w", "--noflush"], stdin=script)


def _removal(state: FamilyState) -> list[str]:
    lines = ["-D" + jump[2:] for jump in state.jumps]
    lines += [f"-F {name}" for name in state.chains]
    lines += [f"-X {name}" for name in state.chains]
    return lines


def preflight(families: tuple[Family, ...]) -> dict[Family, FamilyState]:
    """Check the tools and privileges of every family before changing anything."""
    for family in families:
        for tool in _TOOLS[family]:
            _tool(tool)
    return {family: read_state(family) for family in families}


def enable(settings: CaptureSettings) -> Change:
    """Install ``settings``' rules (idempotent; all families or none)."""
    families = settings.families()
    states = preflight(families)
    actions: dict[Family, str] = {}
    done: list[Family] = []
    try:
        for family in families:
            state = states[family]
            wanted = chain_rules(settings, family)
            if state.matches(wanted):
                actions[family] = "unchanged"
                continue
            _restore(family, _replacement(state, wanted))
            actions[family] = "replaced" if state.installed else "installed"
            done.append(family)
        for family in _FAMILIES:  # a family no longer wanted (IPv6 turned off) is cleared
            wanted_here = family in families or not shutil.which(_TOOLS[family][0])
            if not wanted_here and _remove(read_state(family)):
                actions[family] = "removed"
    except CaptureError:
        for family in done:
            if actions[family] == "installed":
                _remove(read_state(family))
        raise
    return Change(actions)


def _replacement(state: FamilyState, wanted: ChainRules) -> list[str]:
    """One batch that turns ``state`` into ``wanted``: old jumps out, our chains created or
    flushed (``:CHAIN`` does both), chains no longer wanted deleted, rules and jumps in."""
    stale = [n for n in state.chains if n not in wanted.chains and n != CREATED_MARK_CHAIN]
    lines = ["-D" + jump[2:] for jump in state.jumps]
    if not state.table_exists:
        lines.append(f":{CREATED_MARK_CHAIN} - [0:0]")
    lines += [f":{name} - [0:0]" for name in wanted.chains]
    lines += [f"-F {name}" for name in stale] + [f"-X {name}" for name in stale]
    lines += [rule for rules in wanted.chains.values() for rule in rules]
    return lines + list(wanted.jumps)


def _remove(state: FamilyState) -> bool:
    if not state.installed:
        return False
    _restore(state.family, _removal(state))
    if CREATED_MARK_CHAIN in state.chains:
        _drop_table_if_empty(state.family)
    return True


def _drop_table_if_empty(family: Family) -> None:
    """Remove the nat table enable created, when nothing else is in it (nf_tables only)."""
    listing = _run([_tool(_TOOLS[family][0]), "-w", "-t", "nat", "-S"]).split("\n")
    builtin_only = all(
        line.startswith("-P ") and line.endswith(" ACCEPT") for line in listing if line
    )
    nft = shutil.which("nft")
    version = _run([_tool(_TOOLS[family][0]), "-V"])
    if builtin_only and nft is not None and "nf_tables" in version:
        _run([nft, "delete", "table", _NFT_FAMILY[family], "nat"])


def disable() -> Change:
    """Remove our rules from both families (success, saying so, when there are none)."""
    present = tuple(f for f in _FAMILIES if shutil.which(_TOOLS[f][0]))
    if "ipv4" not in present:
        _tool("iptables")
    states = preflight(present)
    return Change(
        {family: "removed" if _remove(states[family]) else "absent" for family in present}
    )


def status() -> dict[Family, FamilyState]:
    """Our chains and jumps in each family whose tools are installed."""
    present = [f for f in _FAMILIES if shutil.which(_TOOLS[f][0])]
    if not present:
        _tool("iptables")
    return {family: read_state(family) for family in present}
