"""meshplane proxy-init in real network namespaces with the real iptables (nf_tables).

Every test makes its own namespace (named after the pid) and removes it; no rule ever goes
into the machine's own namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from meshplane.proxy.capture import CREATED_MARK_CHAIN
from tests.support.hosts import namespace

MESHPLANE = [sys.executable, "-c", "from meshplane.cli.main import main; main()"]


def run(
    ns: str, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if not k.startswith("APPMESH_")} | (env or {})
    return subprocess.run(
        ["ip", "netns", "exec", ns, *prefix, *MESHPLANE, "proxy-init", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def saved(ns: str, tool: str = "iptables-save") -> str:
    """``iptables-save`` without its timestamped comment lines."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, tool], capture_output=True, text=True, check=True
    ).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith("#"))


def rules(ns: str, tool: str = "iptables") -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, tool, "-t", "nat", "-S"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.splitlines()


def test_enable_twice_then_disable_leaves_iptables_save_exactly_as_before() -> None:
    with namespace() as ns:
        before, before6 = saved(ns), saved(ns, "ip6tables-save")
        first = run(ns, "enable", "--app-ports", "8080,8443", "--ipv6", "-o", "json")
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["actions"] == {"ipv4": "installed", "ipv6": "installed"}
        installed = saved(ns)
        second = run(ns, "enable", "--app-ports", "8080,8443", "--ipv6", "-o", "json")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["actions"] == {"ipv4": "unchanged", "ipv6": "unchanged"}
        assert saved(ns) == installed
        # App Mesh's exact rules, in their own chains
        assert rules(ns) == [
            "-P PREROUTING ACCEPT",
            "-P INPUT ACCEPT",
            "-P OUTPUT ACCEPT",
            "-P POSTROUTING ACCEPT",
            f"-N {CREATED_MARK_CHAIN}",
            "-N APPMESH_EGRESS",
            "-N APPMESH_INGRESS",
            "-A PREROUTING -p tcp -m addrtype ! --src-type LOCAL -j APPMESH_INGRESS",
            "-A OUTPUT -p tcp -m addrtype ! --dst-type LOCAL -j APPMESH_EGRESS",
            "-A APPMESH_EGRESS -m owner --uid-owner 1337 -j RETURN",
            "-A APPMESH_EGRESS -p tcp -m multiport --dports 22 -j RETURN",
            "-A APPMESH_EGRESS -p tcp -j REDIRECT --to-ports 15001",
            "-A APPMESH_INGRESS -p tcp -m multiport --dports 8080,8443 -j REDIRECT --to-ports 15000",
        ]
        assert "-A APPMESH_EGRESS -p tcp -j REDIRECT --to-ports 15001" in rules(ns, "ip6tables")
        status = run(ns, "status", "-o", "json")
        assert json.loads(status.stdout)["ipv4"]["enabled"] is True
        off = run(ns, "disable")
        assert off.returncode == 0, off.stderr
        assert "ipv4: capture rules removed" in off.stdout
        assert saved(ns) == before
        assert saved(ns, "ip6tables-save") == before6
        again = run(ns, "disable")
        assert again.returncode == 0
        assert "none installed, nothing to remove" in again.stdout
        assert "disabled" in run(ns, "status").stdout


def test_existing_rules_of_others_are_left_alone_and_restored_exactly() -> None:
    with namespace() as ns:
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                "198.18.0.0/15",
                "-j",
                "MASQUERADE",
            ],
            check=True,
        )
        before = saved(ns)
        assert run(ns, "enable", "--app-ports", "9080").returncode == 0
        assert CREATED_MARK_CHAIN not in saved(ns)  # the table was there before
        assert run(ns, "disable").returncode == 0
        assert saved(ns) == before


