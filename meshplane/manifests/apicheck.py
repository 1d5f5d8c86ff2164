"""Validation of each produced App Mesh API spec by the resource model.

The one seam between the manifests and the model's rules: ``meshplane.model.parse_spec(kind,
spec)`` raises ``BadRequestError`` with messages like ``spec.listeners[0].portMapping.port:
must be at most 65535``.  ``api_problems`` returns those problems as (API path, message)
pairs so that the translator can report them at the manifest's own field paths.

Called by ``meshplane.manifests.conversion``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from meshplane.errors import BadRequestError
from meshplane.manifests.errors import Path
from meshplane.model import Kind, parse_spec

_PATH = r"spec(?:\.[A-Za-z0-9_]+|\[\d+\])*"
_PROBLEM_START = re.compile(rf"(?:^|(?<=; )|(?<=\n))({_PATH}): ")
_PART = re.compile(r"\.?([A-Za-z0-9_]+)|\[(\d+)\]")


def api_problems(kind: Kind, spec: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """What the App Mesh model finds wrong with ``spec``; empty when it is valid."""
    try:
        parse_spec(kind, spec)
    except BadRequestError as error:
        return split_problems(error.message)
    return []


def split_problems(message: str) -> list[tuple[Path, str]]:
    """``"spec.a[0].b: bad; spec.c: worse"`` -> ``[(("spec","a",0,"b"), "bad"), ...]``."""
    starts = list(_PROBLEM_START.finditer(message))
    if not starts:
        return [((), message)]
    problems: list[tuple[Path, str]] = []
    if starts[0].start() > 0:
        problems.append(((), message[: starts[0].start()].rstrip("; \n")))
    for number, start in enumerate(starts):
        end = starts[number + 1].start() if number + 1 < len(starts) else len(message)
        text = message[start.end() : end].rstrip("; \n")
        problems.append((parse_path(start.group(1)), text))
    return problems


def parse_path(text: str) -> Path:
    """``"spec.listeners[0].tls"`` -> ``("spec", "listeners", 0, "tls")``."""
    parts: list[str | int] = []
    for match in _PART.finditer(text):
        name, index = match.groups()
        parts.append(int(index) if index is not None else name)
    return tuple(parts)
