"""ProxyOptions: defaults, and reading node.metadata["meshplane"] as the bootstrap writes it."""

from __future__ import annotations

from typing import Any

import pytest

from meshplane.translate import InvalidNodeMetadataError, ProxyOptions


def test_defaults() -> None:
    options = ProxyOptions.from_node_metadata(None)
    assert options == ProxyOptions()
    assert (
        options.address,
        options.app_port,
        options.app_address,
        options.egress_address,
        options.egress_port,
    ) == ("127.0.0.1", None, "127.0.0.1", "127.0.0.1", 15001)
    assert ProxyOptions.from_node_metadata({"other": 1}) == ProxyOptions()
    assert options.local_app_port(8080) == 8080
    assert ProxyOptions(app_port=3000).local_app_port(8080) == 3000


def test_reads_the_bootstrap_metadata() -> None:
    metadata: dict[str, Any] = {
        "meshplane": {
            "workload_address": "127.0.0.2",
            "app_port": 9080.0,
            "egress_port": 16001.0,
            "app_address": "::1",
            "egress_address": "127.0.0.2",
            "tcp_egress_ports": {"db.local": 15432.0, "cache:6379": "16379"},
        }
    }
    options = ProxyOptions.from_node_metadata(metadata)
    assert options.address == "127.0.0.2"
    assert options.app_port == 9080 and options.egress_port == 16001
    assert options.app_address == "::1" and options.egress_address == "127.0.0.2"
    assert dict(options.tcp_egress_ports) == {"db.local": 15432, "cache:6379": 16379}
    assert options.tcp_egress_port("db.local", 5432, first=True) == 15432
    assert options.tcp_egress_port("db.local", 5433, first=False) == 5433
    assert options.tcp_egress_port("cache", 6379, first=False) == 16379
    assert (
        ProxyOptions.from_node_metadata(
            {"meshplane": {"address": "10.0.0.1", "workload_address": "10.0.0.2"}}
        ).address
        == "10.0.0.1"
    )


def test_null_means_default() -> None:
    metadata = {
        "meshplane": {
            "workload_address": None,
            "app_port": None,
            "egress_port": None,
            "app_address": None,
            "tcp_egress_ports": None,
        }
    }
    assert ProxyOptions.from_node_metadata(metadata) == ProxyOptions()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("address", "localhost"),
        ("address", 1),
        ("app_port", 0),
        ("app_port", 70000),
        ("app_port", 1.5),
        ("app_port", True),
        ("egress_port", "x"),
        ("tcp_egress_ports", [1]),
        ("tcp_egress_ports", {"a": 0}),
        ("egress_address", "999.0.0.1"),
    ],
)
def test_invalid_values_name_their_key(key: str, value: object) -> None:
    with pytest.raises(InvalidNodeMetadataError, match=key):
        ProxyOptions.from_node_metadata({"meshplane": {key: value}})
    with pytest.raises(InvalidNodeMetadataError):
        ProxyOptions.from_node_metadata({"meshplane": "not an object"})


def test_options_are_immutable_and_hashable() -> None:
    ports = {"a": 1}
    options = ProxyOptions(tcp_egress_ports=ports)
    ports["b"] = 2
    assert dict(options.tcp_egress_ports) == {"a": 1}
    assert hash(options) == hash(ProxyOptions(tcp_egress_ports={"a": 1}))
    with pytest.raises(TypeError):
        options.tcp_egress_ports["c"] = 3  # type: ignore[index]
