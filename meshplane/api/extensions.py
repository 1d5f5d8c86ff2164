"""meshplane's own endpoints under ``/meshplane/v1`` (what App Mesh's API has no words for).

- ``POST /meshplane/v1/apply`` and ``POST /meshplane/v1/delete``: Kubernetes manifests
  ``{"documents": [{"source": "app.yaml", "text": "..."}], "dryRun": false}``
- ``GET /meshplane/v1/namespaces``, ``PUT /meshplane/v1/namespaces/{name}`` ``{"labels": {}}``
- ``GET /meshplane/v1/manifests``: the applied manifests
- ``GET /meshplane/v1/proxies``: connected proxies and their xDS state
What a caller sees and may change follows its roles (``meshplane.service.access``): lists
hold only what is in meshes it may view.  Used by the CLI; mounted by ``meshplane.api.app``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from meshplane.api.appmesh import error_response, json_response, read_json_body
from meshplane.api.auth import principal_of
from meshplane.errors import BadRequestError, MeshplaneError
from meshplane.manifests import Manifest, parse_documents
from meshplane.service import inputs
from meshplane.service.access import Role
from meshplane.service.apply import ManifestService
from meshplane.service.resources import Caller, ResourceService

log = logging.getLogger(__name__)

Handler = Callable[[Request], Any]


def _documents(body: dict[str, Any]) -> list[Manifest]:
    docs = body.get("documents")
    if not isinstance(docs, list):
        raise BadRequestError("documents: is required, a list of {source, text}")
    manifests: list[Manifest] = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            raise BadRequestError(f"documents[{i}]: must be an object with a text member")
        source = doc.get("source")
        manifests += parse_documents(doc["text"], source if isinstance(source, str) else "-")
    return manifests


class ExtensionsApi:
    def __init__(
        self,
        service: ResourceService,
        caller: Caller,
        *,
        proxies: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.manifests = ManifestService(service.store)
        self.store = service.store
        self.caller = caller
        self.proxies = proxies

    def routes(self) -> list[BaseRoute]:
        prefix = "/meshplane/v1"
        return [
            Route(f"{prefix}/apply", self._guard(self.apply), methods=["POST"]),
            Route(f"{prefix}/delete", self._guard(self.delete), methods=["POST"]),
            Route(f"{prefix}/namespaces", self._guard(self.list_namespaces), methods=["GET"]),
            Route(
                f"{prefix}/namespaces/{{name}}", self._guard(self.label_namespace), methods=["PUT"]
            ),
            Route(f"{prefix}/manifests", self._guard(self.list_manifests), methods=["GET"]),
            Route(f"{prefix}/proxies", self._guard(self.list_proxies), methods=["GET"]),
        ]

    @staticmethod
    def _guard(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                result = await handler(request)
                return json_response(result)
            except MeshplaneError as error:
                return error_response(error)
            except Exception:
                log.exception("internal error in %s %s", request.method, request.url.path)
                return error_response(MeshplaneError("internal error; see the server log"))

        return endpoint

    def _caller(self, request: Request) -> Caller:
        return dataclasses.replace(self.caller, principal=principal_of(request))

    async def apply(self, request: Request) -> dict[str, Any]:
        body = await read_json_body(request)
        dry_run = bool(body.get("dryRun", False))
        self.manifests.require(principal_of(request), dry_run=dry_run, action="apply manifests")
        manifests = _documents(body)
        outcome = await run_in_threadpool(
            self.manifests.apply, manifests, caller=self._caller(request), dry_run=dry_run
        )
        return outcome.as_json()

    async def delete(self, request: Request) -> dict[str, Any]:
        body = await read_json_body(request)
        dry_run = bool(body.get("dryRun", False))
        self.manifests.require(principal_of(request), dry_run=dry_run, action="delete manifests")
        manifests = _documents(body)
        outcome = await run_in_threadpool(
            self.manifests.delete, manifests, caller=self._caller(request), dry_run=dry_run
        )
        return outcome.as_json()

    async def list_namespaces(self, _: Request) -> dict[str, Any]:
        namespaces = await run_in_threadpool(self.store.namespaces)
        return {"namespaces": [{"name": n.name, "labels": dict(n.labels)} for n in namespaces]}

    async def label_namespace(self, request: Request) -> dict[str, Any]:
        principal_of(request).require_anywhere(Role.EDITOR, "label namespaces")
        name = inputs.resource_name(request.path_params["name"], "name")
        body = await read_json_body(request)
        labels = body.get("labels")
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in labels.items()
        ):
            raise BadRequestError("labels: must be an object of string keys to string or null")
        outcome = await run_in_threadpool(
            self.manifests.label_namespace, name, labels, caller=self._caller(request)
        )
        return outcome.as_json()

    async def list_manifests(self, request: Request) -> dict[str, Any]:
        stored = await run_in_threadpool(self.manifests.visible_manifests, principal_of(request))
        return {
            "manifests": [
                {
                    "kind": m.kind,
                    "namespace": m.namespace or None,
                    "name": m.name,
                    "source": m.source,
                    "body": m.body,
                }
                for m in stored
            ]
        }

    async def list_proxies(self, request: Request) -> dict[str, Any]:
        principal = principal_of(request)
        proxies = self.proxies() if self.proxies is not None else []
        return {"proxies": [p for p in proxies if principal.can(str(p.get("mesh")), Role.VIEWER)]}
