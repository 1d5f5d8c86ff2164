"""Tier 1: Envoy node ids -> proxy identities and node keys."""

from __future__ import annotations

import pytest

from meshplane.errors import BadRequestError
from meshplane.model.kinds import Kind
from meshplane.xds import InvalidNodeIdError, ProxyIdentity, node_key, parse_node_id


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
