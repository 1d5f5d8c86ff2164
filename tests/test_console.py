"""The web console in a real browser: Playwright (Python) driving Debian's Chromium headless
against a real ``meshplane serve`` holding the demo's topology (applied from the demo's own
manifests), a second mesh whose real Envoy sidecar NACKs, and hostile text in a tag.

- every node, service, router, route and weight of the demo shows (the graph's text
  alternative on the page, and the drawn canvas);
- a weight shift through the App Mesh API (boto3) changes the graph within 5 s (server-sent
  events);
- the node whose proxy NACKs is red;
- a weight shift from the page with an editor token lands in the audit log under that token
  (a viewer token's is refused and changes nothing);
- ``<img src=x onerror=alert(1)>`` in a tag shows as text: no element, no dialog;
- the page and its bundle carry CSP, frame and nosniff headers; its data needs credentials
  when the API does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from meshplane.demo import MANIFESTS, gateway_manifest, router_manifest
from tests.support.auth import Token, create_token, offline_token
from tests.support.mesh import Mesh, next_address
from tests.support.ports import free_port
from tests.support.server import MeshplaneServer

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = "<img src=x onerror=alert(1)>"


class Console:
    def __init__(self, mesh: Mesh, browser: Browser) -> None:
        self.mesh = mesh
        self.browser = browser
        self.url = f"{mesh.server.url}/console"

    def page(self, mesh: str = "demo") -> Page:
        page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.dialogs = dialogs  # type: ignore[attr-defined]
        page.goto(f"{self.url}?mesh={mesh}")
        expect(page.locator("#graph-nodes tbody tr").first).to_be_visible(timeout=15_000)
        return page


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
    tmp = tmp_path_factory.mktemp("console")
    mesh = Mesh(tmp)
    try:
        manifests = tmp / "demo.yaml"
        manifests.write_text(
            "---\n".join((MANIFESTS, router_manifest(100, 0), gateway_manifest(free_port())))
        )
        applied = subprocess.run(
            [
                sys.executable,
                "-m",
                "meshplane",
                "--server",
                mesh.server.url,
                "apply",
                "-f",
                str(manifests),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert applied.returncode == 0, applied.stderr
        api = mesh.appmesh
        node = api.describe_virtual_node(meshName="demo", virtualNodeName="blue")
        api.tag_resource(
            resourceArn=node["virtualNode"]["metadata"]["arn"],
            tags=[{"key": "owner", "value": XSS}],
        )
        _nacking_mesh(mesh)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                yield Console(mesh, browser)
            finally:
                browser.close()
    finally:
        mesh.close()


def _nacking_mesh(mesh: Mesh) -> None:
    """Mesh ``nack``: ``victim`` calls ``bad.nack.local``, whose route has a header regex RE2
    rejects (a lookahead): the victim's real sidecar NACKs its routes."""
    api = mesh.appmesh
    port = free_port()
    api.create_mesh(meshName="nack")
    address = next_address()
    api.create_virtual_node(
        meshName="nack",
        virtualNodeName="app",
        spec={
            "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": address}},
        },
    )
    api.create_virtual_router(
        meshName="nack",
        virtualRouterName="bad",
        spec={"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]},
    )
    api.create_route(
        meshName="nack",
        virtualRouterName="bad",
        routeName="lookahead",
        spec={
            "httpRoute": {
                "match": {
                    "prefix": "/",
                    "headers": [{"name": "x-id", "match": {"regex": "(?=a)b"}}],
                },
                "action": {"weightedTargets": [{"virtualNode": "app", "weight": 1}]},
            }
        },
    )
    api.create_virtual_service(
        meshName="nack",
        virtualServiceName="bad.nack.local",
        spec={"provider": {"virtualRouter": {"virtualRouterName": "bad"}}},
    )
    api.create_virtual_node(
        meshName="nack",
        virtualNodeName="victim",
        spec={"backends": [{"virtualService": {"virtualServiceName": "bad.nack.local"}}]},
    )
    mesh.sidecar("mesh/nack/virtualNode/victim")

    def nacked() -> bool:
        proxies = httpx.get(
            f"{mesh.server.url}/meshplane/v1/proxies", params={"mesh": "nack"}, timeout=5
        ).json()["proxies"]
        return any(t["lastNack"] is not None for p in proxies for t in p["types"].values())

    mesh.wait(nacked, "the victim's sidecar to NACK its routes")


def _rows(page: Page, table: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in row.locator("td").all_inner_texts()]
        for row in page.locator(f"{table} tbody tr").all()
    ]


