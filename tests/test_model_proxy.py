"""Tier 1: the proxy contract of ``meshplane.model.proxy``: Envoy node ids -> proxy identities
and node keys, and ``node.metadata["meshplane"]`` written by the bootstrap and read back by
the control plane through one model."""

from __future__ import annotations

import pytest

from meshplane.errors import BadRequestError
from meshplane.model.kinds import Kind
from meshplane.model.proxy import (
    InvalidNodeIdError,
    InvalidNodeMetadataError,
    NodeMetadata,
    ProxyIdentity,
    node_key,
    parse_node_id,
)
from meshplane.proxy import BootstrapOptions, build_bootstrap
from meshplane.translate import ProxyOptions


@pytest.mark.parametrize(
    ("node_id", "expected"),
    [
        ("mesh/m/virtualNode/web", ProxyIdentity("m", Kind.VIRTUAL_NODE, "web")),
        ("mesh/m/virtualGateway/gw", ProxyIdentity("m", Kind.VIRTUAL_GATEWAY, "gw")),
        (
            "arn:aws:appmesh:us-west-2:111122223333:mesh/m/virtualNode/web",
            ProxyIdentity("m", Kind.VIRTUAL_NODE, "web", mesh_owner="111122223333"),
        ),
        (
            "mesh/m@444455556666/virtualNode/web-v2.blue",
            ProxyIdentity("m", Kind.VIRTUAL_NODE, "web-v2.blue", mesh_owner="444455556666"),
        ),
        (
            "arn:aws-cn:appmesh:cn-north-1:1:mesh/m@2/virtualGateway/gw",
            ProxyIdentity("m", Kind.VIRTUAL_GATEWAY, "gw", mesh_owner="2"),
        ),
    ],
)
def test_accepted_forms(node_id: str, expected: ProxyIdentity) -> None:
    identity = parse_node_id(node_id)
    assert identity == expected
    assert node_key(node_id) == f"mesh/m/{expected.kind.value}/{expected.name}"
    assert node_key(identity) == identity.key == str(identity)


@pytest.mark.parametrize(
    "node_id",
    [
        "",
        "web",
        "mesh/m",
        "mesh/m/virtualService/svc",
        "mesh/m/virtualRouter/r/route/x",
        "mesh//virtualNode/web",
        "mesh/m/virtualNode/",
        "mesh/m/virtualNode/web/extra",
        "meshes/m/virtualNode/web",
        "arn:aws:s3:::bucket",
        "mesh/m/virtualnode/web",
    ],
)
def test_rejected_forms(node_id: str) -> None:
    with pytest.raises(InvalidNodeIdError) as caught:
        parse_node_id(node_id)
    assert isinstance(caught.value, BadRequestError)
    assert "virtualNode" in caught.value.message or "name" in caught.value.message


def test_the_bootstrap_writes_what_the_control_plane_reads() -> None:
    options = BootstrapOptions(
        resource="arn:aws:appmesh:us-east-1:111122223333:mesh/m@111122223333/virtualNode/web",
        workload_address="127.0.0.9",
        app_port=9080,
        egress_port=15101,
        admin_port=19901,
        extra_metadata={
            "admin": "127.0.0.1:19901",
            "egress_address": "127.0.0.9",
            "tcp_egress_ports": {"db.local": 15432},
            "zone": "a",
        },
    )
    node = build_bootstrap(options)["node"]
    assert parse_node_id(node["id"]) == ProxyIdentity(
        "m", Kind.VIRTUAL_NODE, "web", mesh_owner="111122223333"
    )
    read = NodeMetadata.from_node_metadata(node["metadata"])
    assert read == NodeMetadata(
        workload_address="127.0.0.9",
        app_port=9080,
        egress_port=15101,
        resource=options.resource,
        egress_address="127.0.0.9",
        tcp_egress_ports={"db.local": 15432},
        admin="127.0.0.1:19901",
        extra={"zone": "a"},
    )
    assert read.to_node_metadata() == node["metadata"]  # one model both ways
    translated = ProxyOptions.from_node_metadata(node["metadata"])
    assert (translated.address, translated.app_port, translated.egress_port) == (
        "127.0.0.9",
        9080,
        15101,
    )
    assert dict(translated.tcp_egress_ports) == {"db.local": 15432}


def test_node_metadata_absent_or_bad() -> None:
    assert NodeMetadata.from_node_metadata(None) is None
    assert NodeMetadata.from_node_metadata({"other": {}}) is None
    assert NodeMetadata.from_node_metadata({"meshplane": {}}) == NodeMetadata()
    for section, key in (
        ({"admin": 9901}, "admin"),
        ({"resource": ["x"]}, "resource"),
        ({"egress_port": 0}, "egress_port"),
        ({"workload_address": "nowhere"}, "address"),
    ):
        with pytest.raises(InvalidNodeMetadataError, match=f"node.metadata.meshplane.{key}"):
            NodeMetadata.from_node_metadata({"meshplane": section})
