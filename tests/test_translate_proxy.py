"""translate_proxy: scoping to declared backends, unknown proxies, gateways, inputs."""

from __future__ import annotations

from meshplane.model import Kind, ResourceKey
from meshplane.translate import MeshView, ProxyIdentity, ProxyOptions, translate_proxy
from meshplane.translate.resources import ProxyResources
from tests.support.translate import (
    MeshBuilder,
    client_node,
    dns,
    http_route,
    listener,
    provider_node,
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
        ProxyIdentity("demo", Kind.VIRTUAL_NODE, "nobody"),
        ProxyIdentity("other-mesh", Kind.VIRTUAL_NODE, "front"),
        ProxyIdentity("demo", Kind.VIRTUAL_SERVICE, "web.local"),
    ):
        resources = translate_proxy(view, target)
        assert resources.empty, target
        assert resources.problems, target
    no_mesh = MeshView.from_specs("demo", {ResourceKey(Kind.VIRTUAL_NODE, "demo", "a"): {}})
    assert translate_proxy(no_mesh, ProxyIdentity("demo", Kind.VIRTUAL_NODE, "a")).empty


def test_gateways_get_their_listeners_and_unknown_ones_wait() -> None:
    view = MeshBuilder().gateway("gw", {"listeners": [listener(8080)]}).view()
    resources = translate_proxy(view, ProxyIdentity("demo", Kind.VIRTUAL_GATEWAY, "gw"))
    assert [lst.name for lst in resources.listeners] == ["lds_ingress_127.0.0.1_8080"]
    assert ResourceKey(Kind.VIRTUAL_GATEWAY, "demo", "gw") in resources.inputs
    assert resources.problems == ()
    missing = translate_proxy(view, ProxyIdentity("demo", Kind.VIRTUAL_GATEWAY, "nope"))
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


def sharing_mesh() -> MeshBuilder:
    """Consumers ``c0``..``c2`` call ``color.svc`` (a router: blue/green); ``odd`` calls a
    service that does not exist as well; providers have DNS discovery."""
    mesh = MeshBuilder("share")
    for color in ("blue", "green"):
        mesh.node(color, provider_node(f"{color}.local", listener(8080)))
    mesh.router("color", (8080, "http"))
    mesh.route("color", "split", http_route("/", ("blue", 60), ("green", 40)))
    mesh.service("color.svc", router="color")
    for i in range(3):
        mesh.node(
            f"c{i}",
            client_node(
                "color.svc", listeners=[listener(9000 + i)], serviceDiscovery=dns(f"c{i}.local")
            ),
        )
    mesh.node("odd", client_node("color.svc", "missing.svc"))
    return mesh


def test_consumers_with_the_same_backends_share_their_egress_messages() -> None:
    view = sharing_mesh().view()
    first, second = (
        translate_proxy(view, ProxyIdentity("share", Kind.VIRTUAL_NODE, name))
        for name in ("c0", "c1")
    )
    shared = [m for m in first.all() if id(m) in first.shared]
    assert {type(m).__name__ for m in shared} == {"Cluster", "Listener", "RouteConfiguration"}
    assert shared == [m for m in second.all() if id(m) in second.shared]
    assert all(any(m is n for n in second.all()) for m in shared)  # the same objects
    # what differs is not shared: each consumer's own ingress listener and cluster
    own = [m for m in first.all() if id(m) not in first.shared]
    assert sorted(m.name for m in own) == [
        "cds_ingress_share_c0_http_9000",
        "lds_ingress_127.0.0.1_9000",
        "rds_ingress_http_9000",
    ]
    # a shared translation still records the inputs it read, for every consumer
    route_input = ResourceKey(Kind.VIRTUAL_ROUTER, "share", "color")
    assert route_input in first.inputs and route_input in second.inputs
    assert ResourceKey(Kind.VIRTUAL_NODE, "share", "green") in second.inputs


def test_a_shared_translation_is_the_same_as_a_fresh_one() -> None:
    mesh = sharing_mesh()
    view = mesh.view()
    for name in ("c0", "c1", "c2", "odd", "c1"):  # warm the memo, then compare each
        warm = translate_proxy(view, ProxyIdentity("share", Kind.VIRTUAL_NODE, name))
        cold = mesh.translate(name)  # a fresh view: nothing memoized
        assert [m.SerializeToString(deterministic=True) for m in warm.all()] == [
            m.SerializeToString(deterministic=True) for m in cold.all()
        ]
        assert warm.inputs == cold.inputs
        assert sorted(warm.problems) == sorted(cold.problems)
    odd = translate_proxy(view, ProxyIdentity("share", Kind.VIRTUAL_NODE, "odd"))
    assert "backend virtual service 'missing.svc' does not exist" in odd.problems
    assert not translate_proxy(view, ProxyIdentity("share", Kind.VIRTUAL_NODE, "c2")).problems


def test_other_backends_or_egress_port_get_their_own_translation() -> None:
    view = sharing_mesh().view()
    c0 = translate_proxy(view, ProxyIdentity("share", Kind.VIRTUAL_NODE, "c0"))
    odd = translate_proxy(view, ProxyIdentity("share", Kind.VIRTUAL_NODE, "odd"))
    moved = translate_proxy(
        view, ProxyIdentity("share", Kind.VIRTUAL_NODE, "c1"), ProxyOptions(egress_port=15101)
    )
    assert c0.routes[-1] is not odd.routes[-1]  # other backends
    assert c0.routes[-1] is not moved.routes[-1]  # other egress port
    assert moved.routes[-1].name == "rds_egress_http_15101"
    assert odd.routes[-1].name == c0.routes[-1].name == "rds_egress_http_15001"