def test_the_demo_topology_shows_every_node_service_router_and_weight(
    console: Console, tmp_path: Path
) -> None:
    api = console.mesh.appmesh
    page = console.page()
    try:
        nodes = {(kind, name) for kind, name, _ in _rows(page, "#graph-nodes")}
        expected = {
            *(
                ("node", n["virtualNodeName"])
                for n in api.list_virtual_nodes(meshName="demo")["virtualNodes"]
            ),
            *(
                ("service", s["virtualServiceName"])
                for s in api.list_virtual_services(meshName="demo")["virtualServices"]
            ),
            *(
                ("router", r["virtualRouterName"])
                for r in api.list_virtual_routers(meshName="demo")["virtualRouters"]
            ),
            *(
                ("gateway", g["virtualGatewayName"])
                for g in api.list_virtual_gateways(meshName="demo")["virtualGateways"]
            ),
        }
        routers = [
            r["virtualRouterName"]
            for r in api.list_virtual_routers(meshName="demo")["virtualRouters"]
        ]
        for router in routers:
            for route in api.list_routes(meshName="demo", virtualRouterName=router)["routes"]:
                expected.add(("route", f"{router}/{route['routeName']}"))
        assert expected <= nodes, expected - nodes
        assert len(expected) == 7  # 3 nodes, a gateway, a service, a router, a route
        edges = _rows(page, "#graph-edges")
        weights = sorted(
            (source, target, weight)
            for source, target, kind, weight, *_ in edges
            if kind == "target"
        )
        assert [w for *_, w in weights] == ["100 (100%)", "0 (0%)"], edges
        assert {t for _, t, _ in weights} == {"node blue", "node green"}
        kinds = {kind for _, _, kind, *_ in edges}
        assert kinds == {"calls", "provider", "route", "target"}, edges
        # the graph itself is drawn (Cytoscape's canvases)
        assert page.locator("#graph canvas").count() > 0
        page.screenshot(path=str(tmp_path / "console-topology.png"), full_page=True)
    finally:
        page.close()


def test_a_weight_shift_through_the_api_shows_within_5_seconds(console: Console) -> None:
    api = console.mesh.appmesh
    page = console.page()
    try:
        row = page.locator("#graph-edges tbody tr", has_text="node green").filter(has_text="target")
        expect(row).to_contain_text("0 (0%)")
        route = api.describe_route(
            meshName="demo", virtualRouterName="color", routeName="color-route"
        )["route"]
        spec = route["spec"]
        for target in spec["httpRoute"]["action"]["weightedTargets"]:
            target["weight"] = 50
        api.update_route(
            meshName="demo", virtualRouterName="color", routeName="color-route", spec=spec
        )
        expect(row).to_contain_text("50 (50%)", timeout=5_000)
    finally:
        page.close()


def test_a_nacking_node_is_red(console: Console) -> None:
    page = console.page("nack")
    try:
        victim = page.locator('#graph-nodes tbody tr[data-id="node:victim"]')
        expect(victim).to_have_attribute("data-state", "nack")
        color = page.evaluate(
            """() => getComputedStyle(document.querySelector(
                '#graph-nodes tr[data-id="node:victim"] td')).backgroundColor"""
        )
        assert color == "rgb(255, 205, 210)"
        assert (
            page.locator('#graph-nodes tbody tr[data-id="node:app"]').get_attribute("data-state")
            == "idle"
        )
        # the resource browser shows the proxy's last NACK, with Envoy's own words
        page.locator("#resources summary", has_text="victim").click()
        expect(page.locator("#resources")).to_contain_text("NACK")
    finally:
        page.close()


def _tokens(console: Console) -> tuple[Token, Token]:
    with httpx.Client(base_url=console.mesh.server.url, timeout=10) as admin:
        return create_token(admin, "demo", "editor"), create_token(admin, "demo", "viewer")


