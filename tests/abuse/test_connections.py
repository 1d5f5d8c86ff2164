"""Connection abuse (finding 3): silent connections, slowloris heads, slow bodies, floods past
the connection limit and huge heads.  Each is closed with a clear answer (408, 431, 503) after
its timeout, and a concurrent client keeps being answered meanwhile."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.attacks import closed_by_server, hold_sockets
from tests.support.health import HealthWatch
from tests.support.server import MeshplaneServer

BOUND = 20.0  # generous: the timeouts below are 2 s


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshplaneServer]:
    srv = MeshplaneServer(
        tmp_path_factory.mktemp("abuse-conn") / "data",
        env={
            "MESHPLANE_HEADER_TIMEOUT": "2s",
            "MESHPLANE_BODY_TIMEOUT": "2s",
            "MESHPLANE_KEEP_ALIVE_TIMEOUT": "1s",
            "MESHPLANE_MAX_CONNECTIONS": "200",
        },
    ).start(timeout=120)
    try:
        yield srv
    finally:
        srv.stop()


def port(server: MeshplaneServer) -> int:
    return server.api_port


def watch(server: MeshplaneServer, *ok: int) -> HealthWatch:
    assert server.process is not None
    return HealthWatch(server.url, server.process.pid, ok_statuses=frozenset({200, *ok}))


def all_closed(socks: list[socket.socket]) -> list[bytes]:
    """What the server sent on each socket before closing it (fails if one stays open)."""
    answers = []
    deadline = time.monotonic() + BOUND
    for sock in socks:
        answer = closed_by_server(sock, max(0.1, deadline - time.monotonic()))
        sock.close()
        assert answer is not None, "the server left a connection open past its timeout"
        answers.append(answer)
    return answers


def test_silent_slowloris_and_slow_body_connections_are_closed(small: MeshplaneServer) -> None:
    stop = threading.Event()
    with watch(small) as health:
        silent = hold_sockets("127.0.0.1", port(small), 80)
        loris = hold_sockets("127.0.0.1", port(small), 40, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        slow = hold_sockets(
            "127.0.0.1",
            port(small),
            30,
            b"PUT /v20190125/meshes HTTP/1.1\r\nHost: x\r\ncontent-length: 1000\r\n\r\n{",
        )

        def drip() -> None:  # one more header line / body byte every 0.5 s, for ever
            while not stop.wait(0.5):
                for sock in loris:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X-Drip: 1\r\n")
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.sendall(b" ")

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        try:
            answers = all_closed(silent + loris + slow)
        finally:
            stop.set()
            dripper.join()
    assert not health.problems(), health.problems()
    silent_answers, loris_answers, slow_answers = answers[:80], answers[80:120], answers[120:]
    for answer in silent_answers + loris_answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"the request head did not arrive within 2 s" in answer
    for answer in slow_answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"the request body did not arrive within 2 s" in answer
    missing = httpx.get(f"{small.url}/v20190125/meshes/%7B", timeout=30)
    assert missing.status_code in (400, 404)  # nothing half-sent was created


def test_a_flood_past_the_connection_limit_is_refused_clearly(small: MeshplaneServer) -> None:
    with watch(small, 503) as health:
        flood = hold_sockets("127.0.0.1", port(small), 260)
        answers = all_closed(flood)
    assert not health.problems(), health.problems()
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    assert len(refused) >= 60, len(refused)
    assert b"open connections (the limit); try again later" in refused[0]
    assert httpx.get(f"{small.url}/healthz", timeout=30).status_code == 200
    log = small.log()
    assert "out of system resource" not in log


def test_a_huge_request_head_is_refused(small: MeshplaneServer) -> None:
    (sock,) = hold_sockets(
        "127.0.0.1",
        port(small),
        1,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    )
    answer = all_closed([sock])[0]
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_idle_keep_alive_connections_are_closed(small: MeshplaneServer) -> None:
    (sock,) = hold_sockets("127.0.0.1", port(small), 1, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = all_closed([sock])[0]
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]  # answered, then closed when idle


async def test_accept_errors_are_logged_at_most_every_few_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A descriptor-exhausting flood makes the loop fail accept() once per attempt; the log
    says so once per interval, with the count, instead of once per attempt."""
    import asyncio
    import errno

    from meshplane.server.http import quiet_accept_errors

    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    quiet_accept_errors(loop, every=60.0)
    try:
        with caplog.at_level("ERROR", logger="meshplane"):
            for _ in range(1000):
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                    }
                )
        lines = [r for r in caplog.records if "cannot accept connections" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert "Too many open files" in lines[0].getMessage()
    finally:
        loop.set_exception_handler(previous)
