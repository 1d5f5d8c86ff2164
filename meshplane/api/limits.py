"""Bounds on what one HTTP request may make the API do, and the JSON reader that keeps them.

:class:`HttpLimits` holds the request limits (body size, JSON nesting, timeouts, connections)
that ``meshplane serve`` configures (``meshplane.server.settings``); :func:`parse_json` turns a
request body into JSON data under them: a body nested deeper than ``max_json_depth``, holding
a key twice, or a string with a lone UTF-16 surrogate (``"\\ud800"``: not Unicode, no database
or proxy takes it) is refused with a ``BadRequestError`` naming the place and the rule, like
every other bad input.  Used by :mod:`meshplane.api.appmesh` (``read_json_body``),
:mod:`meshplane.api.app` and the HTTP server wiring.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from meshplane.errors import BadRequestError
from meshplane.model.common import lone_surrogate

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one client may make the API do (defaults: far above any real use)."""

    max_body: int = 4 * MiB
    """Bytes of one request body (manifests of an apply included)."""
    max_json_depth: int = 64
    """Nesting of JSON objects and arrays in a body (App Mesh specs nest about 10 deep)."""
    header_timeout: float = 10.0
    """Seconds a connection has to send a request's head once it started (or connected)."""
    body_timeout: float = 30.0
    """Seconds a request has to send its whole body."""
    keep_alive_timeout: float = 5.0
    """Seconds an idle keep-alive connection stays open."""
    max_connections: int = 2048
    """Open API connections; one more is answered 503 and closed."""


def parse_json(raw: bytes, limits: HttpLimits, *, what: str = "request body") -> Any:
    """The JSON data of ``raw`` under ``limits`` (see the module docstring)."""
    if len(raw) > limits.max_body:
        raise BadRequestError(f"{what}: larger than {limits.max_body} bytes")
    try:
        data = json.loads(raw, object_pairs_hook=_object, parse_constant=_no_constant)
    except RecursionError:
        raise BadRequestError(
            f"{what}: nested deeper than {limits.max_json_depth} levels"
        ) from None
    except _DuplicateKey as error:
        raise BadRequestError(f"{what}: {error.args[0]!r}: this key appears twice") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequestError(f"{what}: not valid JSON ({error})") from None
    _check(data, limits.max_json_depth, what)
    return data


class _DuplicateKey(Exception):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _check(data: Any, max_depth: int, what: str) -> None:
    """Refuse nesting deeper than ``max_depth`` and strings with lone surrogates, naming the
    first offending place (iterative: a deep document cannot exhaust the stack here)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= max_depth:
                where = path.lstrip(".") or "the top level"
                raise BadRequestError(
                    f"{what}: {where}: nested deeper than {max_depth} levels (the limit)"
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                sub = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
                if isinstance(key, str) and lone_surrogate(key) is not None:
                    raise BadRequestError(f"{what}: {sub.lstrip('.')}: {_SURROGATE_RULE} (a key)")
                stack.append((item, sub, depth + 1))
        elif isinstance(value, str) and lone_surrogate(value) is not None:
            raise BadRequestError(f"{what}: {path.lstrip('.') or 'value'}: {_SURROGATE_RULE}")


_SURROGATE_RULE = "must be Unicode text (it holds a lone UTF-16 surrogate such as \\ud800)"
