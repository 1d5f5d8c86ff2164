"""The translation tests' builders (``tests/support/translate.py``) checked themselves."""

from __future__ import annotations

from meshplane.model import Kind
from tests.support.translate import MeshBuilder, http_route, listener, provider_node

# --- tests of the builders -----------------------------------------------------------------


def test_builder_makes_one_record_per_resource() -> None:
    mesh = (
        MeshBuilder("m")
        .node("a", provider_node("a.local", listener(80)))
        .service("a.local", node="a")
        .router("r", (80, "http"))
        .route("r", "all", http_route("/", ("a", 1)))
    )
    records = mesh.records()
    assert [r.key.kind for r in records] == [
        Kind.MESH,
        Kind.VIRTUAL_NODE,
        Kind.VIRTUAL_SERVICE,
        Kind.VIRTUAL_ROUTER,
        Kind.ROUTE,
    ]
    view = mesh.view()
    assert view.mesh == "m"
    assert view.node("a") is not None
    assert [r.name for r in view.routes("r")] == ["all"]
