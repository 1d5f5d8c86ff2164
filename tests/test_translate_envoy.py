"""The real Envoy 1.40 accepts what the translation produces.

Each proxy of a mesh that uses every translated feature is turned into a static bootstrap
(routes inlined, Cloud Map clusters kept on EDS over ADS) and put through
``envoy --mode validate``; Envoy must accept it and must not warn about deprecated fields.
This is the test that proves the protobufs are valid Envoy configuration, beyond being
well-typed messages; the last test does the same for random meshes of the property tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from meshplane.translate import ProxyOptions
from tests.support.translate import (
    MeshBuilder,
    envoy_validate,
    rich_mesh,
    static_bootstrap,
)
from tests.test_translate_properties import meshes, valid_mesh

PROXIES = [
    "front",
    "web-v1",
    "web-v2",
    "h2-v1",
    "grpc-v1",
    "multi-v1",
    "node-v1",
    "db-v1",
    "cloud-v1",
]


def _check(resources_bootstrap: dict[str, object], tmp_path: Path) -> None:
    result = envoy_validate(resources_bootstrap, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "OK" in result.stdout, output
    assert "deprecated" not in output.lower(), output


@pytest.mark.parametrize("egress", ["ALLOW_ALL", "DROP_ALL"])
def test_envoy_accepts_the_rich_consumer(egress: str, tmp_path: Path) -> None:
    resources = rich_mesh(egress).translate("front")
    assert len(resources.listeners) >= 5 and len(resources.clusters) >= 10
    _check(static_bootstrap(resources), tmp_path)


@pytest.mark.parametrize("node", PROXIES[1:])
def test_envoy_accepts_every_provider(node: str, tmp_path: Path) -> None:
    resources = rich_mesh().translate(node)
    assert resources.listeners
    _check(static_bootstrap(resources), tmp_path)


def test_envoy_accepts_other_addresses_and_ports(tmp_path: Path) -> None:
    options = ProxyOptions(
        address="127.0.0.2",
        app_port=9999,
        app_address="127.0.0.3",
        egress_address="127.0.0.4",
        egress_port=16001,
        tcp_egress_ports={"db.local": 15432, "tcp-split.local:5433": 15433},
    )
    resources = rich_mesh().translate("front", options)
    _check(static_bootstrap(resources), tmp_path)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mesh=meshes(), address=st.sampled_from(["127.0.0.1", "0.0.0.0", "::1"]))
def test_envoy_accepts_random_meshes(mesh: MeshBuilder, address: str, tmp_path: Path) -> None:
    assume(valid_mesh(mesh))
    options = ProxyOptions(address=address, tcp_egress_ports={"s1": 15001, "s2": 81})
    for node in ("a", "b"):
        resources = mesh.translate(node, options)
        _check(static_bootstrap(resources, f"mesh/m/virtualNode/{node}"), tmp_path)