def test_the_next_view_translates_again() -> None:
    mesh = sharing_mesh()
    before = mesh.view()
    old = translate_proxy(before, ProxyIdentity("share", Kind.VIRTUAL_NODE, "c0"))
    route = ResourceKey(Kind.ROUTE, "share", "split", "color")
    mesh.route("color", "split", http_route("/", ("blue", 10), ("green", 90)))
    record = next(r for r in mesh.records() if r.key == route)
    after = before.with_changes([record])
    new = translate_proxy(after, ProxyIdentity("share", Kind.VIRTUAL_NODE, "c0"))

    def weights(resources: ProxyResources) -> list[int]:
        (route,) = resources.routes[-1].virtual_hosts[0].routes
        return [w.weight.value for w in route.route.weighted_clusters.clusters]

    assert weights(old) == [60, 40]
    assert weights(new) == [10, 90]


def test_a_provider_cluster_is_shared_by_consumers_with_other_backends() -> None:
    mesh = MeshBuilder("share")
    for name in ("p1", "p2"):
        mesh.node(name, provider_node(f"{name}.local", listener(8080)))
        mesh.service(f"{name}.svc", node=name)
    mesh.node("x", client_node("p1.svc", "p2.svc"))
    mesh.node("y", client_node("p1.svc"))
    view = mesh.view()
    x, y = (translate_proxy(view, ProxyIdentity("share", Kind.VIRTUAL_NODE, n)) for n in "xy")
    (p1_in_x,) = [c for c in x.clusters if c.name == "cds_egress_share_p1_http_8080"]
    (p1_in_y,) = [c for c in y.clusters if c.name == "cds_egress_share_p1_http_8080"]
    assert p1_in_x is p1_in_y and id(p1_in_x) in x.shared and id(p1_in_y) in y.shared
    assert x.routes[-1] is not y.routes[-1]  # their route tables differ
    for name, warm in (("x", x), ("y", y)):  # shared pieces, same bytes as a fresh view's
        cold = mesh.translate(name)
        assert [m.SerializeToString(deterministic=True) for m in warm.all()] == [
            m.SerializeToString(deterministic=True) for m in cold.all()
        ]
        assert warm.inputs == cold.inputs and warm.problems == cold.problems
    # the p1.svc virtual host is resolved once: both route tables carry equal copies of it
    (in_x,) = [v for v in x.routes[-1].virtual_hosts if v.name == "p1.svc"]
    (in_y,) = [v for v in y.routes[-1].virtual_hosts if v.name == "p1.svc"]
    assert in_x == in_y


def test_memoized_pieces_pass_to_the_next_view_only_when_untouched() -> None:
    """What was memoized on one view passes to the next unless a resource it was made from
    changed; a translation on the next view equals one on a fresh view of the same records."""
    mesh = sharing_mesh()
    mesh.service("other.svc", node="blue")
    mesh.node("lone", client_node("other.svc"))
    names = ("c0", "c1", "lone", "odd")

    def same_as_fresh(view: MeshView) -> None:
        for name in names:
            warm = translate_proxy(view, ProxyIdentity("share", Kind.VIRTUAL_NODE, name))
            cold = mesh.translate(name)  # a fresh view of the builder's current records
            assert [m.SerializeToString(deterministic=True) for m in warm.all()] == [
                m.SerializeToString(deterministic=True) for m in cold.all()
            ], name
            assert warm.inputs == cold.inputs, name
            assert sorted(warm.problems) == sorted(cold.problems), name

    before = mesh.view()
    same_as_fresh(before)
    blue = ("egress-cluster", "cds_egress_share_blue_http_8080")
    assert blue in before.memo and ("service-plan", "color.svc") in before.memo

    # a weight change touches the router: its service's plan goes, the clusters stay
    mesh.route("color", "split", http_route("/", ("blue", 10), ("green", 90)))
    split = ResourceKey(Kind.ROUTE, "share", "split", "color")
    after = before.with_changes([r for r in mesh.records() if r.key == split])
    assert ("service-plan", "color.svc") not in after.memo
    assert ("service-plan", "other.svc") in after.memo
    assert after.memo[blue] is before.memo[blue]
    same_as_fresh(after)

    # a change to blue itself drops its cluster and every plan that reaches it
    mesh.node("blue", provider_node("blue.elsewhere", listener(8080)))
    node = ResourceKey(Kind.VIRTUAL_NODE, "share", "blue")
    later = after.with_changes([r for r in mesh.records() if r.key == node])
    assert blue not in later.memo and ("service-plan", "other.svc") not in later.memo
    same_as_fresh(later)
    # and a change to the mesh drops everything
    mesh.specs[ResourceKey(Kind.MESH, "share", "share")] = {"egressFilter": {"type": "ALLOW_ALL"}}
    meshkey = ResourceKey(Kind.MESH, "share", "share")
    last = later.with_changes([r for r in mesh.records() if r.key == meshkey])
    assert not last.memo
    same_as_fresh(last)


def test_the_pieces_passed_to_the_next_view_are_bounded() -> None:
    view = sharing_mesh().view()
    mesh_key = ResourceKey(Kind.MESH, "share", "share")
    for i in range(20_000):  # far more than 4 per stored resource + 10,000
        view.remember(("junk", i), i, frozenset({ResourceKey(Kind.VIRTUAL_NODE, "share", "x")}))
    assert not view.with_changes([], [ResourceKey(Kind.VIRTUAL_NODE, "share", "y")]).memo
    few = sharing_mesh().view()
    few.remember(("kept", 1), 1, frozenset({mesh_key}))
    assert few.with_changes([], [ResourceKey(Kind.VIRTUAL_NODE, "share", "y")]).memo == {
        ("kept", 1): 1
    }
