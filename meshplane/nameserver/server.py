"""The mesh DNS server: dnspython messages over an asyncio UDP and TCP server.

Each query is parsed with ``dns.message.from_wire`` and answered from
:class:`~meshplane.service.dns_answers.Answers`; a name that is not the mesh's is forwarded to
the upstream resolvers (``--dns-upstream``; SERVFAIL when none answers in time) or REFUSED when
forwarding is off.  Nothing a client sends raises out of here: a packet that does not parse gets
FORMERR (when it has at least a message id to answer to; otherwise it is dropped), an opcode
other than QUERY gets NOTIMP, a question count other than one FORMERR, a non-IN class REFUSED.
Bounds: UDP answers are truncated (TC) to the client's EDNS size (512 without EDNS); a TCP
connection carries at most 100 queries, waits at most 10 s for each, and at most 256 TCP
connections are open at once; at most 256 forwarded queries are in flight.
Built and started by ``meshplane.server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from prometheus_client import CollectorRegistry, Counter

from meshplane.service.dns_answers import ZONE_TTL, Answer, Answers

log = logging.getLogger(__name__)

MAX_TCP_CONNECTIONS = 256
MAX_TCP_QUERIES = 100
TCP_IDLE_SECONDS = 10.0
MAX_FORWARDS = 256
FORWARD_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int = 53

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """``10.0.0.2``, ``10.0.0.2:5353`` or ``[::1]:5353``."""
        value = text.strip()
        if value.startswith("["):
            host, _, rest = value[1:].partition("]")
            return cls(host, int(rest[1:]) if rest.startswith(":") else 53)
        if value.count(":") == 1:
            host, _, port = value.partition(":")
            return cls(host, int(port))
        return cls(value)


def resolv_conf_upstreams(path: str = "/etc/resolv.conf") -> list[Upstream]:
    """The nameservers of the host's resolv.conf."""
    found = []
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                found.append(Upstream(parts[1]))
    return found


def formerr_for(wire: bytes) -> bytes | None:
    """A FORMERR answer to a packet that does not parse (None: no id to answer to)."""
    if len(wire) < 2:
        return None
    flags = dns.flags.QR | (dns.rcode.FORMERR & 0xF)
    return wire[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


class DnsServer:
    """Serves the mesh's names on one address, over UDP and TCP."""

    def __init__(
        self,
        answers: Answers,
        *,
        upstreams: Sequence[Upstream] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.answers = answers
        self.upstreams = list(upstreams)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_open = 0
        self._forwards = asyncio.Semaphore(MAX_FORWARDS)
        self.port = 0
        registry = registry if registry is not None else CollectorRegistry()
        self._queries = Counter(
            "meshplane_dns_queries",
            "DNS queries answered, by outcome",
            ["outcome"],
            registry=registry,
        )

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port)
        )
        self._udp = transport
        bound = int(transport.get_extra_info("sockname")[1])
        self._tcp = await asyncio.start_server(self._serve_tcp, host, bound)
        self.port = bound
        return bound

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2)
            self._tcp = None

    # --- one query ----------------------------------------------------------------------

    async def handle(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """The answer to one query's wire bytes (None: nothing can be answered)."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # any parse failure of a client's bytes is a FORMERR, never a crash
            self._queries.labels("formerr").inc()
            return formerr_for(wire)
        try:
            response = await self._respond(query)
            size = 65535 if tcp else max(512, query.payload if query.edns >= 0 else 512)
            return response.to_wire(max_size=size)
        except dns.exception.TooBig:
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC
            return response.to_wire()
        except Exception:
            log.exception("DNS query failed")
            self._queries.labels("servfail").inc()
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()

    async def _respond(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            self._queries.labels("notimp").inc()
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            self._queries.labels("formerr").inc()
            return response
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            self._queries.labels("refused").inc()
            return response
        rdtype = dns.rdatatype.to_text(question.rdtype)
        answer = self.answers.resolve(question.name.to_text(), rdtype)
        if answer.rcode == "FORWARD":
            return await self._forward(query, response)
        self._queries.labels(answer.rcode.lower()).inc()
        fill(response, question.name, answer)
        response.flags |= dns.flags.AA
        return response

    async def _forward(
        self, query: dns.message.Message, response: dns.message.Message
    ) -> dns.message.Message:
        if not self.upstreams:
            response.set_rcode(dns.rcode.REFUSED)
            self._queries.labels("refused").inc()
            return response
        async with self._forwards:
            for upstream in self.upstreams:
                try:
                    answer = await dns.asyncquery.udp(
                        query, upstream.host, timeout=FORWARD_TIMEOUT, port=upstream.port
                    )
                    if answer.flags & dns.flags.TC:
                        answer = await dns.asyncquery.tcp(
                            query, upstream.host, timeout=FORWARD_TIMEOUT, port=upstream.port
                        )
                except (dns.exception.DNSException, OSError, ValueError):
                    continue
                answer.id = query.id
                self._queries.labels("forwarded").inc()
                return answer
        response.set_rcode(dns.rcode.SERVFAIL)
        self._queries.labels("servfail").inc()
        return response

    # --- TCP ----------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_open >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._tcp_open += 1
        try:
            for _ in range(MAX_TCP_QUERIES):
                header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
                (length,) = struct.unpack("!H", header)
                wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_SECONDS)
                answer = await self.handle(wire, tcp=True)
                if answer is None:
                    break
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tcp_open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        task = asyncio.ensure_future(self._answer(data, addr))
        task.add_done_callback(_ignore)

    async def _answer(self, data: bytes, addr: tuple[str | object, int]) -> None:
        answer = await self.server.handle(data, tcp=False)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP errors of earlier answers
        log.debug("DNS UDP error: %s", exc)


def _ignore(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("DNS answer failed: %s", task.exception())


def fill(response: dns.message.Message, qname: dns.name.Name, answer: Answer) -> None:
    """Put an :class:`Answer` into a response message."""
    if answer.rcode == "NXDOMAIN":
        response.set_rcode(dns.rcode.NXDOMAIN)
    for rdtype, ttl, text in answer.records:
        rrset = response.find_rrset(
            response.answer,
            qname,
            dns.rdataclass.IN,
            dns.rdatatype.from_text(rdtype),
            create=True,
        )
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text), ttl)
    for name, rdtype, ttl, text in answer.additional:
        rrset = response.find_rrset(
            response.additional,
            dns.name.from_text(name),
            dns.rdataclass.IN,
            dns.rdatatype.from_text(rdtype),
            create=True,
        )
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text), ttl)
    if not answer.records and answer.zone:
        zone = dns.name.from_text(answer.zone)
        soa = dns.rrset.from_text(
            zone,
            ZONE_TTL,
            "IN",
            "SOA",
            f"ns.{zone.to_text()} hostmaster.{zone.to_text()} 1 60 60 86400 {ZONE_TTL}",
        )
        response.authority.append(soa)
