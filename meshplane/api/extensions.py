"""meshplane's own endpoints under ``/meshplane/v1`` (what App Mesh's API has no words for).

- ``POST /meshplane/v1/apply`` and ``POST /meshplane/v1/delete``: Kubernetes manifests
  ``{"documents": [{"source": "app.yaml", "text": "..."}], "dryRun": false, "strict": false}``
  (``strict``: unknown fields are errors instead of warnings; always, with ``strict_manifests``)
- ``GET /meshplane/v1/namespaces``, ``PUT /meshplane/v1/namespaces/{name}`` ``{"labels": {}}``
- ``GET /meshplane/v1/manifests``: the applied manifests
- ``GET /meshplane/v1/proxies[?mesh=M&name=N]``: connected proxies and their xDS state
What a caller sees and may change follows its roles (``meshplane.service.access``): lists
hold only what is in meshes it may view.  Used by the CLI; mounted by ``meshplane.api.app``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from meshplane.api.appmesh import guarded, read_json_body
from meshplane.api.auth import principal_of
from meshplane.errors import BadRequestError
from meshplane.manifests import Manifest, ManifestLimits, parse_documents
from meshplane.service import inputs
from meshplane.service.access import Role
from meshplane.service.apply import ManifestService
from meshplane.service.resources import Caller, ResourceService

log = logging.getLogger(__name__)

Handler = Callable[[Request], Any]


def _documents(body: dict[str, Any], limits: ManifestLimits) -> list[Manifest]:
    """The manifests of an apply/delete body, under ``limits`` (in a worker thread: parsing
    YAML is slow pure Python, and must not hold up the event loop)."""
    unknown = sorted(set(body) - {"documents", "dryRun", "strict"})
    if unknown:
        raise BadRequestError(f"{unknown[0]}: unknown member (expected documents, dryRun, strict)")
    docs = body.get("documents")
    if not isinstance(docs, list):
        raise BadRequestError("documents: is required, a list of {source, text}")
    if len(docs) > limits.max_documents:
        raise BadRequestError(
            f"documents: more than {limits.max_documents} documents (the limit per apply)"
        )
    manifests: list[Manifest] = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            raise BadRequestError(f"documents[{i}]: must be an object with a text member")
        extra = sorted(set(doc) - {"source", "text"})
        if extra:
            raise BadRequestError(f"documents[{i}].{extra[0]}: unknown member (source, text)")
        source = doc.get("source", "-")
        if not isinstance(source, str):
            raise BadRequestError(f"documents[{i}].source: must be a string")
        manifests += parse_documents(doc["text"], source, limits)
        if len(manifests) > limits.max_documents:
            raise BadRequestError(
                f"documents: more than {limits.max_documents} objects (the limit per apply)"
            )
    return manifests


class ProxyStatusSource(Protocol):
    """The status JSON of the connected proxies, of one mesh and/or one name if given."""

    def __call__(
        self, *, mesh: str | None = None, name: str | None = None
    ) -> list[dict[str, Any]]: ...


class ExtensionsApi:
    def __init__(
        self,
        service: ResourceService,
        caller: Caller,
        manifests: ManifestService,
        *,
        proxies: ProxyStatusSource | None = None,
        limits: ManifestLimits | None = None,
        strict_manifests: bool = False,
    ) -> None:
        self.limits = limits or ManifestLimits()
        self.manifests = manifests
        self.strict_manifests = strict_manifests
        self.store = manifests.store
        self.caller = caller
        self.proxies = proxies

    def routes(self) -> list[BaseRoute]:
        prefix = "/meshplane/v1"
        return [
            Route(f"{prefix}/apply", guarded(self.apply), methods=["POST"]),
            Route(f"{prefix}/delete", guarded(self.delete), methods=["POST"]),
            Route(f"{prefix}/namespaces", guarded(self.list_namespaces), methods=["GET"]),
            Route(f"{prefix}/namespaces/{{name}}", guarded(self.label_namespace), methods=["PUT"]),
            Route(f"{prefix}/manifests", guarded(self.list_manifests), methods=["GET"]),
            Route(f"{prefix}/proxies", guarded(self.list_proxies), methods=["GET"]),
        ]

    def _caller(self, request: Request) -> Caller:
        return dataclasses.replace(self.caller, principal=principal_of(request))

    async def apply(self, request: Request) -> dict[str, Any]:
        return await self._manifests(request, remove=False)

    async def delete(self, request: Request) -> dict[str, Any]:
        return await self._manifests(request, remove=True)

    async def _manifests(self, request: Request, *, remove: bool) -> dict[str, Any]:
        body = await read_json_body(request, required=True)
        dry_run = body.get("dryRun", False)
        if not isinstance(dry_run, bool):
            raise BadRequestError("dryRun: must be true or false")
        strict = body.get("strict", False)
        if not isinstance(strict, bool):
            raise BadRequestError("strict: must be true or false")
        action = "delete manifests" if remove else "apply manifests"
        self.manifests.require(principal_of(request), dry_run=dry_run, action=action)
        manifests = await run_in_threadpool(_documents, body, self.limits)
        caller = self._caller(request)
        if remove:
            outcome = await run_in_threadpool(
                self.manifests.delete, manifests, caller=caller, dry_run=dry_run
            )
        else:
            outcome = await run_in_threadpool(
                self.manifests.apply,
                manifests,
                caller=caller,
                dry_run=dry_run,
                strict=strict or self.strict_manifests,
            )
        return outcome.as_json()

    async def list_namespaces(self, _: Request) -> dict[str, Any]:
        namespaces = await run_in_threadpool(self.store.namespaces)
        return {"namespaces": [{"name": n.name, "labels": dict(n.labels)} for n in namespaces]}

    async def label_namespace(self, request: Request) -> dict[str, Any]:
        principal_of(request).require_anywhere(Role.EDITOR, "label namespaces")
        name = inputs.resource_name(request.path_params["name"], "name")
        body = await read_json_body(request, required=True)
        if sorted(set(body) - {"labels"}):
            raise BadRequestError(f"{sorted(set(body) - {'labels'})[0]}: unknown member (labels)")
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
        query = request.query_params
        unknown = sorted(set(query) - {"mesh", "name"})
        if unknown:
            raise BadRequestError(f"{unknown[0]}: unknown query parameter (expected mesh, name)")
        mesh = inputs.resource_name(query["mesh"], "mesh") if "mesh" in query else None
        name = inputs.resource_name(query["name"], "name") if "name" in query else None
        if mesh is not None:
            principal.require(mesh, Role.VIEWER, f"read the proxies of mesh {mesh}")
        proxies: list[dict[str, Any]] = []
        if self.proxies is not None:
            filters = {k: v for k, v in (("mesh", mesh), ("name", name)) if v is not None}
            # off the event loop: with xDS workers or replicas this asks other processes
            proxies = await run_in_threadpool(self.proxies, **filters)
        return {
            "proxies": [
                p
                for p in proxies
                if principal.can(str(p.get("mesh")), Role.VIEWER)
                and (mesh is None or p.get("mesh") == mesh)
                and (name is None or p.get("name") == name)
            ]
        }
