"""Virtual gateway proxies: ingress listeners and gateway routes (not translated yet).

App Mesh gives a gateway ``lds_ingress_<ip>_<listener port>`` listeners whose routes
(``rds_ingress_<proto>_<port>``, virtual host ``self_redirect``) send each gateway route,
with its prefix and Host rewritten to the target virtual service, to a
``cds_ingress_<mesh>_<gateway>_self_redirect_<proto>_<port>`` cluster that points back at the
gateway's own egress listener; that egress listener then routes like a sidecar's, for the
virtual services the gateway routes target.  :func:`translate_gateway` is the seam where that
goes: it receives the same :class:`~meshplane.translate.context.Context` as the node
translation and returns the resources (``inputs`` and ``problems`` are added from the
context by :mod:`meshplane.translate.proxy`); for now a gateway gets nothing and its proxy
waits.

Called by :mod:`meshplane.translate.proxy`.
"""

from __future__ import annotations

from meshplane.translate.context import Context
from meshplane.translate.resources import ProxyResources


def translate_gateway(ctx: Context) -> ProxyResources:
    """The resources of the gateway ``ctx.target`` (none yet: gateways come later)."""
    if ctx.gateway(ctx.target.name) is None:
        return ProxyResources()
    ctx.problem("virtual gateways are not translated yet")
    return ProxyResources()
