"""Hostile manifests (findings 2, 4 and 8): YAML alias bombs, huge flow scalars, document
floods and files that are not files.  Each gets a clear error naming the limit, nothing is
stored, and the server keeps answering a concurrent client while it parses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.abuse.conftest import Healthy
from tests.support.server import MeshplaneServer

MESH = "apiVersion: appmesh.k8s.aws/v1beta2\nkind: Mesh\nmetadata:\n  name: {name}\n"


def apply(
    server: MeshplaneServer, text: str, *, dry_run: bool, strict: bool = False
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/meshplane/v1/apply",
        json={
            "documents": [{"source": "bomb.yaml", "text": text}],
            "dryRun": dry_run,
            "strict": strict,
        },
        timeout=120,
    )


def refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text[:2000]
    message = response.json()["message"]
    for word in words:
        assert word in message, message[:2000]


def alias_bomb(name: str, uses: int) -> str:
    """The review's bomb: one anchor of ~34 KB used ``uses`` times in annotations."""
    lines = [MESH.format(name=name), "  annotations:", f"    blob: &b {'x' * 34_000}"]
    lines += [f"    a{i}: *b" for i in range(uses)]
    return "\n".join(lines) + "\n"


def stored_manifests(server: MeshplaneServer) -> list[dict[str, object]]:
    answer = httpx.get(f"{server.url}/meshplane/v1/manifests", timeout=30)
    assert answer.status_code == 200
    found: list[dict[str, object]] = answer.json()["manifests"]
    return found


def test_yaml_alias_bombs_are_refused_and_nothing_is_stored(
    target: MeshplaneServer, healthy: Healthy
) -> None:
    with healthy():
        # 20,000 uses: past the alias limit
        refused(apply(target, alias_bomb("bomb1", 20_000), dry_run=True), "1000 alias uses")
        # under the alias limit, but 34 KB x 900 = 30 MB once expanded: past the object size
        refused(
            apply(target, alias_bomb("bomb2", 900), dry_run=False),
            "bytes once YAML aliases are expanded",
        )
    assert not [m for m in stored_manifests(target) if str(m["name"]).startswith("bomb")]
    # a manifest with a few aliases is fine
    fine = apply(target, alias_bomb("fine", 3), dry_run=False)
    assert fine.status_code == 200, fine.text[:2000]


def test_slow_yaml_is_parsed_off_the_event_loop(target: MeshplaneServer, healthy: Healthy) -> None:
    flow = "[" + ", ".join(f"'{i:06d}'" for i in range(70_000)) + "]"  # ~700 KB of flow scalars
    text = MESH.format(name="flow") + f"  annotations: {{x: y}}\nspec:\n  list: {flow}\n"
    separators = "---\n" * 200_000
    with healthy():
        # not a field of a Mesh: refused under strict (by default it is ignored with a warning)
        refused(apply(target, text, dry_run=True, strict=True), "spec.list")
        refused(apply(target, separators, dry_run=True), "more than 10000 documents")


def run_cli(server: MeshplaneServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESHPLANE_SERVER": server.url, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "meshplane", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_apply_reads_regular_files_only(target: MeshplaneServer, tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "mesh.yaml").write_text(MESH.format(name="files"))
    os.mkfifo(folder / "pipe.yaml")
    (folder / "zero.yaml").symlink_to("/dev/zero")

    # named on the command line: refused at once, nothing read or applied
    pipe = run_cli(target, "apply", "-f", str(folder / "pipe.yaml"))
    assert pipe.returncode == 5, pipe  # a local problem (see --help)
    assert "pipe.yaml: not a regular file (a FIFO); not read" in pipe.stderr
    assert "Traceback" not in pipe.stderr
    zero = run_cli(target, "apply", "-f", str(folder / "zero.yaml"))
    assert zero.returncode == 5, zero
    assert "zero.yaml: not a regular file (a character device); not read" in zero.stderr
    assert "Traceback" not in zero.stderr

    # in a directory: skipped, and said so; the regular file is applied
    whole = run_cli(target, "apply", "-f", str(folder))
    assert whole.returncode == 0, whole
    assert "pipe.yaml skipped: not a regular file (a FIFO)" in whole.stderr
    assert "zero.yaml skipped: not a regular file (a character device)" in whole.stderr
    assert "mesh/files created" in whole.stdout

    large = tmp_path / "large.yaml"
    with large.open("wb") as handle:
        handle.truncate(17 * 1024 * 1024)
    big = run_cli(target, "apply", "-f", str(large))
    assert big.returncode == 5, big
    assert "larger than 16777216 bytes (the limit); not read" in big.stderr


def test_a_huge_value_is_quoted_short_in_the_error(target: MeshplaneServer) -> None:
    """A 1 MB label value, label key and name: the error names the field and the rule, quotes
    the start of the value with its length, and does not send the megabyte back."""
    huge = "x-" * 500_000 + "!"
    namespace = (
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\n  labels:\n    mesh: {huge}\n"
    )
    response = apply(target, namespace, dry_run=True)
    refused(response, "metadata.labels.mesh", "invalid label value 'x-x-", "1,000,001 characters")
    assert len(response.text) < 2_000, len(response.text)

    key = MESH.format(name="keys") + f"  labels:\n    ? {'k' * 300_000}\n    : v\n"
    response = apply(target, key, dry_run=True)
    refused(response, "invalid label key 'kkk", "300,000 characters")
    assert len(response.text) < 2_000, len(response.text)

    name = MESH.format(name="n" * 400_000)
    response = apply(target, name, dry_run=True)
    refused(response, "metadata.name", "400,000 characters")
    assert len(response.text) < 2_000, len(response.text)


def test_namespace_labels_are_checked_on_apply_and_on_label(target: MeshplaneServer) -> None:
    """A v1 Namespace's labels select meshes: bad keys and values are refused by apply and by
    the label endpoint, naming the field and the rule, and nothing is stored."""
    bad_value = (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns2\n  labels:\n    mesh: 'a b'\n"
    )
    refused(apply(target, bad_value, dry_run=False), "metadata.labels.mesh", "at most 63")
    bad_name = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: NS_2\n"
    refused(apply(target, bad_name, dry_run=False), "metadata.name", "at most 63 lowercase")
    names = [
        n["name"] for n in httpx.get(f"{target.url}/meshplane/v1/namespaces").json()["namespaces"]
    ]
    assert "ns2" not in names and "NS_2" not in names

    url = f"{target.url}/meshplane/v1/namespaces/ns3"
    for labels, words in (
        ({"mesh": "x" * 64}, ("labels.mesh", "at most 63")),
        ({"bad key!": "v"}, ("invalid label key 'bad key!'",)),
        ({"bad key!": None}, ("invalid label key 'bad key!'",)),
    ):
        refused(httpx.put(url, json={"labels": labels}, timeout=30), *words)
    names = [
        n["name"] for n in httpx.get(f"{target.url}/meshplane/v1/namespaces").json()["namespaces"]
    ]
    assert "ns3" not in names
    fine = httpx.put(url, json={"labels": {"mesh": "m1"}}, timeout=30)
    assert fine.status_code == 200, fine.text[:2000]
