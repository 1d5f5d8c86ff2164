"""The data plane side: Envoy bootstrap generation and the Envoy process runner.

Public surface::

    from meshplane import proxy
    options = proxy.BootstrapOptions.from_env(xds_port=15000)
    bootstrap = proxy.build_bootstrap(options)                 # JSON-able dict
    code = proxy.run_envoy(proxy.EnvoyOptions(options))        # foreground, signals forwarded
    with proxy.start_envoy(proxy.EnvoyOptions(options)) as envoy:  # background
        envoy.wait_admin()

Imports only ``meshplane.errors`` and ``meshplane.model.kinds`` from the rest of meshplane.
"""

from meshplane.proxy.bootstrap import BootstrapError, BootstrapOptions, XdsTls, build_bootstrap
from meshplane.proxy.runner import (
    EnvoyNotFoundError,
    EnvoyOptions,
    EnvoyProcess,
    EnvoyStartError,
    find_envoy_binary,
    run_envoy,
    start_envoy,
)

__all__ = [
    "BootstrapError",
    "BootstrapOptions",
    "EnvoyNotFoundError",
    "EnvoyOptions",
    "EnvoyProcess",
    "EnvoyStartError",
    "XdsTls",
    "build_bootstrap",
    "find_envoy_binary",
    "run_envoy",
    "start_envoy",
]
