"""parse_documents() and load_paths(): YAML/JSON streams, Lists, Kubernetes value rules and
error messages that name the file, the document and the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshplane.manifests import ManifestError, load_paths, parse_documents


def problem(text: str, source: str = "app.yaml") -> str:
    with pytest.raises(ManifestError) as raised:
        parse_documents(text, source)
    return str(raised.value)


def test_multi_document_stream_with_empty_documents() -> None:
    text = """
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: webapp}
---
# only a comment
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: service-v1, namespace: service-ns}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: svc}
"""
    manifests = parse_documents(text, "app.yaml")
    assert [m.ref() for m in manifests] == [
        "app.yaml#0 Mesh webapp",
        "app.yaml#2 VirtualNode service-ns/service-v1",
        "app.yaml#3 VirtualService default/svc",
    ]
    assert manifests[0].namespace is None
    assert manifests[1].body["metadata"] == {"name": "service-v1", "namespace": "service-ns"}


def test_cluster_scoped_kinds_have_no_namespace() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: ignored}"
    assert parse_documents(text, "-")[0].namespace is None


def test_list_documents_are_expanded() -> None:
    text = """
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Namespace
    metadata: {name: a}
  - apiVersion: appmesh.k8s.aws/v1beta2
    kind: VirtualService
    metadata: {name: s, namespace: a}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualServiceList
items: []
"""
    assert [m.ref() for m in parse_documents(text, "l.yaml")] == [
        "l.yaml#0 items[0] Namespace a",
        "l.yaml#0 items[1] VirtualService a/s",
    ]
    assert problem("apiVersion: v1\nkind: List\nitems: [{kind: X}]") == (
        "app.yaml#0 items[0] X: apiVersion: required, a non-empty string"
    )


def test_json_documents() -> None:
    body = {"apiVersion": "appmesh.k8s.aws/v1beta2", "kind": "Mesh", "metadata": {"name": "m"}}
    manifests = parse_documents(json.dumps(body, indent=2), "m.json")
    assert [(m.kind, m.name, dict(m.body)) for m in manifests] == [("Mesh", "m", body)]


def test_values_are_read_as_kubernetes_reads_them() -> None:
    text = """
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data:
  date: 2024-01-02
  when: 2001-12-14t21:59:43.10-05:00
  equals: =
  yes: on
"""
    assert parse_documents(text, "c.yaml")[0].body["data"] == {
        "date": "2024-01-02",
        "when": "2001-12-14t21:59:43.10-05:00",
        "equals": "=",
        "true": True,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\nkind: [\n",
            "app.yaml#1: invalid YAML at line 6, column 1: expected the node content, but found '<stream end>'",
        ),
        (
            "apiVersion: v1\nkind: A\nkind: B\nmetadata: {name: a}\n",
            "app.yaml#0: invalid YAML at line 3, column 1: duplicate key 'kind'",
        ),
        (
            '{"kind": "A", "kind": "B"}',
            "app.yaml#0: invalid YAML at line 1, column 15: duplicate key 'kind'",
        ),
        ("- a\n- b\n", "app.yaml#0: a document must be a mapping, not a list"),
        ("apiVersion: v1\nmetadata: {name: a}\n", "app.yaml#0: kind: required, a non-empty string"),
        ("apiVersion: v1\nkind: A\n", "app.yaml#0 A: metadata: required, a mapping"),
        (
            "apiVersion: v1\nkind: A\nmetadata: {}\n",
            "app.yaml#0 A: metadata.name: required, a non-empty string",
        ),
        (
            "apiVersion: v1\nkind: A\nmetadata: {name: 7}\n",
            "app.yaml#0 A: metadata.name: required, a non-empty string",
        ),
        (
            "apiVersion: v1\nkind: A\nmetadata: {name: a, namespace: [x]}\n",
            "app.yaml#0 A a: metadata.namespace: must be a non-empty string",
        ),
        (
            "kind: A\nmetadata: {name: a}\n",
            "app.yaml#0 A: apiVersion: required, a non-empty string",
        ),
        (
            "apiVersion: v1\nkind: A\nmetadata: {name: a}\nx: !!binary aGVsbG8=\n",
            "app.yaml#0: a value of YAML type bytes is not JSON data",
        ),
        (
            "apiVersion: v1\nkind: A\nmetadata: {name: a}\nx: !!python/name:os.system\n",
            "app.yaml#0: invalid YAML at line 4, column 4: could not determine a constructor for the tag 'tag:yaml.org,2002:python/name:os.system'",
        ),
        (
            "apiVersion: v1\nkind: A\nmetadata: {name: a}\nx: &a [*a]\n",
            "app.yaml#0: document is nested too deeply",
        ),
        (
            "apiVersion: v1\nkind: A\nmetadata: {name: a}\nx: " + "[" * 2000 + "]" * 2000,
            "app.yaml#0: document is nested too deeply",
        ),
        (
            "apiVersion: v1\nkind: A\nmetadata: {name: a}\nx: .nan\n",
            "app.yaml#0: nan is not a JSON number",
        ),
    ],
)
def test_malformed_documents(text: str, message: str) -> None:
    assert problem(text) == message


def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 8)]
    text = "apiVersion: v1\nkind: A\nmetadata: {name: a}\n" + "\n".join(lines)
    assert problem(text) == (
        "app.yaml#0: larger than 1048576 bytes once YAML aliases are expanded"
        " (the limit of one object)"
    )


def test_load_paths_reads_files_directories_and_stdin(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.yml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: two}\n"
    )
    (tmp_path / "b" / "notes.txt").write_text("not a manifest")
    (tmp_path / "a.json").write_text(
        '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "one"}}'
    )
    (tmp_path / "c.yaml").write_text("")
    single = tmp_path / "single.yaml"
    single.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: three}\n")
    stdin = "apiVersion: v1\nkind: Namespace\nmetadata: {name: four}\n"

    manifests = load_paths([str(tmp_path / "b"), "-", str(tmp_path)], stdin_text=stdin)

    assert [(m.source, m.name) for m in manifests] == [
        (str(tmp_path / "b" / "2.yml"), "two"),
        ("-", "four"),
        (str(tmp_path / "a.json"), "one"),
        (str(tmp_path / "b" / "2.yml"), "two"),
        (str(single), "three"),
    ]


def test_load_paths_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"^-: no standard input was given$"):
        load_paths(["-"])
    missing = str(tmp_path / "missing.yaml")
    with pytest.raises(ManifestError, match=r"missing\.yaml: No such file or directory$"):
        load_paths([missing])
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ManifestError, match=r"bin\.yaml: not UTF-8 text"):
        load_paths([str(binary)])
