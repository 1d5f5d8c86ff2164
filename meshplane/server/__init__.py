"""The running control plane: settings and the wiring of every component.

Public surface: :func:`serve` (``meshplane serve`` and ``meshplane demo`` start the control
plane through it), :class:`Application` (every long-lived component, handed to
``serve``'s ``on_started``) and :class:`~meshplane.server.settings.Settings`.  ``serve`` and
``Application`` are imported on first use, so that the CLI's other commands do not load the
server's dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshplane.server.settings import Settings

if TYPE_CHECKING:
    from meshplane.server.run import Application, serve

__all__ = ["Application", "Settings", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("serve", "Application"):
        from meshplane.server import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
