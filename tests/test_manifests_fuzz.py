"""Random and mutated documents: reading and translating them only ever raises ManifestError."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshplane.manifests import Manifest, ManifestError, load_paths, parse_documents, translate
from meshplane.manifests.crds import SPECS
from meshplane.manifests.schema import ListOf, Node, Obj

WEBAPP = Path(__file__).parents[1] / "examples" / "webapp"
BODIES = [dict(m.body) for m in load_paths([str(WEBAPP)])]


def _field_names(node: Node, found: set[str]) -> set[str]:
    if isinstance(node, Obj):
        for name, field in node.fields.items():
            found.add(name)
            _field_names(field.node, found)
    elif isinstance(node, ListOf):
        _field_names(node.item, found)
    return found


NAMES = sorted(
    set().union(*(_field_names(spec, set()) for spec in SPECS.values()))
    | {"apiVersion", "kind", "metadata", "spec", "labels", "items", "matchLabels", "key"}
)
KEYS = st.sampled_from(NAMES) | st.text(max_size=6)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [
            "",
            "/",
            "*",
            "http",
            "webapp",
            "green",
            "mesh",
            "appmesh.k8s.aws/v1beta2",
            "appmesh.k8s.aws/v1beta1",
            "VirtualNode",
            "List",
            "arn:aws:appmesh:r:1:mesh/webapp/virtualNode/x",
            "arn:aws:appmesh:r:1:mesh/webapp/virtualService/y",
        ]
    )
    | st.text(max_size=8)
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=16,
)
NAMESPACES = st.dictionaries(
    st.sampled_from(["service-ns", "green", "blue", "gateway-ns", "app-ns", "x"]),
    st.dictionaries(
        st.sampled_from(["mesh", "gateway", "bad key!"]),
        st.sampled_from(["webapp", "ingress-gw", ""]),
    ),
    max_size=4,
)
SETTINGS = settings(
    max_examples=int(os.environ.get("MESHPLANE_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _translate_text(text: str, namespaces: dict[str, dict[str, str]]) -> None:
    problems: tuple[str, ...] | None = None
    try:
        translate(parse_documents(text, "fuzz.yaml"), namespaces=namespaces)
    except ManifestError as error:
        problems = error.problems
    if problems is not None:
        assert problems
        assert all(line.startswith("fuzz.yaml") and "\n" not in line for line in problems)


@SETTINGS
@given(st.text(max_size=300))
def test_random_text_only_raises_manifest_error(text: str) -> None:
    _translate_text(text, {})


YAMLISH = st.lists(
    st.sampled_from(
        [
            "---",
            "kind: VirtualNode",
            "apiVersion: appmesh.k8s.aws/v1beta2",
            "metadata:",
            "  name: a",
            "  namespace: green",
            "spec:",
            "  listeners:",
            "  - portMapping:",
            "      port: 8080",
            "  awsName: &x a",
            "  b: *x",
            "  c: [1, {d: e}",
            "  <<: {a: 1}",
            "items:",
            "- kind: List",
            "  - {}",
            "\t",
            "? [a]",
            ": b",
            "'",
            '"\\x"',
            "!!set {a}",
            "kind: Mesh",
            "spec: {namespaceSelector: {}}",
        ]
    ),
    max_size=20,
).map("\n".join)


@SETTINGS
@given(YAMLISH, NAMESPACES)
def test_yamlish_text_only_raises_manifest_error(
    text: str, namespaces: dict[str, dict[str, str]]
) -> None:
    _translate_text(text, namespaces)


@SETTINGS
@given(st.lists(VALUES, max_size=4), NAMESPACES)
def test_random_structures_only_raise_manifest_error(
    documents: list[Any], namespaces: dict[str, dict[str, str]]
) -> None:
    _translate_text("\n---\n".join(json.dumps(d) for d in documents), namespaces)


def _mutate(data: st.DataObject, body: Any) -> Any:
    """Replace, delete or add one value somewhere in ``body``."""
    if not isinstance(body, dict | list) or not body or data.draw(st.integers(0, 4)) == 0:
        return data.draw(VALUES)
    if isinstance(body, dict):
        key = data.draw(st.sampled_from(sorted(body)))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del body[key]
        elif action == "add":
            body[data.draw(KEYS)] = data.draw(VALUES)
        else:
            body[key] = _mutate(data, body[key])
        return body
    index = data.draw(st.integers(0, len(body) - 1))
    body[index] = _mutate(data, body[index])
    return body


@SETTINGS
@given(st.data(), NAMESPACES)
def test_mutated_valid_manifests_only_raise_manifest_error(
    data: st.DataObject, namespaces: dict[str, dict[str, str]]
) -> None:
    bodies = copy.deepcopy(BODIES)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(bodies) - 1))
        bodies[index] = _mutate(data, bodies[index])
    _translate_text("\n---\n".join(json.dumps(b) for b in bodies), namespaces)


EXPECTED = translate(
    parse_documents("\n---\n".join(json.dumps(b) for b in BODIES), "fuzz.yaml"), namespaces={}
)


@settings(max_examples=25, deadline=None)
@given(st.permutations(BODIES))
def test_the_order_of_documents_does_not_change_the_result(bodies: list[Any]) -> None:
    manifests = parse_documents("\n---\n".join(json.dumps(b) for b in bodies), "fuzz.yaml")
    translation = translate(manifests, namespaces={})
    assert [(r.key, r.spec) for r in translation.resources] == [
        (r.key, r.spec) for r in EXPECTED.resources
    ]


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["appmesh.k8s.aws/v1beta2", "v1", "appmesh.k8s.aws/v1beta1"]),
            st.sampled_from([*SPECS, "Namespace", "Route"]),
            st.sampled_from(["a", "b"]),
            st.sampled_from([None, "green", "gateway-ns"]),
            st.dictionaries(KEYS, VALUES, max_size=5),
        ),
        max_size=6,
    ),
    NAMESPACES,
)
def test_manifests_built_directly_only_raise_manifest_error(
    documents: list[tuple[str, str, str, str | None, dict[str, Any]]],
    namespaces: dict[str, dict[str, str]],
) -> None:
    """The server rebuilds stored manifests itself; odd bodies still give ManifestError."""
    manifests = [
        Manifest("fuzz.yaml", index, api_version, kind, name, namespace, body)
        for index, (api_version, kind, name, namespace, body) in enumerate(documents)
    ]
    problems: tuple[str, ...] | None = None
    try:
        translate(manifests, namespaces=namespaces)
    except ManifestError as error:
        problems = error.problems
    if problems is not None:
        assert all(line.startswith("fuzz.yaml") and "\n" not in line for line in problems)
