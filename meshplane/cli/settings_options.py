"""Click options generated from the settings declaration (``meshplane.server.settings``).

:func:`settings_options` decorates ``meshplane serve`` with one option per declared setting
(and ``meshplane demo`` with the few it shares, under its own defaults): flag, type, help and
the ``[env ...; default ...]`` note all come from the :class:`~meshplane.server.setting.Setting`.
An option left out passes None (or ``()``), so ``Settings.load`` falls back to the variable,
then the default.  Used by ``meshplane.cli.main``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from meshplane.cli.common import ExistingFile
from meshplane.server.setting import Kind, Setting
from meshplane.server.settings import SETTINGS

F = TypeVar("F", bound=Callable[..., Any])


def _type(setting: Setting) -> Any:
    kind = setting.kind
    if kind is Kind.PORT:
        return click.IntRange(1, 65535)
    if kind is Kind.COUNT:
        return click.IntRange(min=1)
    if kind is Kind.FRACTION:
        return click.FloatRange(0, 1, min_open=True, max_open=True)
    if kind is Kind.CHOICE:
        return click.Choice(setting.choices)
    if kind is Kind.PATH:
        return click.Path(path_type=Path, dir_okay=setting.name.endswith("_dir"))
    if kind is Kind.FILE:
        return ExistingFile(path_type=Path)
    return None  # text, durations and sizes (parsed by Settings.load) and names


def _option(setting: Setting, own: tuple[Any, str | None] | None) -> Callable[[F], F]:
    options: dict[str, Any] = {"metavar": setting.metavar, "type": _type(setting)}
    if own is not None:  # a command with its own default (and meaning) of the setting
        default, text = own
        options.update(default=default, show_default=True, help=text or setting.help)
    else:
        shown = setting.shown_default
        note = f"env {setting.env}" + (f"; default {shown.replace('`', '')}" if shown else "")
        options["help"] = f"{setting.help.replace('`', '')} [{note}]."
        if setting.kind is Kind.BOOL:
            options.update(is_flag=True, default=None)
        elif setting.kind is Kind.NAMES:
            options.update(multiple=True)
    return click.option(setting.flag, setting.name, **options)


def settings_options(
    *names: str, defaults: Mapping[str, tuple[Any, str | None]] | None = None
) -> Callable[[F], F]:
    """The options of the settings ``names`` (every declared setting if none), in declaration
    order; ``defaults`` gives a setting a command's own default and help text (None: the
    declared help), shown in ``--help`` instead of the variable."""
    unknown = set(names) - {s.name for s in SETTINGS}
    if unknown:
        raise ValueError(f"undeclared settings: {', '.join(sorted(unknown))}")
    chosen = [s for s in SETTINGS if not names or s.name in names]
    own = defaults or {}

    def decorate(command: F) -> F:
        for setting in reversed(chosen):
            command = _option(setting, own.get(setting.name))(command)
        return command

    return decorate