def test_settings_from_appmesh_variables_and_ecs_properties(tmp_path: object) -> None:
    with namespace() as ns:
        env = {
            "APPMESH_APP_PORTS": "9080",
            "APPMESH_ENVOY_INGRESS_PORT": "16000",
            "APPMESH_ENVOY_EGRESS_PORT": "16001",
            "APPMESH_IGNORE_UID": "1500",
            "APPMESH_IGNORE_GID": "1501",
            "APPMESH_EGRESS_IGNORED_IP": "169.254.169.254,169.254.170.2",
            "APPMESH_EGRESS_IGNORED_PORTS": "5432",
        }
        done = run(ns, "enable", env=env)
        assert done.returncode == 0, done.stderr
        got = rules(ns)
        assert "-A APPMESH_EGRESS -m owner --uid-owner 1500 -j RETURN" in got
        assert "-A APPMESH_EGRESS -m owner --gid-owner 1501 -j RETURN" in got
        assert "-A APPMESH_EGRESS -p tcp -m multiport --dports 5432,22 -j RETURN" in got
        assert "-A APPMESH_EGRESS -d 169.254.170.2/32 -p tcp -j RETURN" in got
        assert "-A APPMESH_EGRESS -p tcp -j REDIRECT --to-ports 16001" in got
        assert (
            "-A APPMESH_INGRESS -p tcp -m multiport --dports 9080 -j REDIRECT --to-ports 16000"
            in got
        )
        # a changed setting replaces the rules (no duplicates), the ECS way this time
        taskdef = {
            "family": "web",
            "proxyConfiguration": {
                "type": "APPMESH",
                "containerName": "envoy",
                "properties": [
                    {"name": "IgnoredUID", "value": "1337"},
                    {"name": "AppPorts", "value": ",".join(str(p) for p in range(9000, 9020))},
                    {"name": "ProxyIngressPort", "value": "15000"},
                    {"name": "ProxyEgressPort", "value": "15001"},
                    {"name": "EgressIgnoredPorts", "value": "3306"},
                    {"name": "EgressIgnoredIPs", "value": "169.254.169.254"},
                ],
            },
        }
        path = f"/tmp/mp-{os.getpid()}-taskdef.json"
        with open(path, "w") as handle:
            json.dump(taskdef, handle)
        try:
            done = run(ns, "enable", "--proxy-configuration", path)
        finally:
            os.unlink(path)
        assert done.returncode == 0, done.stderr
        got = rules(ns)
        # 20 app ports: no port dropped (the ECS plugin stops at 15)
        ingress = [r for r in got if r.startswith("-A APPMESH_INGRESS")]
        assert ingress == [
            "-A APPMESH_INGRESS -p tcp -m multiport --dports "
            + ",".join(str(p) for p in range(9000, 9015))
            + " -j REDIRECT --to-ports 15000",
            "-A APPMESH_INGRESS -p tcp -m multiport --dports "
            + ",".join(str(p) for p in range(9015, 9020))
            + " -j REDIRECT --to-ports 15000",
        ]
        assert "-A APPMESH_EGRESS -m owner --uid-owner 1337 -j RETURN" in got
        assert not any("owner --uid-owner 1500" in r for r in got), got
        assert sum(r.startswith("-A OUTPUT") for r in got) == 1
        assert run(ns, "disable").returncode == 0
        assert saved(ns) == ""


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("--app-ports", "8080", "--ingress-port", "8080"), {}, "--ingress-port"),
        (
            (
                "--app-ports",
                "8080",
            ),
            {"APPMESH_ENVOY_EGRESS_PORT": "8080"},
            "APPMESH_ENVOY_EGRESS_PORT",
        ),
        (("--ignore-uid", "1000", "--app-uid", "1000"), {}, "--ignore-uid"),
        (("--app-ports", "80,70000"), {}, "--app-ports"),
        ((), {"APPMESH_ENVOY_INGRESS_PORT": "0"}, "APPMESH_ENVOY_INGRESS_PORT"),
        (("--ignored-ip", "10.0.0.1,not-an-ip"), {}, "--ignored-ip"),
        (
            (),
            {"APPMESH_EGRESS_IGNORED_IP": "169.254.169.254;10.1.1.1"},
            "APPMESH_EGRESS_IGNORED_IP",
        ),
        ((), {"APPMESH_IGNORE_UID": "root"}, "APPMESH_IGNORE_UID"),
        ((), {"APPMESH_ENABLE_IPV6": "maybe"}, "APPMESH_ENABLE_IPV6"),
    ],
)
def test_conflicting_or_malformed_settings_are_refused_before_any_rule(
    args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    with namespace() as ns:
        before = saved(ns)
        done = run(ns, "enable", *args, env=env)
        assert done.returncode == 2
        assert named in done.stderr
        assert "nothing was installed" in done.stderr
        assert "Traceback" not in done.stderr
        assert saved(ns) == before


def test_bad_proxy_configuration_files_are_refused(tmp_path: object) -> None:
    cases = {
        "huge": b'{"properties": [' + b'{"name": "AppPorts", "value": "80"},' * 1_800_000 + b"{}]}",
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "malformed": b'{"proxyConfiguration": {"properties": [{"name": "AppPorts"',
        "unknown": b'{"properties": [{"name": "AppPortz", "value": "80"}]}',
    }
    with namespace() as ns:
        for label, body in cases.items():
            path = f"/tmp/mp-{os.getpid()}-{label}.json"
            with open(path, "wb") as handle:
                handle.write(body)
            try:
                done = run(ns, "enable", "--proxy-configuration", path)
            finally:
                os.unlink(path)
            assert done.returncode == 2, (label, done.stderr)
            assert path in done.stderr or "AppPortz" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
        # a never-ending stdin is cut at the size limit
        endless = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
        try:
            done = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    *MESHPLANE,
                    "proxy-init",
                    "enable",
                    "--proxy-configuration",
                    "-",
                ],
                stdin=endless.stdout,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            endless.kill()
            endless.wait()
            assert endless.stdout is not None
            endless.stdout.close()
        assert done.returncode == 2
        assert "larger than" in done.stderr
        assert saved(ns) == ""


def test_without_privileges_or_iptables_a_clear_error_and_nothing_installed() -> None:
    with namespace() as ns:
        unprivileged = run(
            ns,
            "enable",
            "--app-ports",
            "8080",
            prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"),
        )
        assert unprivileged.returncode == 1
        assert "need root" in unprivileged.stderr
        assert saved(ns) == ""
        no_path = ("/usr/bin/env", "PATH=/nonexistent")
        missing = run(ns, "enable", prefix=no_path)
        assert missing.returncode == 1
        assert "iptables" in missing.stderr and "not on PATH" in missing.stderr
        assert saved(ns) == ""
        assert run(ns, "status", prefix=no_path).returncode == 1
