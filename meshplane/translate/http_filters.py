"""The HTTP filter chain of a connection manager, in one declared order.

:data:`HTTP_FILTER_ORDER` is where every HTTP filter meshplane writes sits in a chain, first to
last (the router always last).  A listener builder collects the filters it wants by name in an
:class:`HttpFilters` (``filters.add(HEALTH_CHECK, config)``) and :meth:`HttpFilters.build`
returns them in that order, so no builder splices a list by position.  A new filter (a local
rate limit, external authorization, a header rewrite, fault injection, ...) adds its name to
:data:`HTTP_FILTER_ORDER` at its place and is added by the translation module that decides it
applies (:mod:`meshplane.translate.listeners` for listener-wide ones).

Pure; used by :mod:`meshplane.translate.listeners`.
"""

from __future__ import annotations

from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import message

from meshplane.translate.protos import pack

HEALTH_CHECK = "envoy.filters.http.health_check"
DYNAMIC_FORWARD_PROXY = "envoy.filters.http.dynamic_forward_proxy"
ROUTER = "envoy.filters.http.router"

HTTP_FILTER_ORDER: tuple[str, ...] = (
    HEALTH_CHECK,  # answers the gateway's health check itself, before anything else
    DYNAMIC_FORWARD_PROXY,  # resolves ALLOW_ALL egress destinations, right before routing
    ROUTER,  # always last
)


class HttpFilters:
    """The HTTP filters of one connection manager, by name; the router is always there."""

    def __init__(self) -> None:
        self._configs: dict[str, message.Message] = {ROUTER: router_pb2.Router()}

    def add(self, name: str, config: message.Message) -> HttpFilters:
        """Add the filter ``name`` with its typed config (ValueError: not in the order, or
        added twice)."""
        if name not in HTTP_FILTER_ORDER:
            raise ValueError(f"HTTP filter {name!r} has no place in HTTP_FILTER_ORDER")
        if name in self._configs:
            raise ValueError(f"HTTP filter {name!r} is already in this chain")
        self._configs[name] = config
        return self

    def build(self) -> list[hcm_pb2.HttpFilter]:
        """The filters in :data:`HTTP_FILTER_ORDER`."""
        return [
            hcm_pb2.HttpFilter(name=name, typed_config=pack(self._configs[name]))
            for name in HTTP_FILTER_ORDER
            if name in self._configs
        ]
