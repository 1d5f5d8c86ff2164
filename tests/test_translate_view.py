"""MeshView: indexing, lazy parsing, invalid specs, route order, incremental changes."""

from __future__ import annotations

import pytest

from meshplane.model import Kind, ResourceKey
from meshplane.store.records import Record
from meshplane.translate import MeshView, dependency_key
from tests.support.translate import MeshBuilder, http_route, listener, provider_node


def _record(key: ResourceKey, spec: dict[str, object]) -> Record:
    return Record(
        key=key,
        spec=spec,
        uid="u",
        version=1,
        created_at=0.0,
        updated_at=0.0,
        mesh_owner="",
        resource_owner="",
        revision=1,
    )


def test_lookups() -> None:
    mesh = (
        MeshBuilder("m", {"egressFilter": {"type": "ALLOW_ALL"}})
        .node("a", provider_node("a.local", listener(80)))
        .service("s", node="a")
        .router("r", (80, "http"))
        .gateway("g", {"listeners": [listener(8080)]})
    )
    view = mesh.view()
    assert len(view) == 5
    assert view.mesh_spec is not None and view.mesh_spec.egressFilter.type == "ALLOW_ALL"
    assert view.node("a") is not None and view.node("b") is None
    assert view.service("s") is not None and view.router("r") is not None
    assert view.gateway("g") is not None
    assert view.routes("r") == () and view.gateway_routes("g") == ()
    assert view.names(Kind.VIRTUAL_NODE) == ("a",)
    assert view.key(Kind.VIRTUAL_NODE, "a") in view


def test_a_kind_mismatch_is_not_found() -> None:
    view = MeshBuilder("m").service("a").view()
    assert view.node("a") is None


def test_from_records_takes_one_mesh() -> None:
    one = MeshBuilder("one").node("a", {}).records()
    two = MeshBuilder("two").node("b", {}).records()
    with pytest.raises(ValueError, match="meshes"):
        MeshView.from_records(one + two)
    view = MeshView.from_records(one + two, mesh="two")
    assert view.mesh == "two" and view.node("b") is not None and view.node("a") is None
    assert MeshView.from_records([]).mesh == ""


def test_specs_are_parsed_once_and_on_demand() -> None:
    view = MeshBuilder("m").node("a", {}).view()
    assert view._parsed == {}
    first = view.node("a")
    assert first is view.node("a")
    assert len(view._parsed) == 1


def test_an_invalid_stored_spec_is_absent_with_its_error() -> None:
    builder = MeshBuilder("m").node("bad", {"listeners": [listener(70000)]})
    view = builder.view()
    key = view.key(Kind.VIRTUAL_NODE, "bad")
    assert view.node("bad") is None
    error = view.error(key)
    assert error is not None and "65535" in error
    assert view.error(view.key(Kind.VIRTUAL_NODE, "nope")) is None


def test_routes_are_ordered_by_priority_then_name() -> None:
    view = (
        MeshBuilder("m")
        .router("r", (80, "http"))
        .route("r", "b", http_route("/", ("n", 1), priority=10))
        .route("r", "a", http_route("/", ("n", 1), priority=10))
        .route("r", "c", http_route("/", ("n", 1), priority=0))
        .route("r", "d", http_route("/x", ("n", 1)))
        .route("r", "bad", {"httpRoute": {}})
        .route("other", "e", http_route("/", ("n", 1)))
    ).view()
    assert [r.name for r in view.routes("r")] == ["c", "a", "b", "d"]
    assert [r.name for r in view.routes("other")] == ["e"]


def test_with_changes_keeps_unchanged_parses() -> None:
    builder = MeshBuilder("m").node("a", {}).node("b", {})
    view = builder.view()
    a, b = view.node("a"), view.node("b")
    key_b = view.key(Kind.VIRTUAL_NODE, "b")
    new = view.with_changes(
        upserts=[
            _record(key_b, {"backends": [{"virtualService": {"virtualServiceName": "s"}}]}),
            _record(ResourceKey(Kind.VIRTUAL_NODE, "elsewhere", "x"), {}),
        ],
        removals=[view.key(Kind.VIRTUAL_NODE, "a")],
    )
    assert new.node("a") is None and view.node("a") is a
    changed = new.node("b")
    assert changed is not None and changed is not b and changed.backends
    assert view.node("b") is b
    assert len(new) == 2


def test_with_changes_reorders_routes() -> None:
    view = (
        MeshBuilder("m")
        .router("r", (80, "http"))
        .route("r", "x", http_route("/", ("n", 1), priority=5))
        .view()
    )
    assert [r.name for r in view.routes("r")] == ["x"]
    key = ResourceKey(Kind.ROUTE, "m", "y", "r")
    new = view.with_changes([_record(key, http_route("/", ("n", 1), priority=1))])
    assert [r.name for r in new.routes("r")] == ["y", "x"]


def test_dependency_key_maps_children_to_their_parent() -> None:
    route = ResourceKey(Kind.ROUTE, "m", "x", "r")
    assert dependency_key(route) == ResourceKey(Kind.VIRTUAL_ROUTER, "m", "r")
    gateway_route = ResourceKey(Kind.GATEWAY_ROUTE, "m", "x", "g")
    assert dependency_key(gateway_route) == ResourceKey(Kind.VIRTUAL_GATEWAY, "m", "g")
    node = ResourceKey(Kind.VIRTUAL_NODE, "m", "n")
    assert dependency_key(node) is node
