"""``meshplane envoy --capture``: a sidecar that owns its host's traffic, App Mesh style.

:func:`run_captured` does, in order:

1. checks that it can (root, iptables present and permitted) before starting anything;
2. starts Envoy as the ignored uid (``APPMESH_IGNORE_UID``, 1337) and gid, so the capture rules
   never send Envoy's own connections — to the control plane, to upstreams, to the local
   application — back to itself; the bootstrap's node metadata says the proxy captures;
3. waits until Envoy is live and its captured listeners are bound (bounded), so that no
   connection is redirected to a port nobody listens on;
4. installs the rules (:func:`meshplane.proxy.iptables.enable`; the application ports default
   to the destination ports of the inbound listener Envoy received);
5. runs until Envoy exits or the runner gets SIGTERM/SIGINT (forwarded to Envoy), then removes
   the rules — also when Envoy crashed or was killed.

If the runner itself is killed with SIGKILL it cannot clean up: Envoy gets SIGTERM from the
kernel (parent-death signal) and exits, and the rules stay.  Connections are then redirected to
ports nobody listens on and are refused at once (they do not hang).  Recovery:
``meshplane proxy-init disable`` in the namespace, or starting ``meshplane envoy --capture``
again (it replaces the rules and carries on).

Called by the ``meshplane envoy`` CLI command.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from meshplane.errors import MeshplaneError
from meshplane.proxy import iptables
from meshplane.proxy.capture import CaptureSettings
from meshplane.proxy.runner import EnvoyOptions, EnvoyStartError, prepare


class CaptureRunError(MeshplaneError):
    """The captured sidecar could not be started (nothing was installed)."""


def _as_envoy_user(uid: int, gid: int) -> Callable[[], None]:
    def drop() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        if sys.platform == "linux":  # after setuid: a change of credentials clears it
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return drop


def _admin_get(address: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return 0, ""


def captured_ports(config_dump: str, ingress_port: int) -> tuple[list[int], bool]:
    """The destination ports of the inbound listener, and whether the egress listener is
    there too, from Envoy's ``/config_dump?resource=dynamic_listeners``."""
    ports: list[int] = []
    egress = False
    for item in json.loads(config_dump).get("configs", []):
        listener = item.get("active_state", {}).get("listener", {})
        name = listener.get("name", "")
        if name == f"lds_ingress_0.0.0.0_{ingress_port}":
            for chain in listener.get("filter_chains", []):
                port = chain.get("filter_chain_match", {}).get("destination_port")
                if port is not None and int(port) not in ports:
                    ports.append(int(port))
        elif name.startswith("lds_egress_0.0.0.0_"):
            egress = True
    return ports, egress


def _wait_captured(
    popen: subprocess.Popen[bytes], options: EnvoyOptions, run_dir: str, timeout: float
) -> list[int]:
    """Wait until Envoy is live with its captured listeners; their ingress ports."""
    deadline = time.monotonic() + timeout
    ingress = options.bootstrap.ingress_port
    address = ""
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise EnvoyStartError(f"Envoy exited with {popen.returncode} before it was ready")
        if not address:
            try:
                with open(os.path.join(run_dir, "admin-address.txt")) as handle:
                    address = handle.read().strip()
            except FileNotFoundError:
                pass
        if address and _admin_get(address, "/ready")[0] == 200:
            status, dump = _admin_get(address, "/config_dump?resource=dynamic_listeners")
            if status == 200:
                ports, egress = captured_ports(dump, ingress)
                if egress:
                    return ports
        time.sleep(0.1)
    raise EnvoyStartError(
        f"Envoy had no captured listeners after {timeout:.0f}s (is the control plane "
        "reachable, and does the virtual node exist?); no capture rule was installed"
    )


def _stderr(message: str) -> None:
    print(f"meshplane envoy: {message}", file=sys.stderr, flush=True)


def run_captured(
    options: EnvoyOptions,
    settings: CaptureSettings,
    ready_timeout: float,
    say: Callable[[str], None] = _stderr,
) -> int:
    """Run a capturing sidecar in the foreground (see the module docstring); Envoy's exit code."""
    if os.geteuid() != 0:
        raise CaptureRunError(
            "--capture needs root: it installs iptables rules and runs Envoy "
            f"as uid {settings.ignore_uid}"
        )
    if settings.ignore_uid is None:
        raise CaptureRunError("--capture runs Envoy as the ignored uid: set --ignore-uid")
    iptables.preflight(settings.families())
    uid = settings.ignore_uid
    gid = settings.ignore_gid if settings.ignore_gid is not None else uid
    bootstrap = replace(
        options.bootstrap,
        capture=True,
        ingress_port=settings.ingress_port,
        egress_port=settings.egress_port,
    )
    options = replace(options, bootstrap=bootstrap)
    command, run_dir, owned = prepare(options)
    for path in (run_dir, run_dir / "bootstrap.json"):
        os.chown(path, uid, gid)
    popen = subprocess.Popen(command, preexec_fn=_as_envoy_user(uid, gid))
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if popen.poll() is None:
            popen.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    installed = False
    try:
        ports = _wait_captured(popen, options, str(run_dir), ready_timeout)
        if not settings.app_ports and ports:
            settings = replace(settings, app_ports=tuple(ports))
        if not stopping and popen.poll() is None:
            change = iptables.enable(settings)
            installed = True
            say(
                "capture rules "
                + ", ".join(f"{f} {a}" for f, a in change.actions.items())
                + f": inbound ports {','.join(map(str, settings.app_ports)) or 'none'} -> "
                f"{settings.ingress_port}, outbound -> {settings.egress_port}, uid {uid} ignored"
            )
        code = popen.wait()
    except EnvoyStartError:
        if popen.poll() is None:
            popen.terminate()
            popen.wait()
        raise
    finally:
        if installed:
            iptables.disable()
            say("capture rules removed")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if owned:
            shutil.rmtree(run_dir, ignore_errors=True)
    return 128 - code if code < 0 else code
