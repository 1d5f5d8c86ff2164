"""The fault tier: the control plane killed under concurrent writers, its disk full, its
database file read-only, its clock jumping.  Each time: no acknowledged write is lost, a write
that cannot be made is refused with a clear error (never a 500), and reads keep working.

The full disk and the read-only file use a small tmpfs data directory (mounted here; the
suite runs as root in CI, as ``scripts/test`` says); the clock jumps through libfaketime
(Debian's ``faketime``, installed by ``scripts/test``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.server import MeshplaneServer

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def create(server: MeshplaneServer, name: str, client: httpx.Client | None = None) -> int:
    body = {"meshName": name, "tags": [{"key": f"k{i}", "value": "v" * 200} for i in range(20)]}
    send = client.put if client is not None else httpx.put
    try:
        response = send(f"{server.url}/v20190125/meshes", json=body, timeout=30)
    except httpx.TransportError:
        return 0  # the server went away: not acknowledged
    assert response.status_code != 500, response.text
    return response.status_code


def exists(server: MeshplaneServer, name: str) -> bool:
    answer = httpx.get(f"{server.url}/v20190125/meshes/{name}", timeout=30)
    assert answer.status_code in (200, 404), answer.text
    return answer.status_code == 200


def test_sigkill_under_concurrent_writers_loses_no_acknowledged_write(tmp_path: Path) -> None:
    server = MeshplaneServer(tmp_path / "data").start(timeout=90)
    acknowledged: list[str] = []
    lock = threading.Lock()
    try:
        for round_ in range(2):
            stop = threading.Event()

            def writer(n: int, round_: int = round_, stop: threading.Event = stop) -> None:
                with httpx.Client() as client:
                    i = 0
                    while not stop.is_set():
                        name = f"r{round_}-w{n}-{i}"
                        if create(server, name, client) == 200:
                            with lock:
                                acknowledged.append(name)
                        i += 1

            writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
            for thread in writers:
                thread.start()
            time.sleep(1.5)
            server.kill()  # SIGKILL mid-write
            stop.set()
            for thread in writers:
                thread.join(60)
            database = sqlite3.connect(tmp_path / "data" / "meshplane.db")
            try:
                assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            finally:
                database.close()
            server.start(timeout=90)
        assert len(acknowledged) > 20, "the writers barely wrote: the test proves nothing"
        lost = [name for name in acknowledged if not exists(server, name)]
        assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:5]}"
    finally:
        server.stop()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    assert mounted.returncode == 0, (
        f"cannot mount a tmpfs (the fault tier runs as root): {mounted.stderr}"
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_refuses_writes_clearly_and_loses_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "6m") as disk:
        server = MeshplaneServer(disk / "data").start(timeout=90)
        try:
            filler = disk / "filler"
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            filler.write_bytes(b"\0" * max(0, free - 400_000))
            acknowledged, refusal = [], None
            for i in range(2000):
                status = create(server, f"full-{i}")
                if status == 200:
                    acknowledged.append(f"full-{i}")
                    continue
                refusal = httpx.put(
                    f"{server.url}/v20190125/meshes", json={"meshName": "probe"}, timeout=30
                )
                break
            assert refusal is not None, "the disk never filled up"
            assert refusal.status_code == 503, refusal.text
            assert "database or disk is full" in refusal.json()["message"]
            assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
            assert all(exists(server, name) for name in acknowledged)
            filler.unlink()  # room again: writes resume without a restart
            assert create(server, "after-full") == 200
            server.restart(timeout=90)
            lost = [n for n in [*acknowledged, "after-full"] if not exists(server, n)]
            assert not lost, lost
        finally:
            server.stop()


def test_a_read_only_database_file_serves_reads_and_refuses_writes(tmp_path: Path) -> None:
    """The database file made read-only between two runs (a read-only bind mount of the
    file: root ignores file modes)."""
    data = tmp_path / "data"
    server = MeshplaneServer(data).start(timeout=90)
    try:
        assert create(server, "before") == 200
    finally:
        server.stop()
    database = str(data / "meshplane.db")
    mounts = (
        ["mount", "--bind", database, database],
        ["mount", "-o", "remount,bind,ro", database],
    )
    for command in mounts:
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}: {done.stderr} (the fault tier runs as root)"
    server = MeshplaneServer(data)
    try:
        started = True
        try:
            server.start(timeout=90)
        except RuntimeError:
            started = False
        log = server.log()
        assert "Traceback" not in log, log[-3000:]
        if not started:  # refusing to start is right too, if it says why
            assert "read-only" in log or "readonly" in log, log[-3000:]
            return
        assert exists(server, "before")
        refused = httpx.put(f"{server.url}/v20190125/meshes", json={"meshName": "x"}, timeout=30)
        assert refused.status_code == 503, refused.text
        assert "readonly" in refused.text or "read-only" in refused.text, refused.text
        assert not exists(server, "x")
        assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
    finally:
        server.stop()
        subprocess.run(["umount", "-l", database], check=False)


def test_the_clock_jumping_keeps_the_server_answering(tmp_path: Path) -> None:
    assert LIBFAKETIME.exists(), "libfaketime is missing: apt-get install faketime"
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    server = MeshplaneServer(
        tmp_path / "data",
        env={
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(offset),
            "FAKETIME_NO_CACHE": "1",
            "DONT_FAKE_MONOTONIC": "1",
        },
    ).start(timeout=90)
    try:
        assert create(server, "t0") == 200
        token = httpx.post(
            f"{server.url}/meshplane/v1/proxy-tokens",
            json={"resource": "mesh/t0/virtualNode/n", "ttlSeconds": 3600},
            timeout=30,
        )
        assert token.status_code == 200, token.text
        for jump, name in (("+2d", "t1"), ("-1d", "t2"), ("-3d", "t3"), ("+0", "t4")):
            offset.write_text(f"{jump}\n")
            time.sleep(0.2)
            assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
            assert create(server, name) == 200, jump
            assert exists(server, name)
        assert all(exists(server, n) for n in ("t0", "t1", "t2", "t3", "t4"))
        audit = httpx.get(f"{server.url}/meshplane/v1/audit", timeout=30)
        assert audit.status_code == 200, audit.text
        assert len(audit.json()["entries"]) >= 6
    finally:
        server.stop()
