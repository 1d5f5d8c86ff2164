"""The web console: the live topology of a mesh, its resources, weight shifting.

- :mod:`~meshplane.console.graph`: the topology graph JSON (pure);
- :mod:`~meshplane.console.pages`: ``/console``, its bundle, and its JSON and event stream.

The page's source is ``console/`` (TypeScript, Vite, Cytoscape.js with the dagre layered
layout), built into ``meshplane/console/static`` by ``scripts/setup-venv``.  Wired by
:mod:`meshplane.server.run`.
"""

from meshplane.console.pages import ConsoleApi

__all__ = ["ConsoleApi"]
