"""Property tests: whatever JSON arrives, parse_spec answers with a spec or a BadRequestError.

Random JSON documents and random mutations of valid specs (from botocore-driven minimal
specs) are thrown at every kind; anything accepted must round-trip through dump_spec.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshplane.errors import BadRequestError
from meshplane.model import Kind, dump_spec, parse_spec
from meshplane.model.kinds import APP_MESH_KINDS
from tests.support.model import ROOTS, member_paths, minimal, shape

MEMBER_NAMES = sorted(
    {name for root in ROOTS.values() for path, _ in member_paths(shape(root)) for name in path}
)
PATHS = {kind: [p for p, _ in member_paths(shape(root))] for kind, root in ROOTS.items()}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["/", "http", "grpc", "tcp", "s", "ms", "STRICT", "/aws-appmesh", ""])
)
keys = st.sampled_from(MEMBER_NAMES) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)
kinds = st.sampled_from(APP_MESH_KINDS)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(kind: Kind, doc: Any) -> None:
    try:
        spec = parse_spec(kind, doc)
    except BadRequestError as exc:
        message = exc.message
    else:
        message = ""
    if message:
        assert "pydantic" not in message
        assert "Input should be" not in message
        return
    dumped = dump_spec(spec)
    again = parse_spec(kind, dumped)
    assert again == spec
    assert dump_spec(again) == dumped


@SETTINGS
@given(kind=kinds, doc=json_values)
def test_random_json_only_raises_bad_request(kind: Kind, doc: Any) -> None:
    _check(kind, doc)


def _nodes(doc: Any) -> list[Any]:
    """Every dict and list inside ``doc`` (including itself)."""
    found = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            found.append(node)
            stack.extend(node)
    return found


@st.composite
def mutated_specs(draw: st.DrawFn) -> tuple[Kind, Any]:
    kind = draw(kinds)
    path = draw(st.sampled_from(PATHS[kind]))
    doc = copy.deepcopy(minimal(shape(ROOTS[kind]), path))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        node = draw(st.sampled_from(_nodes(doc)))
        action = draw(st.sampled_from(["set", "delete", "add", "append"]))
        if isinstance(node, dict) and node and action in ("set", "delete"):
            key = draw(st.sampled_from(sorted(node)))
            if action == "delete":
                del node[key]
            else:
                node[key] = draw(json_values)
        elif isinstance(node, dict):
            node[draw(keys)] = draw(json_values)
        elif node and action in ("set", "delete"):
            index = draw(st.integers(min_value=0, max_value=len(node) - 1))
            if action == "delete":
                del node[index]
            else:
                node[index] = draw(json_values)
        else:
            node.append(
                copy.deepcopy(node[0]) if node and action == "append" else draw(json_values)
            )
    return kind, doc


@SETTINGS
@given(case=mutated_specs())
def test_mutated_specs_only_raise_bad_request(case: tuple[Kind, Any]) -> None:
    _check(*case)


@SETTINGS
@given(kind=kinds, data=st.data())
def test_valid_specs_round_trip(kind: Kind, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(PATHS[kind]))
    doc = minimal(shape(ROOTS[kind]), path)
    spec = parse_spec(kind, doc)
    dumped = dump_spec(spec)
    assert parse_spec(kind, dumped) == spec
    assert dump_spec(parse_spec(kind, dumped)) == dumped
