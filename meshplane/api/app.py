"""The ASGI application: the App Mesh REST API plus meshplane's own endpoints.

Built by ``meshplane.server`` (``build_app``); routes:
- ``/v20190125/...``: the App Mesh API (``meshplane.api.appmesh``)
- ``/meshplane/v1/...``: manifests, namespaces, proxies (``meshplane.api.extensions``), API
  tokens and the audit log (``meshplane.api.admin``)
- ``/meshplane/v1/proxy-tokens``, ``/meshplane/v1/meshes/{mesh}/ca``: proxy tokens and the
  mesh CAs (``meshplane.api.authority``, passed in as ``extra_routes``)
- ``POST /`` with ``X-Amz-Target: Route53AutoNaming_v20170314.*``: the AWS Cloud Map API
  (``meshplane.api.cloudmap``)
- ``/openapi.json``, ``/healthz``, ``/metrics``
Every request passes the authentication middleware (``meshplane.api.auth``) first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from meshplane.api.admin import AdminApi
from meshplane.api.appmesh import AppMeshApi, error_response, json_response
from meshplane.api.auth import Authentication, Authenticator
from meshplane.api.cloudmap import CloudMapApi, DnsLookupApi
from meshplane.api.extensions import ExtensionsApi, ProxyStatusSource
from meshplane.api.limits import HttpLimits
from meshplane.api.openapi import openapi_document
from meshplane.errors import BadRequestError, NotFoundError
from meshplane.manifests import ManifestLimits
from meshplane.service.apply import ManifestService
from meshplane.service.cloudmap import CloudMapService
from meshplane.service.dns_answers import Answers
from meshplane.service.resources import Caller, ResourceService
from meshplane.service.tokens import TokenService
from meshplane.store.protocols import AuditLog

log = logging.getLogger(__name__)


def _any_path(path: str, endpoint: Callable[..., Any], methods: list[str]) -> Route:
    """A route whose ``{rest:path}`` matches any path, decoded newlines included (Starlette's
    pattern stops at them, which would skip the App Mesh API's own name checks)."""
    route = Route(path, endpoint, methods=methods)
    route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
    return route


def build_app(
    service: ResourceService,
    caller: Caller,
    manifests: ManifestService,
    *,
    registry: CollectorRegistry | None = None,
    before_metrics: Callable[[], Awaitable[None]] | None = None,
    proxies: ProxyStatusSource | None = None,
    lifespan: Any = None,
    extra_routes: Sequence[BaseRoute] = (),
    tokens: TokenService | None = None,
    audit_log: AuditLog | None = None,
    require_auth: bool = False,
    limits: HttpLimits | None = None,
    manifest_limits: ManifestLimits | None = None,
    strict_manifests: bool = False,
) -> Starlette:
    """The application; without ``tokens``, an open API for ``caller`` (in-process tests).
    With ``tokens``, ``audit_log`` is the log the admin API reads; ``before_metrics`` is awaited
    before each ``/metrics`` scrape (collectors that need other processes fetch there, so that
    the scrape itself never waits on the event loop)."""
    limits = limits or HttpLimits()
    appmesh = AppMeshApi(service, caller)
    extensions = ExtensionsApi(
        service,
        caller,
        manifests,
        proxies=proxies,
        limits=manifest_limits,
        strict_manifests=strict_manifests,
    )
    cloud_map = CloudMapApi(CloudMapService(service.store, service.partition), caller)
    dns_lookup = DnsLookupApi(Answers(service.store))
    document = openapi_document()

    async def openapi(_: Request) -> Response:
        return json_response(document)

    async def healthz(_: Request) -> Response:
        return json_response({"status": "ok", "revision": service.store.revision})

    async def metrics(_: Request) -> Response:
        if before_metrics is not None:
            await before_metrics()  # e.g. the xDS workers' metrics, fetched off the loop
        data = generate_latest(registry) if registry is not None else b""
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, _: Any = None) -> Response:
        allowed = sorted(
            {
                method
                for route in routes[:-1]
                if isinstance(route, Route)
                and not route.path.endswith("{rest:path}")
                and route.matches(request.scope)[0] is Match.PARTIAL
                for method in route.methods or ()
                if method != "HEAD"
            }
        )
        if allowed:  # the path exists, not with this method
            response = error_response(
                BadRequestError(f"{request.method} is not allowed here; use {allowed}")
            )
            response.status_code = 405
            response.headers["Allow"] = ", ".join(allowed)
            return response
        return error_response(NotFoundError(f"nothing at {request.url.path!r}"))

    methods = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"]
    routes: list[BaseRoute] = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/", cloud_map.handle, methods=["POST"]),
        Route("/meshplane/v1/dns/lookup", dns_lookup.handle, methods=["GET"]),
        _any_path("/v20190125/{rest:path}", appmesh.handle, methods),
        *extensions.routes(),
        *(
            AdminApi(tokens, audit_log).routes()
            if tokens is not None and audit_log is not None
            else []
        ),
        *extra_routes,
        _any_path("/{rest:path}", not_found, methods),
    ]
    middleware = []
    if tokens is not None:
        authenticator = Authenticator(tokens, required=require_auth)
        middleware.append(
            Middleware(Authentication, authenticator=authenticator, max_body=limits.max_body)
        )
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        # a 404 Starlette raises itself is a modeled error too
        exception_handlers={404: not_found},
    )
    app.state.http_limits = limits
    return app
