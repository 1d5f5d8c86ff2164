"""What a setting is: one declaration from which its flag, variable, parsing and docs follow.

A :class:`Setting` names a value of ``meshplane serve`` once: its Python name (the keyword of
``Settings.load`` and the click parameter), its ``--flag``, its ``MESHPLANE_*`` environment
variable, its kind (how text becomes a value and which click type checks the flag), its
default, its help text and the section of the settings tree it belongs to.  From the tuple of
declarations in :mod:`meshplane.server.settings` follow:

- the click options of ``meshplane serve`` (and the shared ones of ``meshplane demo``):
  :mod:`meshplane.cli.settings_options`;
- the environment lookup and the parsing: :func:`resolve` (flags win over variables, variables
  over defaults; a bad value is a ``ValueError`` naming the flag or the variable);
- the README's configuration table: :func:`markdown_table` (``tests/test_settings.py`` checks
  that the README holds exactly this table).

Pure: no environment is read here except the mapping passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any


class Kind(enum.Enum):
    """How a setting's text becomes its value (and which click type checks its flag)."""

    TEXT = "text"
    PORT = "port"  # an integer 1-65535
    BOOL = "bool"  # a flag; in a variable 1/true/yes/on (anything else: off)
    PATH = "path"
    FILE = "file"  # a path to a file that exists
    DURATION = "duration"  # 90, 90s, 15m, 24h, 7d -> timedelta
    FRACTION = "fraction"  # a number strictly between 0 and 1
    CHOICE = "choice"  # one of ``choices``
    NAMES = "names"  # a repeatable flag; in a variable, comma-separated
    COUNT = "count"  # a positive integer
    SIZE = "size"  # bytes: 1048576, 64KiB, 4MiB, 1GiB -> int


def parse_bool(text: str | None) -> bool:
    """Whether the text of a variable turns a switch on: ``1``, ``true``, ``yes``, ``on``."""
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``24h`` or ``7d``; ValueError otherwise."""
    value = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    scale = units.get(value[-1:], 0)
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (90s, 15m, 24h, 7d)") from None
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return timedelta(seconds=seconds)


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2}
_SIZE_UNITS |= {"g": 1024**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """``1048576``, ``64KiB``, ``4MiB`` or ``1GiB`` (``K``/``M``/``G`` too) in bytes."""
    value = text.strip().lower().replace(" ", "")
    number = value.rstrip("kmgib")
    unit = value[len(number) :]
    if not number.isdigit() or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (1048576, 64KiB, 4MiB)")
    return int(number) * _SIZE_UNITS[unit]


def size_text(value: int) -> str:
    """``4194304`` -> ``4MiB`` (bytes when not a whole number of KiB)."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting of ``meshplane serve``, declared once."""

    name: str
    """The Python name: ``Settings.load(name=...)`` and the click parameter."""
    flag: str
    env: str
    kind: Kind
    help: str
    section: str
    """The part of the settings tree (and of the README table) it belongs to."""
    default: Any = None
    """The value when neither the flag nor the variable is given (None: unset)."""
    default_text: str | None = None
    """How the default reads in ``--help`` and the README (default: the default itself)."""
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    check: Callable[[Any], str | None] | None = None
    """Returns what is wrong with a value (None: fine)."""

    def parse(self, text: str) -> Any:
        """The value of ``text`` (a variable's text, or a string handed to ``Settings.load``)."""
        kind = self.kind
        if kind is Kind.BOOL:
            return parse_bool(text)
        if kind is Kind.NAMES:
            return tuple(name.strip() for name in text.split(",") if name.strip())
        if kind in (Kind.PATH, Kind.FILE):
            return Path(text)
        if kind is Kind.DURATION:
            return parse_duration(text)
        if kind in (Kind.PORT, Kind.COUNT):
            return int(text)
        if kind is Kind.SIZE:
            return parse_size(text)
        if kind is Kind.FRACTION:
            return float(text)
        return text

    def validate(self, value: Any, source: str) -> Any:
        """``value`` if it is acceptable, else ValueError naming ``source`` (flag or variable)."""
        problem: str | None = None
        if self.kind is Kind.PORT and not 1 <= value <= 65535:
            problem = f"{value} is not a port (1-65535)"
        elif self.kind in (Kind.COUNT, Kind.SIZE) and value < 1:
            problem = f"{value} must be at least 1"
        elif self.kind is Kind.FRACTION and not 0 < value < 1:
            problem = f"{value} is not between 0 and 1"
        elif self.kind is Kind.CHOICE and value not in self.choices:
            problem = f"{value!r} is not one of {', '.join(self.choices)}"
        elif self.check is not None:
            problem = self.check(value)
        if problem is not None:
            raise ValueError(f"{source}: {problem}")
        return value

    @property
    def shown_default(self) -> str | None:
        if self.default_text is not None:
            return self.default_text
        if self.default is None or self.default is False or self.default == ():
            return None
        if isinstance(self.default, timedelta):
            return _duration_text(self.default)
        if self.kind is Kind.SIZE:
            return size_text(self.default)
        return str(self.default)


def _duration_text(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _given(value: Any) -> bool:
    return value is not None and value != () and value != ""


def resolve(
    settings: Iterable[Setting], given: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    """The value of every setting: the one given (flag or keyword) if any, else the variable's,
    else the default.  ValueError names an unknown keyword or a bad value."""
    declared = {setting.name: setting for setting in settings}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, setting in declared.items():
        value = given.get(name)
        source = setting.flag
        if not _given(value):
            text = env.get(setting.env)
            value, source = (text, setting.env) if text else (None, setting.env)
        if isinstance(value, str):
            try:
                value = setting.parse(value)
            except ValueError as error:
                raise ValueError(f"{source}: {error}") from None
        if value is None:
            values[name] = setting.default
        else:
            values[name] = setting.validate(value, source)
    return values


def markdown_table(settings: Iterable[Setting]) -> str:
    """The README's configuration table: one row a setting, in declaration order."""
    rows = [
        "| section | flag | variable | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for setting in settings:
        if setting.default_text is not None:
            default = setting.default_text  # prose
        elif setting.kind is Kind.BOOL:
            default = "off"
        elif setting.shown_default is not None:
            default = f"`{setting.shown_default}`"
        else:
            default = "none"
        cells = (
            setting.section,
            f"`{setting.flag}`",
            f"`{setting.env}`",
            default,
            setting.help.replace("|", "\\|"),
        )
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
