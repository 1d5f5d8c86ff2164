"""translate_proxy: scoping to declared backends, unknown proxies, gateways, inputs."""

from __future__ import annotations

from meshplane.model import Kind, ResourceKey
from meshplane.translate import MeshView, ProxyTarget, translate_proxy
from tests.test_translate_support import (
    MeshBuilder,
    client_node,
    dns,
    http_route,
    listener,
    rich_mesh,
)


def chain_mesh(size: int) -> MeshBuilder:
    """``size`` nodes ``n<i>``, each providing ``svc-<i>`` and calling ``svc-<i+1>``."""
    mesh = MeshBuilder("big")
    for i in range(size):
        mesh.node(
            f"n{i}",
            client_node(
                f"svc-{(i + 1) % size}",
                listeners=[listener(8080)],
                serviceDiscovery=dns(f"n{i}.local"),
            ),
        )
        mesh.service(f"svc-{i}", node=f"n{i}")
    return mesh


def _shape(resources: object) -> list[int]:
    return [
        len(getattr(resources, kind))
        for kind in ("clusters", "endpoints", "listeners", "routes", "secrets")
    ]


def test_a_node_gets_only_its_backends_whatever_the_mesh_size() -> None:
    small = chain_mesh(10).translate("n0")
    large = chain_mesh(1000).translate("n0")
    assert _shape(small) == _shape(large) == [2, 0, 2, 2, 0]
    assert [m.SerializeToString(deterministic=True) for m in small.all()] == [
        m.SerializeToString(deterministic=True) for m in large.all()
    ]


def test_all_is_in_make_before_break_order() -> None:
    resources = rich_mesh().translate("front")
    kinds = [type(m).__name__ for m in resources.all()]
    order = ["Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"]
    assert kinds == sorted(kinds, key=order.index)
    assert not resources.empty


def test_translation_is_deterministic() -> None:
    first = rich_mesh().translate("front").all()
    second = rich_mesh().translate("front").all()
    assert [m.SerializeToString(deterministic=True) for m in first] == [
        m.SerializeToString(deterministic=True) for m in second
    ]


def test_unknown_proxies_get_nothing_and_wait() -> None:
    view = rich_mesh().view()
    for target in (
        ProxyTarget("demo", Kind.VIRTUAL_NODE, "nobody"),
        ProxyTarget("other-mesh", Kind.VIRTUAL_NODE, "front"),
        ProxyTarget("demo", Kind.VIRTUAL_SERVICE, "web.local"),
    ):
        resources = translate_proxy(view, target)
        assert resources.empty, target
        assert resources.problems, target
    no_mesh = MeshView.from_specs("demo", {ResourceKey(Kind.VIRTUAL_NODE, "demo", "a"): {}})
    assert translate_proxy(no_mesh, ProxyTarget("demo", Kind.VIRTUAL_NODE, "a")).empty


def test_gateways_get_their_listeners_and_unknown_ones_wait() -> None:
    view = MeshBuilder().gateway("gw", {"listeners": [listener(8080)]}).view()
    resources = translate_proxy(view, ProxyTarget("demo", Kind.VIRTUAL_GATEWAY, "gw"))
    assert [lst.name for lst in resources.listeners] == ["lds_ingress_127.0.0.1_8080"]
    assert ResourceKey(Kind.VIRTUAL_GATEWAY, "demo", "gw") in resources.inputs
    assert resources.problems == ()
    missing = translate_proxy(view, ProxyTarget("demo", Kind.VIRTUAL_GATEWAY, "nope"))
    assert missing.empty
    assert missing.problems == ("virtual gateway 'nope' does not exist",)
    assert ResourceKey(Kind.VIRTUAL_GATEWAY, "demo", "nope") in missing.inputs


def test_inputs_are_everything_read_including_what_is_missing() -> None:
    mesh = (
        MeshBuilder()
        .node("c", client_node("s", "ghost"))
        .node("p", {"listeners": [listener(80)], "serviceDiscovery": dns("p")})
        .service("s", router="r")
        .router("r", (80, "http"))
        .route("r", "x", http_route("/", ("p", 1), ("q", 1)))
        .node("unrelated", {})
    )
    resources = mesh.translate("c")
    key = ResourceKey
    assert resources.inputs == {
        key(Kind.MESH, "demo", "demo"),
        key(Kind.VIRTUAL_NODE, "demo", "c"),
        key(Kind.VIRTUAL_SERVICE, "demo", "s"),
        key(Kind.VIRTUAL_SERVICE, "demo", "ghost"),
        key(Kind.VIRTUAL_ROUTER, "demo", "r"),
        key(Kind.VIRTUAL_NODE, "demo", "p"),
        key(Kind.VIRTUAL_NODE, "demo", "q"),
    }


def test_invalid_stored_specs_are_reported() -> None:
    mesh = (
        MeshBuilder()
        .node("c", client_node("s"))
        .service("s", node="p")
        .node("p", {"listeners": [listener(80)]})
    )  # no service discovery: invalid
    resources = mesh.translate("c")
    assert any("stored spec is invalid" in p for p in resources.problems)
    assert any("'p'" in p and "does not exist" in p for p in resources.problems)