def use_token(page: Page, token: Token) -> None:
    page.fill("#token", token.bearer)
    page.click("#token-form button")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def test_a_weight_shift_from_the_page_lands_in_the_audit_log(console: Console) -> None:
    editor, viewer = _tokens(console)
    page = console.page()
    try:
        form = page.locator('form.weights[data-route="color/color-route"]')
        # a viewer may look but not change
        use_token(page, viewer)
        form.locator('input[data-node="blue"]').fill("30")
        form.locator('input[data-node="green"]').fill("70")
        form.locator("button").click()
        expect(page.locator("#message")).to_contain_text("weights not changed")
        # the editor may
        use_token(page, editor)
        form.locator('input[data-node="blue"]').fill("30")
        form.locator('input[data-node="green"]').fill("70")
        form.locator("button").click()
        expect(page.locator("#message")).to_contain_text("updated")
        edge = page.locator("#graph-edges tbody tr", has_text="node green").filter(
            has_text="target"
        )
        expect(edge).to_contain_text("70 (70%)", timeout=5_000)
    finally:
        page.close()
    audit = httpx.get(
        f"{console.mesh.server.url}/meshplane/v1/audit",
        params={"mesh": "demo", "limit": "1000"},
        timeout=10,
    ).json()["entries"]
    updates = [e for e in audit if e["operation"] == "UpdateRoute"]
    assert updates[-1]["principal"] == editor.id, updates[-1]
    assert updates[-1]["resource"].endswith("color-route")
    assert not [e for e in audit if e["principal"] == viewer.id]
    route = console.mesh.appmesh.describe_route(
        meshName="demo", virtualRouterName="color", routeName="color-route"
    )["route"]
    weights = {
        t["virtualNode"]: t["weight"]
        for t in route["spec"]["httpRoute"]["action"]["weightedTargets"]
    }
    assert weights == {"blue": 30, "green": 70}


def test_hostile_text_in_a_tag_is_shown_as_text(console: Console) -> None:
    page = console.page()
    try:
        page.locator("#resources summary", has_text="blue").first.click()
        expect(page.locator("#resources")).to_contain_text(XSS)
        assert page.locator("#resources img").count() == 0
        assert page.locator("img").count() == 0
        page.wait_for_timeout(500)
        assert page.dialogs == []  # type: ignore[attr-defined]
    finally:
        page.close()


def test_security_headers_and_bounded_inputs(console: Console) -> None:
    url = console.mesh.server.url
    page = httpx.get(f"{url}/console", timeout=10)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    for path in ("/console/assets/../../pages.py", "/console/assets/%2e%2e/index.html"):
        assert httpx.get(f"{url}{path}", timeout=10).status_code == 404
    graph = httpx.get(f"{url}/meshplane/v1/console/graph", params={"mesh": XSS}, timeout=10)
    assert graph.status_code == 404 and XSS in graph.json()["message"]
    assert graph.headers["content-type"].startswith("application/json")
    long = httpx.get(f"{url}/meshplane/v1/console/graph", params={"mesh": "x" * 20_000}, timeout=10)
    assert long.status_code in (400, 414, 431)
    # the signals' window: seconds from 1 to the telemetry window (15 min by default)
    for what in ("graph", "events"):
        for window in ("0", "abc", "nan", "901", "1e308"):
            bad = httpx.get(
                f"{url}/meshplane/v1/console/{what}",
                params={"mesh": "demo", "window": window},
                timeout=10,
            )
            assert bad.status_code == 400 and "window" in bad.json()["message"], (window, bad)
    fine = httpx.get(
        f"{url}/meshplane/v1/console/graph", params={"mesh": "demo", "window": "900"}, timeout=10
    )
    assert fine.status_code == 200 and fine.json()["mesh"] == "demo"


def test_the_consoles_data_needs_credentials_when_the_api_does(tmp_path: Path) -> None:
    data = tmp_path / "data"
    admin: Token = offline_token(data)
    server = MeshplaneServer(data, extra_args=["--require-auth"]).start()
    try:
        assert httpx.get(f"{server.url}/console", timeout=10).status_code == 200
        anonymous = httpx.get(
            f"{server.url}/meshplane/v1/console/graph", params={"mesh": "demo"}, timeout=10
        )
        assert anonymous.status_code in (401, 403)
        events = httpx.get(
            f"{server.url}/meshplane/v1/console/events", params={"mesh": "demo"}, timeout=10
        )
        assert events.status_code in (401, 403)
        with admin.http(server) as client:
            client.put("/v20190125/meshes", json={"meshName": "demo"}).raise_for_status()
            found: dict[str, Any] = client.get(
                "/meshplane/v1/console/graph", params={"mesh": "demo"}
            ).json()
            assert found == {"mesh": "demo", "nodes": [], "edges": []}
    finally:
        server.stop()
