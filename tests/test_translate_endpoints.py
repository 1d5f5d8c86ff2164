"""Cloud Map instances -> a ClusterLoadAssignment: the attribute filter, health, the instance
port or the listener port, and ipPreference as App Mesh applied it."""

from __future__ import annotations

import pytest

from meshplane.store.registry import Instance
from meshplane.translate.endpoints import CloudMapTarget, assignment


def instance(name: str, health: str = "HEALTHY", **attributes: str) -> Instance:
    return Instance(name, "srv-1", attributes, health, 1)


def target(preference: str = "IPv4_PREFERRED", **attributes: str) -> CloudMapTarget:
    return CloudMapTarget(
        "cds_egress_m_n_http_80", "ns", "svc", tuple(sorted(attributes.items())), preference, 80
    )


def endpoints(cla: object) -> list[tuple[str, int, str]]:
    return [
        (
            e.endpoint.address.socket_address.address,
            e.endpoint.address.socket_address.port_value,
            e.endpoint.hostname,
        )
        for group in cla.endpoints  # type: ignore[attr-defined]
        for e in group.lb_endpoints
    ]


def test_filter_health_and_ports() -> None:
    found = [
        instance("a", AWS_INSTANCE_IPV4="198.18.0.1", version="blue"),
        instance("b", AWS_INSTANCE_IPV4="198.18.0.2", AWS_INSTANCE_PORT="9090", version="blue"),
        instance("c", AWS_INSTANCE_IPV4="198.18.0.3", version="red"),
        instance("d", "UNHEALTHY", AWS_INSTANCE_IPV4="198.18.0.4", version="blue"),
        instance("e", "UNKNOWN", AWS_INSTANCE_IPV4="198.18.0.5", version="blue"),
        instance("f", version="blue"),  # no address at all
    ]
    cla = assignment(target(version="blue"), found)
    assert cla.cluster_name == "cds_egress_m_n_http_80"
    assert endpoints(cla) == [
        ("198.18.0.1", 80, "a"),
        ("198.18.0.2", 9090, "b"),
        ("198.18.0.5", 80, "e"),
    ]
    assert endpoints(assignment(target(version="green"), found)) == []


@pytest.mark.parametrize(
    ("preference", "expected"),
    [
        ("IPv4_PREFERRED", ["198.18.0.1", "198.18.0.2", "2001:db8::2"]),
        ("IPv6_PREFERRED", ["198.18.0.2", "2001:db8::1", "2001:db8::2"]),
        ("IPv4_ONLY", ["198.18.0.1", "198.18.0.2"]),
        ("IPv6_ONLY", ["2001:db8::1", "2001:db8::2"]),
    ],
)
def test_ip_preference(preference: str, expected: list[str]) -> None:
    found = [
        instance("dual", AWS_INSTANCE_IPV4="198.18.0.1", AWS_INSTANCE_IPV6="2001:db8::1"),
        instance("v4", AWS_INSTANCE_IPV4="198.18.0.2"),
        instance("v6", AWS_INSTANCE_IPV6="2001:db8::2"),
    ]
    assert sorted(a for a, _, _ in endpoints(assignment(target(preference), found))) == expected
