"""The real AWS CLI (``aws appmesh ... --endpoint-url``) against a real ``meshplane serve``:
App Mesh users' scripts keep working.  Specs given inline, from ``file://`` and through
``--cli-input-json``; ``--query`` and the text and table outputs; the CLI's own pagination; an
error's exit code and message; delete order enforced."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import MeshplaneServer

pytestmark = pytest.mark.e2e

POSTGRESQL_SUBSET = {
    "test_create_describe_list_and_query",
    "test_errors_exit_nonzero_with_the_app_mesh_message",
    "test_tags_through_the_cli",
}
"""The tests that also run against a server on PostgreSQL (``tests/conftest.py``): the rest
exercise the CLI's own parsing and paging, the same whatever the backend (and cost ~15 s each
in CLI start-ups)."""


def _aws_binary() -> str:
    here = Path(sys.executable).parent / "aws"
    found = str(here) if here.exists() else shutil.which("aws")
    if found is None:
        pytest.fail("the AWS CLI ('aws', from the awscli package of the test extras) is missing")
    return found


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory, backend_url: str | None) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("awscli")
    server = MeshplaneServer(tmp / "data", database_url=backend_url).start()
    binary = _aws_binary()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "credentials"),
        "AWS_PAGER": "",
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [binary, "--endpoint-url", server.url, "appmesh", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    run.tmp = tmp  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        server.stop()


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_create_describe_list_and_query(aws: Any) -> None:
    made = _json(
        aws("create-mesh", "--mesh-name", "cli", "--spec", '{"egressFilter":{"type":"DROP_ALL"}}')
    )
    assert made["mesh"]["metadata"]["arn"] == "arn:aws:appmesh:us-east-1:000000000000:mesh/cli"
    assert made["mesh"]["status"]["status"] == "ACTIVE"
    spec = {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": "web.cli.local"}},
    }
    spec_file = aws.tmp / "web.json"
    spec_file.write_text(json.dumps(spec))
    version = aws(
        "create-virtual-node",
        "--mesh-name",
        "cli",
        "--virtual-node-name",
        "web",
        "--spec",
        f"file://{spec_file}",
        "--query",
        "virtualNode.metadata.version",
        "--output",
        "text",
    )
    assert version.stdout.strip() == "1"
    described = _json(
        aws("describe-virtual-node", "--mesh-name", "cli", "--virtual-node-name", "web")
    )
    got = described["virtualNode"]["spec"]
    assert got["listeners"] == spec["listeners"]
    assert got["serviceDiscovery"] == spec["serviceDiscovery"]
    table = aws("list-virtual-nodes", "--mesh-name", "cli", "--output", "table")
    assert "ListVirtualNodes" in table.stdout and "web" in table.stdout
    names = aws("list-meshes", "--query", "meshes[].meshName", "--output", "text").stdout.split()
    assert "cli" in names


def test_cli_input_json_router_and_route(aws: Any) -> None:
    aws("create-mesh", "--mesh-name", "routes")
    for name in ("blue", "green"):
        aws(
            "create-virtual-node",
            "--mesh-name",
            "routes",
            "--virtual-node-name",
            name,
            "--spec",
            json.dumps(
                {
                    "listeners": [{"portMapping": {"port": 80, "protocol": "http"}}],
                    "serviceDiscovery": {"dns": {"hostname": f"{name}.local"}},
                }
            ),
        )
    router = {
        "meshName": "routes",
        "virtualRouterName": "color",
        "spec": {"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]},
    }
    aws("create-virtual-router", "--cli-input-json", json.dumps(router))
    route = {
        "meshName": "routes",
        "virtualRouterName": "color",
        "routeName": "split",
        "spec": {
            "httpRoute": {
                "match": {"prefix": "/"},
                "action": {
                    "weightedTargets": [
                        {"virtualNode": "blue", "weight": 90},
                        {"virtualNode": "green", "weight": 10},
                    ]
                },
            }
        },
    }
    aws("create-route", "--cli-input-json", json.dumps(route))
    route["spec"]["httpRoute"]["action"]["weightedTargets"][0]["weight"] = 50  # type: ignore[index]
    updated = _json(aws("update-route", "--cli-input-json", json.dumps(route)))
    assert updated["route"]["metadata"]["version"] == 2
    weights = aws(
        "describe-route",
        "--mesh-name",
        "routes",
        "--virtual-router-name",
        "color",
        "--route-name",
        "split",
        "--query",
        "route.spec.httpRoute.action.weightedTargets[].weight",
        "--output",
        "text",
    )
    assert weights.stdout.split() == ["50", "10"]


def test_the_cli_paginates_through_every_page(aws: Any) -> None:
    aws("create-mesh", "--mesh-name", "many")
    for i in range(7):
        aws(
            "create-virtual-service",
            "--mesh-name",
            "many",
            "--virtual-service-name",
            f"s{i}.many.local",
            "--spec",
            "{}",
        )
    # --page-size 2: the CLI follows nextToken through four pages and merges them
    listed = _json(aws("list-virtual-services", "--mesh-name", "many", "--page-size", "2"))
    assert sorted(s["virtualServiceName"] for s in listed["virtualServices"]) == [
        f"s{i}.many.local" for i in range(7)
    ]
    first = _json(aws("list-virtual-services", "--mesh-name", "many", "--max-items", "3"))
    assert len(first["virtualServices"]) == 3 and first.get("NextToken")


def test_errors_exit_nonzero_with_the_app_mesh_message(aws: Any) -> None:
    missing = aws(
        "describe-virtual-node", "--mesh-name", "cli", "--virtual-node-name", "nope", check=False
    )
    assert missing.returncode == 254 or missing.returncode == 255
    assert "(NotFoundException)" in missing.stderr and "nope" in missing.stderr
    bad = aws(
        "create-virtual-node",
        "--mesh-name",
        "cli",
        "--virtual-node-name",
        "bad",
        "--spec",
        '{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}',
        check=False,
    )
    assert bad.returncode in (254, 255)
    assert "(BadRequestException)" in bad.stderr and "serviceDiscovery" in bad.stderr
    in_use = aws("delete-mesh", "--mesh-name", "cli", check=False)
    assert in_use.returncode in (254, 255)
    assert "(ResourceInUseException)" in in_use.stderr
    aws("delete-virtual-node", "--mesh-name", "cli", "--virtual-node-name", "web")
    deleted = _json(aws("delete-mesh", "--mesh-name", "cli"))
    assert deleted["mesh"]["status"]["status"] == "DELETED"


def test_tags_through_the_cli(aws: Any) -> None:
    aws("create-mesh", "--mesh-name", "tagged", "--tags", "key=team,value=payments")
    arn = "arn:aws:appmesh:us-east-1:000000000000:mesh/tagged"
    aws("tag-resource", "--resource-arn", arn, "--tags", "key=env,value=prod")
    tags = _json(aws("list-tags-for-resource", "--resource-arn", arn))["tags"]
    assert {(t["key"], t["value"]) for t in tags} == {("team", "payments"), ("env", "prod")}
    aws("untag-resource", "--resource-arn", arn, "--tag-keys", "team")
    tags = _json(aws("list-tags-for-resource", "--resource-arn", arn))["tags"]
    assert [(t["key"], t["value"]) for t in tags] == [("env", "prod")]
