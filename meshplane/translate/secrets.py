"""Secrets (SDS): the TLS certificates and validation contexts a proxy needs.

A placeholder: listener TLS (``listeners[].tls``) and client TLS policies
(``backends[].virtualService.clientPolicy.tls``, ``backendDefaults``) are not translated yet,
so a proxy gets no secrets.  The mesh certificate authority and SPIFFE identities will make
the secrets here (``Secret`` messages named after what App Mesh's SDS integration uses) and
the matching transport sockets in :mod:`~meshplane.translate.listeners` and
:mod:`~meshplane.translate.clusters`.  Until then, :func:`tls_problems` tells
``proxy-status`` which TLS settings are not enforced.

Used by :mod:`meshplane.translate.proxy`.
"""

from __future__ import annotations

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from meshplane.model.virtual_node import VirtualNodeSpec


def node_secrets(node: VirtualNodeSpec) -> list[secret_pb2.Secret]:
    """The secrets of a virtual node's proxy (none until TLS is translated)."""
    del node
    return []


def tls_problems(node: VirtualNodeSpec) -> list[str]:
    """The TLS settings of ``node`` that the translation does not apply yet."""
    problems = []
    for listener in node.listeners or ():
        if listener.tls is not None and listener.tls.mode != "DISABLED":
            problems.append(
                f"listener port {listener.portMapping.port}: TLS mode {listener.tls.mode}"
                " is not applied yet (plain text is served)"
            )
    policies = []
    if node.backendDefaults is not None and node.backendDefaults.clientPolicy is not None:
        policies.append(("backendDefaults", node.backendDefaults.clientPolicy))
    for backend in node.backends or ():
        service = backend.virtualService
        if service is not None and service.clientPolicy is not None:
            policies.append((f"backend {service.virtualServiceName!r}", service.clientPolicy))
    for where, policy in policies:
        if policy.tls is not None:
            problems.append(f"{where}: client TLS policy is not applied yet")
    return problems
