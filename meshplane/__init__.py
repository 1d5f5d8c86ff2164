"""meshplane: a self-hosted service mesh that speaks the AWS App Mesh API and drives Envoy.

The package is layered (import-linter contracts in pyproject.toml; ``docs/architecture.md``
says what each layer may import), lowest first: ``errors``, ``model`` (with the proxy
identity and node metadata contract), ``authority`` (CAs, SPIFFE IDs, proxy tokens),
``store``, ``manifests``, ``service``, ``translate``; then ``api``, ``xds``, ``proxy`` (and the
other components beside them), ``control``, ``server``/``client``, ``demo``, ``cli``.
``xds`` and ``proxy`` know nothing of each other; ``cli`` reaches the server through
``client`` (and the public ``meshplane.server`` entry points).  Nothing happens at import time.
"""

__version__ = "0.1.0"
