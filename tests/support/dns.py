"""DNS helpers for tests: ``dig`` (Debian's dnsutils) as the client, and a minimal upstream
resolver (a dnspython UDP server on loopback that answers every A question with one address, or
several).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass

import dns.message
import dns.rcode
import dns.rrset

from tests.support.ports import free_port

_STATUS = re.compile(r"status: ([A-Z]+)")


@dataclass(frozen=True)
class DigResult:
    status: str
    answers: list[tuple[str, str, str]]  # (name, type, data)
    output: str

    def data(self, rdtype: str) -> list[str]:
        return sorted(d for _, t, d in self.answers if t == rdtype)


def dig(
    port: int, name: str, rdtype: str = "A", *, host: str = "127.0.0.1", tcp: bool = False
) -> DigResult:
    """Ask the server at host:port with dig; fails loudly when dig is missing."""
    binary = shutil.which("dig")
    assert binary, "dig is missing: install Debian's dnsutils (scripts/test does)"
    args = [
        binary,
        f"@{host}",
        "-p",
        str(port),
        name,
        rdtype,
        "+time=2",
        "+tries=1",
        "+noall",
        "+comments",
        "+answer",
    ]
    if tcp:
        args.append("+tcp")
    out = subprocess.run(args, capture_output=True, text=True, timeout=20).stdout
    match = _STATUS.search(out)
    answers = []
    for line in out.splitlines():
        if not line or line.startswith(";"):
            continue
        parts = line.split(None, 4)
        if len(parts) == 5:
            answers.append((parts[0], parts[3], parts[4]))
    return DigResult(match.group(1) if match else "NO-ANSWER", answers, out)


class StubUpstream:
    """An upstream resolver for forwarding tests: every A question -> ``address`` (and the
    ``more`` addresses: several records), on ``host``:``port`` (default loopback, a free
    port)."""

    def __init__(
        self,
        address: str = "198.18.0.99",
        *,
        more: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
        ttl: int = 60,
    ) -> None:
        self.address = address
        self.ttl = ttl
        self.addresses = (address, *more)
        self.port = port or free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, self.port))
        self.sock.settimeout(0.2)
        self.queries: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StubUpstream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            try:
                query = dns.message.from_wire(wire)
            except Exception:
                continue
            response = dns.message.make_response(query)
            question = query.question[0]
            self.queries.append(question.name.to_text())
            if question.rdtype == 1:
                response.answer.append(
                    dns.rrset.from_text(question.name, self.ttl, "IN", "A", *self.addresses)
                )
            else:
                response.set_rcode(dns.rcode.NOERROR)
            self.sock.sendto(response.to_wire(), peer)
