"""The error a bad manifest raises, and how field paths are spelled in its message.

Every problem names where it is: ``<file>#<doc> <Kind> <namespace>/<name>: <field path>:
<message>``.  One ``ManifestError`` may carry several such problems (one per line), so that
``meshplane apply -f dir/`` reports everything wrong at once.  Raised by every module of
``meshplane.manifests``; caught by the apply endpoint and the CLI like any other
``BadRequestError``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from meshplane.errors import BadRequestError

Path = tuple[str | int, ...]
"""A field path: member names and list indexes, e.g. ``("spec", "listeners", 0, "tls")``."""


class ManifestError(BadRequestError):
    """One or more problems in the given manifests; ``problems`` holds one line each."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        given = (problems,) if isinstance(problems, str) else tuple(problems)
        lines = tuple(_one_line(line) for line in given)
        super().__init__("\n".join(lines))
        self.problems: tuple[str, ...] = lines

    @classmethod
    def combine(cls, errors: Iterable[ManifestError]) -> ManifestError:
        """All problems of ``errors`` in one error, duplicates dropped, order kept."""
        seen: dict[str, None] = {}
        for error in errors:
            for line in error.problems:
                seen.setdefault(line, None)
        return cls(list(seen))


def shown(value: object) -> str:
    """``repr(value)``, cut to ``SHOWN_CHARACTERS`` with the full length said.

    Messages quote what the user wrote so they can find it, but a 60 MB label value must not
    come back whole in an error.
    """
    text = repr(value)
    if len(text) <= SHOWN_CHARACTERS:
        return text
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[: SHOWN_CHARACTERS - 1]}\u2026 ({size:,} characters)"


def clipped(text: str) -> str:
    """``text`` as it is, or cut to ``SHOWN_CHARACTERS`` with the full length said."""
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return f"{text[: SHOWN_CHARACTERS - 1]}\u2026 ({len(text):,} characters)"


SHOWN_CHARACTERS = 320
"""How much of a user's value an error message quotes: a whole Kubernetes name (253) with its
namespace (63), never a megabyte."""


def format_path(path: Path) -> str:
    """``("spec", "routes", 0, "name")`` -> ``spec.routes[0].name``; odd keys as ``["a b"]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif len(part) > SHOWN_CHARACTERS:
            text += f"[{shown(part)}]"
        elif not _PLAIN_KEY.match(part):
            text += f"[{json.dumps(part)}]"
        else:
            text += f".{part}" if text else part
    return text


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_./-]+$")


def _one_line(text: str) -> str:
    """``text`` with control characters (line breaks included) escaped."""
    return "".join(
        char if char.isprintable() or char == " " else char.encode("unicode_escape").decode()
        for char in text
    )


class FieldProblem(Exception):
    """A problem at a field of the manifest being translated; the caller adds which manifest.

    Internal to ``meshplane.manifests``: every public function turns it into a
    ``ManifestError`` with ``Manifest.error`` before it leaves the package.
    """

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{format_path(path)}: {message}")
        self.path = path
        self.message = message
