"""The manifest workflow through the real ``meshplane`` command against a real server:
the seed document's examples verbatim, idempotent apply, get/describe/diff/delete, labels,
errors that name the file and field, and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Cli

WEBAPP = Path(__file__).parents[1] / "examples" / "webapp"


def versions(appmesh: Any) -> dict[str, int]:
    result = {}
    for node in appmesh.list_virtual_nodes(meshName="webapp")["virtualNodes"]:
        result[node["virtualNodeName"]] = node["version"]
    for route in appmesh.list_routes(meshName="webapp", virtualRouterName="app-router_consumer")[
        "routes"
    ]:
        result[route["routeName"]] = route["version"]
    return result


def test_seed_examples_apply_and_show_everywhere(cli: Cli, appmesh: Any) -> None:
    result = cli("apply", "-f", str(WEBAPP))
    assert "mesh/webapp created" in result.stdout
    assert "virtualNode/webapp/service-v1_service-ns created" in result.stdout
    assert "Service service-ns/service skipped: not an App Mesh resource" in result.stdout

    # boto3 sees the App Mesh names the controller would have produced
    nodes = {
        n["virtualNodeName"] for n in appmesh.list_virtual_nodes(meshName="webapp")["virtualNodes"]
    }
    assert {"service-v1_service-ns", "green-v1_green", "blue-v1_blue"} <= nodes
    services = {
        s["virtualServiceName"]
        for s in appmesh.list_virtual_services(meshName="webapp")["virtualServices"]
    }
    assert "service.service-ns.svc.cluster.local" in services  # explicit awsName
    route = appmesh.describe_route(
        meshName="webapp", virtualRouterName="app-router_consumer", routeName="app-route"
    )["route"]
    targets = route["spec"]["httpRoute"]["action"]["weightedTargets"]
    assert {"virtualNode": "green-v1_green", "weight": 100, "port": 8081} in targets
    assert {"virtualNode": "blue-v1_blue", "weight": 0, "port": 8080} in targets
    node = appmesh.describe_virtual_node(
        meshName="webapp", virtualNodeName="service-v1_service-ns"
    )["virtualNode"]
    assert node["spec"]["listeners"][0]["healthCheck"]["path"] == "/health"
    assert (
        node["spec"]["serviceDiscovery"]["dns"]["hostname"]
        == "service-v1.service-ns.svc.cluster.local"
    )
    assert node["spec"]["backends"] == [
        {"virtualService": {"virtualServiceName": "target-service.target-ns"}}
    ]
    gateway_route = appmesh.describe_gateway_route(
        meshName="webapp",
        virtualGatewayName="ingress-gw_gateway-ns",
        gatewayRouteName="app-route_gateway-ns",
    )
    # the seed writes `port` inside virtualServiceRef, where the CRD has no such field:
    # Kubernetes drops it, and so does meshplane (with a warning)
    assert gateway_route["gatewayRoute"]["spec"]["httpRoute"]["action"]["target"] == {
        "virtualService": {"virtualServiceName": "app-service.app-ns"}
    }

    # the CLI shows both views
    table = cli("get", "virtualnodes", "-A").stdout
    assert "service-v1" in table and "service-v1_service-ns" in table
    wide = cli("get", "vn", "--mesh", "webapp", "-o", "json").stdout
    assert {d["virtualNodeName"] for d in json.loads(wide)} >= nodes
    described = yaml.safe_load(
        cli("describe", "virtualnode", "service-v1", "-n", "service-ns").stdout
    )
    assert described["virtualNodeName"] == "service-v1_service-ns"
    assert described["metadata"]["arn"].endswith(":mesh/webapp/virtualNode/service-v1_service-ns")

    # re-applying unchanged manifests changes no version
    before = versions(appmesh)
    again = cli("apply", "-f", str(WEBAPP))
    assert "created" not in again.stdout and "configured" not in again.stdout
    assert versions(appmesh) == before
    assert cli("diff", "-f", str(WEBAPP)).returncode == 0


def test_diff_then_apply_a_weight_shift(cli: Cli, appmesh: Any, tmp_path: Path) -> None:
    cli("apply", "-f", str(WEBAPP))
    router = yaml.safe_load((WEBAPP / "05-virtualrouter.yaml").read_text())
    targets = router["spec"]["routes"][0]["httpRoute"]["action"]["weightedTargets"]
    targets[0]["weight"], targets[1]["weight"] = 50, 50
    changed = tmp_path / "router.yaml"
    changed.write_text(yaml.safe_dump(router))

    before = versions(appmesh)["app-route"]
    diff = cli("diff", "-f", str(changed), check=False)
    assert diff.returncode == 4, diff.stderr
    assert "-      weight: 100" in diff.stdout and "+      weight: 50" in diff.stdout
    assert versions(appmesh)["app-route"] == before  # diff changed nothing

    applied = cli("apply", "-f", str(changed))
    assert "route/webapp/app-router_consumer/app-route configured" in applied.stdout
    assert versions(appmesh)["app-route"] == before + 1
    cli("apply", "-f", str(WEBAPP / "05-virtualrouter.yaml"))


def test_apply_from_stdin_and_json_output(cli: Cli) -> None:
    text = (WEBAPP / "01-mesh.yaml").read_text()
    result = json.loads(cli("apply", "-f", "-", "-o", "json", input=text).stdout)
    assert result["dryRun"] is False
    assert result["actions"][0]["kind"] == "mesh"


def test_invalid_manifest_names_file_document_and_field_and_changes_nothing(
    cli: Cli, appmesh: Any, tmp_path: Path
) -> None:
    cli("apply", "-f", str(WEBAPP))
    before = versions(appmesh)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (WEBAPP / "05-virtualrouter.yaml").read_text().replace("prefix: /", "prefix: nope")
        + "\n---\napiVersion: appmesh.k8s.aws/v1beta2\nkind: VirtualNode\nmetadata:\n"
        "  name: extra\n  namespace: blue\nspec:\n  listeners: []\n"
    )
    result = cli("apply", "-f", str(bad), check=False)
    assert result.returncode == 1
    assert "bad.yaml#0" in result.stderr
    assert "VirtualRouter consumer/app-router" in result.stderr
    assert "prefix" in result.stderr
    assert versions(appmesh) == before  # the valid document in the file was not applied either
    nodes = {
        n["virtualNodeName"] for n in appmesh.list_virtual_nodes(meshName="webapp")["virtualNodes"]
    }
    assert "extra_blue" not in nodes

    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: [unclosed\n")
    result = cli("apply", "-f", str(broken), check=False)
    assert result.returncode == 1
    assert "broken.yaml" in result.stderr


def test_label_namespace_moves_membership(cli: Cli, appmesh: Any, tmp_path: Path) -> None:
    manifest = tmp_path / "other.yaml"
    manifest.write_text(
        "apiVersion: appmesh.k8s.aws/v1beta2\nkind: Mesh\nmetadata: {name: other}\n"
        "spec: {namespaceSelector: {matchLabels: {mesh: other}}}\n"
        "---\napiVersion: appmesh.k8s.aws/v1beta2\nkind: VirtualNode\n"
        "metadata: {name: lonely, namespace: island}\nspec: {}\n"
    )
    refused = cli("apply", "-f", str(manifest), check=False)
    assert refused.returncode == 1
    assert "namespace island is not part of any mesh" in refused.stderr
    assert "other" not in {m["meshName"] for m in appmesh.list_meshes()["meshes"]}

    cli("label", "namespace", "island", "mesh=other")
    cli("apply", "-f", str(manifest))
    nodes = appmesh.list_virtual_nodes(meshName="other")["virtualNodes"]
    assert [n["virtualNodeName"] for n in nodes] == ["lonely_island"]

    deleted = cli("delete", "-f", str(manifest))
    assert "deleted" in deleted.stdout
    assert "other" not in {m["meshName"] for m in appmesh.list_meshes()["meshes"]}


def test_exit_codes_and_help(cli: Cli) -> None:
    assert cli("get", "nonsense", check=False).returncode == 2
    missing = cli("describe", "vn", "ghost", "--mesh", "webapp", check=False)
    assert missing.returncode == 1
    assert "NotFoundException" in missing.stderr
    for command in ("serve", "apply", "diff", "get", "describe", "delete", "label"):
        text = cli(command, "--help").stdout
        assert "Examples" in text or "Commands" in text, command


def test_unreachable_server_exit_code(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "MESHPLANE_SERVER": "http://127.0.0.1:9"}
    result = subprocess.run(
        [sys.executable, "-m", "meshplane", "get", "meshes"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 3
    assert "cannot reach the meshplane server" in result.stderr


def test_delete_by_name(cli: Cli, appmesh: Any) -> None:
    appmesh.create_mesh(meshName="scratch")
    appmesh.create_virtual_node(meshName="scratch", virtualNodeName="tmp", spec={})
    refused = cli("delete", "mesh", "scratch", check=False)
    assert refused.returncode == 1
    assert "ResourceInUseException" in refused.stderr
    cli("delete", "vn", "tmp", "--mesh", "scratch")
    cli("delete", "mesh", "scratch")
    assert "scratch" not in {m["meshName"] for m in appmesh.list_meshes()["meshes"]}
