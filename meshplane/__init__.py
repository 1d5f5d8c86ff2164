"""meshplane: a self-hosted service mesh that speaks the AWS App Mesh API and drives Envoy.

The package is layered (enforced by import-linter, see pyproject.toml):
``model`` <- ``store`` <- ``service``/``manifests`` <- ``translate`` <- ``api``/``xds``/``proxy``
<- ``server`` <- ``cli``.  Nothing happens at import time.
"""

__version__ = "0.1.0"
