"""Translation for captured sidecars: one inbound and one outbound listener, App Mesh names,
original destination recovered; Envoy 1.40 accepts the result."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from meshplane.model import Kind
from meshplane.translate import MeshSecurity, ProxyIdentity, ProxyOptions, translate_proxy
from meshplane.translate.capture import HTTP_INSPECTOR, ORIGINAL_DST
from meshplane.translate.options import InvalidNodeMetadataError
from meshplane.translate.tls import TLS_INSPECTOR
from tests.support.translate import envoy_validate, rich_mesh, static_bootstrap

CAPTURED = ProxyOptions(address="0.0.0.0", egress_address="0.0.0.0", capture=True)


def _chains(listener: object) -> dict[str, object]:
    return {chain.name: chain for chain in listener.filter_chains}  # type: ignore[attr-defined]


@pytest.mark.parametrize("egress", ["ALLOW_ALL", "DROP_ALL"])
def test_captured_consumer_gets_one_inbound_and_one_outbound_listener(
    egress: str, tmp_path: Path
) -> None:
    mesh = rich_mesh(egress)
    explicit = mesh.translate("front")
    captured = mesh.translate("front", CAPTURED)
    assert [lst.name for lst in captured.listeners] == [
        "lds_ingress_0.0.0.0_15000",
        "lds_egress_0.0.0.0_15001",
    ]
    inbound, outbound = captured.listeners
    assert [f.name for f in inbound.listener_filters] == [ORIGINAL_DST]
    # one chain per virtual node listener, matched on its port, holding what the explicit
    # listener holds (timeouts, connection manager, TCP proxy)
    by_port = {c.filter_chain_match.destination_port.value: c for c in inbound.filter_chains}
    assert sorted(by_port) == [8080, 8081, 8082, 8083]
    for listener in explicit.listeners:
        if not listener.name.startswith("lds_ingress_"):
            continue
        port = listener.address.socket_address.port_value
        assert by_port[port].filters == listener.filter_chains[0].filters
    assert [f.name for f in outbound.listener_filters] == [ORIGINAL_DST, HTTP_INSPECTOR]
    assert outbound.continue_on_listener_filters_timeout
    chains = _chains(outbound)
    assert list(chains["http"].filter_chain_match.application_protocols) == [  # type: ignore[attr-defined]
        "http/1.0",
        "http/1.1",
        "h2c",
    ]
    tcp = [c for name, c in chains.items() if name.startswith("tcp_")]
    assert tcp, "the TCP backends are matched by port"
    # the same route table and clusters as the explicit sidecar
    assert {r.name for r in captured.routes} == {r.name for r in explicit.routes}
    passthrough = "cds_egress_demo_mesh-passthrough"
    names = {c.name for c in captured.clusters}
    assert names - {c.name for c in explicit.clusters} == (
        {passthrough} if egress == "ALLOW_ALL" else set()
    )
    if egress == "ALLOW_ALL":
        proxy = tcp_proxy_pb2.TcpProxy()
        chains["passthrough"].filters[0].typed_config.Unpack(proxy)  # type: ignore[attr-defined]
        assert proxy.cluster == passthrough
    else:
        assert "passthrough" not in chains
    result = envoy_validate(static_bootstrap(captured), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deprecated" not in (result.stdout + result.stderr).lower()


def test_captured_provider_keeps_mesh_mtls_on_its_chains(tmp_path: Path) -> None:
    mesh = rich_mesh("DROP_ALL")
    target = ProxyIdentity("demo", Kind.VIRTUAL_NODE, "front")
    strict = MeshSecurity(mtls="PERMISSIVE")
    explicit = translate_proxy(mesh.view(), target, None, strict)
    captured = translate_proxy(mesh.view(), target, CAPTURED, strict)
    inbound = captured.listeners[0]
    assert [f.name for f in inbound.listener_filters] == [ORIGINAL_DST, TLS_INSPECTOR]
    names = [c.name for c in inbound.filter_chains]
    assert "http_8080_tls" in names and "http_8080_plaintext" in names
    secured = next(lst for lst in explicit.listeners if lst.name.endswith("_8080"))
    tls_chain = next(c for c in inbound.filter_chains if c.name == "http_8080_tls")
    assert tls_chain.transport_socket == secured.filter_chains[0].transport_socket
    assert tls_chain.filter_chain_match.transport_protocol == "tls"


def test_capture_metadata_is_validated() -> None:
    options = ProxyOptions.from_node_metadata(
        {"meshplane": {"capture": True, "ingress_port": 16000.0}}
    )
    assert options.capture and options.ingress_port == 16000
    assert not ProxyOptions.from_node_metadata({"meshplane": {}}).capture
    with pytest.raises(InvalidNodeMetadataError, match="capture"):
        ProxyOptions.from_node_metadata({"meshplane": {"capture": "yes"}})
    with pytest.raises(InvalidNodeMetadataError, match="ingress_port"):
        ProxyOptions.from_node_metadata({"meshplane": {"capture": True, "ingress_port": 0}})
