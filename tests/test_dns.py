"""The mesh DNS server of a real ``meshplane serve``, asked with ``dig``: virtual service names
-> stable VIPs (across a restart), Cloud Map DNS names -> instance addresses (A, SRV), other
names forwarded (or REFUSED), malformed and hostile packets answered with DNS errors."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import dns.message
import dns.rcode
import pytest

from tests.support.dns import DigResult, StubUpstream, dig
from tests.support.server import MeshplaneServer

T = TypeVar("T")
VIP_RANGE = ipaddress.ip_network("240.240.0.0/16")


def eventually(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture(scope="module")
def upstream() -> Iterator[StubUpstream]:
    with StubUpstream() as stub:
        yield stub


@pytest.fixture(scope="module")
def dns_server(
    tmp_path_factory: pytest.TempPathFactory, upstream: StubUpstream
) -> Iterator[MeshplaneServer]:
    srv = MeshplaneServer(
        tmp_path_factory.mktemp("dns") / "data",
        extra_args=["--dns-upstream", f"127.0.0.1:{upstream.port}"],
    ).start()
    try:
        yield srv
    finally:
        srv.stop()


def _has_vip(result: DigResult) -> bool:
    return any(ipaddress.ip_address(a) in VIP_RANGE for a in result.data("A"))


def _mesh_with_service(server: MeshplaneServer) -> tuple[str, str]:
    appmesh = server.boto3()
    mesh = f"m-{uuid.uuid4().hex[:6]}"
    service = f"orders.{mesh}.local"
    appmesh.create_mesh(meshName=mesh)
    appmesh.create_virtual_node(
        meshName=mesh,
        virtualNodeName="orders",
        spec={
            "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "127.0.0.2"}},
        },
    )
    appmesh.create_virtual_service(
        meshName=mesh,
        virtualServiceName=service,
        spec={"provider": {"virtualNode": {"virtualNodeName": "orders"}}},
    )
    return mesh, service


def test_virtual_service_names_answer_with_stable_vips(dns_server: MeshplaneServer) -> None:
    mesh, service = _mesh_with_service(dns_server)
    found = eventually(lambda: dig(dns_server.dns_port, service), _has_vip)
    assert found.status == "NOERROR", found.output
    [vip] = found.data("A")
    assert ipaddress.ip_address(vip) in VIP_RANGE
    # case does not matter, a trailing dot neither; TCP answers the same
    assert dig(dns_server.dns_port, service.upper() + ".").data("A") == [vip]
    assert dig(dns_server.dns_port, service, tcp=True).data("A") == [vip]
    # no IPv6 VIP: an empty NOERROR answer, never NXDOMAIN
    aaaa = dig(dns_server.dns_port, service, "AAAA")
    assert (aaaa.status, aaaa.answers) == ("NOERROR", []), aaaa.output
    # a second service gets another address
    appmesh = dns_server.boto3()
    other = f"billing.{mesh}.local"
    appmesh.create_virtual_service(
        meshName=mesh,
        virtualServiceName=other,
        spec={"provider": {"virtualNode": {"virtualNodeName": "orders"}}},
    )
    second = eventually(lambda: dig(dns_server.dns_port, other), _has_vip)
    assert second.data("A") != [vip]

    # stable across a restart
    dns_server.restart()
    again = eventually(lambda: dig(dns_server.dns_port, service), _has_vip)
    assert again.data("A") == [vip]

    # a deleted service's name is no longer the mesh's: forwarded (the stub upstream answers)
    appmesh.delete_virtual_service(meshName=mesh, virtualServiceName=other)
    gone = eventually(
        lambda: dig(dns_server.dns_port, other), lambda r: r.data("A") == ["198.18.0.99"]
    )
    assert gone.data("A") == ["198.18.0.99"], gone.output


def _cloud_map_service(server: MeshplaneServer, **service: Any) -> tuple[str, str, str]:
    cloudmap = server.cloudmap()
    zone = f"z{uuid.uuid4().hex[:6]}.local"
    op = cloudmap.create_private_dns_namespace(Name=zone, Vpc="vpc-1")["OperationId"]
    ns_id = cloudmap.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
    created = cloudmap.create_service(Name="web", NamespaceId=ns_id, **service)["Service"]
    return zone, ns_id, created["Id"]


def test_cloud_map_dns_names_answer_with_healthy_instances(dns_server: MeshplaneServer) -> None:
    zone, _, srv = _cloud_map_service(
        dns_server,
        DnsConfig={
            "RoutingPolicy": "MULTIVALUE",
            "DnsRecords": [{"Type": "A", "TTL": 7}, {"Type": "SRV", "TTL": 7}],
        },
        HealthCheckCustomConfig={"FailureThreshold": 1},
    )
    cloudmap = dns_server.cloudmap()
    for index, address in enumerate(("198.18.1.1", "198.18.1.2", "198.18.1.3")):
        cloudmap.register_instance(
            ServiceId=srv,
            InstanceId=f"i-{index}",
            Attributes={"AWS_INSTANCE_IPV4": address, "AWS_INSTANCE_PORT": str(9000 + index)},
        )
    cloudmap.update_instance_custom_health_status(
        ServiceId=srv, InstanceId="i-2", Status="UNHEALTHY"
    )
    name = f"web.{zone}"
    a = eventually(lambda: dig(dns_server.dns_port, name), lambda r: len(r.data("A")) == 2)
    assert a.status == "NOERROR"
    assert a.data("A") == ["198.18.1.1", "198.18.1.2"], a.output
    a_lines = [ln.split() for ln in a.output.splitlines() if ln and not ln.startswith(";")]
    assert {(parts[1], parts[3]) for parts in a_lines} == {("7", "A")}  # the service's TTL
    srv_records = dig(dns_server.dns_port, name, "SRV")
    assert srv_records.data("SRV") == [
        f"1 1 9000 i-0.web.{zone}.",
        f"1 1 9001 i-1.web.{zone}.",
    ], srv_records.output
    # the SRV targets resolve too
    assert dig(dns_server.dns_port, f"i-1.web.{zone}").data("A") == ["198.18.1.2"]
    # an unknown name inside the namespace: NXDOMAIN (not forwarded)
    assert dig(dns_server.dns_port, f"nope.{zone}").status == "NXDOMAIN"
    # deregistering takes an instance out
    cloudmap.deregister_instance(ServiceId=srv, InstanceId="i-0")
    after = eventually(
        lambda: dig(dns_server.dns_port, name), lambda r: r.data("A") == ["198.18.1.2"]
    )
    assert after.data("A") == ["198.18.1.2"], after.output


def test_weighted_routing_answers_one_instance(dns_server: MeshplaneServer) -> None:
    zone, _, srv = _cloud_map_service(
        dns_server, DnsConfig={"RoutingPolicy": "WEIGHTED", "DnsRecords": [{"Type": "A", "TTL": 3}]}
    )
    cloudmap = dns_server.cloudmap()
    for index in range(4):
        cloudmap.register_instance(
            ServiceId=srv,
            InstanceId=f"w{index}",
            Attributes={"AWS_INSTANCE_IPV4": f"198.18.2.{index + 1}"},
        )
    seen = set()
    for _ in range(12):
        result = dig(dns_server.dns_port, f"web.{zone}")
        assert len(result.data("A")) == 1, result.output
        seen.update(result.data("A"))
    assert len(seen) > 1  # one at random, not always the same


def test_other_names_are_forwarded(dns_server: MeshplaneServer, upstream: StubUpstream) -> None:
    result = dig(dns_server.dns_port, "www.example.org")
    assert (result.status, result.data("A")) == ("NOERROR", ["198.18.0.99"]), result.output
    assert "www.example.org." in upstream.queries


def _udp(port: int, payload: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def test_malformed_and_hostile_packets_get_dns_errors(dns_server: MeshplaneServer) -> None:
    port = dns_server.dns_port
    # garbage with an id: FORMERR to that id
    answer = _udp(port, b"\x12\x34" + b"\xff" * 40)
    assert answer is not None and answer[:2] == b"\x12\x34"
    assert answer[3] & 0x0F == dns.rcode.FORMERR
    # one byte: nothing to answer to
    assert _udp(port, b"\x00", timeout=0.5) is None
    # a 60 KB datagram of noise
    answer = _udp(port, b"\xab\xcd" + bytes(60_000))
    assert answer is not None and answer[:2] == b"\xab\xcd"
    # two questions: FORMERR; a non-QUERY opcode: NOTIMP
    query = dns.message.make_query("a.example.", "A")
    query.question.append(query.question[0])
    reply = dns.message.from_wire(_udp(port, query.to_wire()) or b"")
    assert reply.rcode() == dns.rcode.FORMERR
    notify = dns.message.make_query("a.example.", "A")
    notify.set_opcode(4)
    reply = dns.message.from_wire(_udp(port, notify.to_wire()) or b"")
    assert reply.rcode() == dns.rcode.NOTIMP
    # a deeply compressed-pointer loop: FORMERR
    loop = b"\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"
    answer = _udp(port, loop)
    assert answer is not None and answer[3] & 0x0F == dns.rcode.FORMERR
    # TCP: a length prefix that never gets its bytes, then a truncated stream; the server
    # closes those connections and keeps answering
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack("!H", 500) + b"\x00" * 10)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack("!H", 20) + b"\x99\x99" + b"\xff" * 18)
        length = struct.unpack("!H", sock.recv(2))[0]
        reply_wire = sock.recv(length)
        assert reply_wire[:2] == b"\x99\x99" and reply_wire[3] & 0x0F == dns.rcode.FORMERR
    assert "Traceback" not in dns_server.log()
    ok: DigResult = dig(port, "www.example.org")
    assert ok.status == "NOERROR"


def test_cli_dns_lookup_and_registry_listing(dns_server: MeshplaneServer) -> None:
    from tests.conftest import Cli

    cli = Cli(dns_server)
    _, service = _mesh_with_service(dns_server)
    vip = eventually(lambda: dig(dns_server.dns_port, service), _has_vip).data("A")[0]
    shown = cli("dns", "lookup", service)
    assert f"{service} A: NOERROR" in shown.stdout and vip in shown.stdout
    assert "why: virtual service" in shown.stdout
    other = cli("dns", "lookup", "www.example.org", "-o", "json", check=False)
    assert other.returncode == 1 and json.loads(other.stdout)["rcode"] == "FORWARD"

    zone, _, srv = _cloud_map_service(
        dns_server,
        DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "SRV", "TTL": 5}]},
    )
    dns_server.cloudmap().register_instance(
        ServiceId=srv,
        InstanceId="cli-1",
        Attributes={"AWS_INSTANCE_IPV4": "198.18.9.1", "AWS_INSTANCE_PORT": "8443", "tier": "gold"},
    )
    srv_lookup = cli("dns", "lookup", f"web.{zone}", "--type", "SRV")
    assert f"1 1 8443 cli-1.web.{zone}." in srv_lookup.stdout
    namespaces = cli("get", "namespaces").stdout
    assert zone in namespaces and "DNS_PRIVATE" in namespaces
    services = cli("get", "services", "--cloud-map-namespace", zone).stdout
    assert "web" in services and srv in services
    instances = cli("get", "instances", "--service", srv).stdout
    assert "cli-1" in instances and "198.18.9.1" in instances and "tier=gold" in instances
    described = json.loads(
        cli("describe", "instance", "cli-1", "--service", srv, "-o", "json").stdout
    )
    assert described["Attributes"]["tier"] == "gold" and described["HealthStatus"] == "UNKNOWN"
    refused = cli("delete", "instance", "cli-1", check=False)
    assert refused.returncode == 2 and "servicediscovery" in refused.stderr
