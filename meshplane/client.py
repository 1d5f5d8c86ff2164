"""An asyncio HTTP client for a meshplane server: the App Mesh API and ``/meshplane/v1``.

The CLI's only way to talk to the server (it runs these coroutines with ``asyncio.run``).
It sends an API token as ``Authorization: Bearer``, and checks an https server's certificate
against the system's CAs or a given CA file.  Errors come back as the same
``meshplane.errors`` classes the server raised, by their ``x-amzn-errortype``; a server that
cannot be reached raises ``ServerUnreachable``.
"""

from __future__ import annotations

import json as _json
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx

from meshplane import errors
from meshplane.model.kinds import Kind, ResourceKey

_ERRORS: dict[str, type[errors.MeshplaneError]] = {
    cls.code: cls
    for cls in (
        errors.BadRequestError,
        errors.NotFoundError,
        errors.ConflictError,
        errors.LimitExceededError,
        errors.TooManyTagsError,
        errors.ForbiddenError,
        errors.TooManyRequestsError,
        errors.ServiceUnavailableError,
    )
}
_ERRORS["ResourceInUseException"] = errors.ResourceInUseError


class ServerUnreachable(errors.MeshplaneError):
    code = "ServerUnreachable"


def _path(key_or_kind: ResourceKey | Kind, mesh: str = "", parent: str = "") -> str:
    if isinstance(key_or_kind, ResourceKey):
        kind, mesh, parent = key_or_kind.kind, key_or_kind.mesh, key_or_kind.parent
    else:
        kind = key_or_kind
    if kind is Kind.MESH:
        base = "/v20190125/meshes"
    elif kind.parent is not None:
        parent_part = f"{kind.parent.value}/{quote(parent, safe='')}"
        base = f"/v20190125/meshes/{quote(mesh, safe='')}/{parent_part}/{kind.plural}"
    else:
        base = f"/v20190125/meshes/{quote(mesh, safe='')}/{kind.plural}"
    if isinstance(key_or_kind, ResourceKey):
        return f"{base}/{quote(key_or_kind.name, safe='')}"
    return base


class Client:
    """Calls one meshplane server."""

    def __init__(self, http: httpx.AsyncClient, server: str) -> None:
        self._http = http
        self.server = server

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            response = await self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the meshplane server at {self.server} ({exc.__class__.__name__}); "
                "start it with 'meshplane serve' or point --server / MESHPLANE_SERVER at it"
            ) from None
        if response.status_code >= 400:
            code = response.headers.get("x-amzn-errortype", "").split(":", 1)[0]
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text or response.reason_phrase
            raise _ERRORS.get(code, errors.MeshplaneError)(message)
        return response.json()

    # App Mesh API -----------------------------------------------------------------------

    async def describe(self, key: ResourceKey) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", _path(key))
        return result

    async def list_resources(
        self, kind: Kind, mesh: str = "", parent: str = ""
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"limit": "100", **({"nextToken": token} if token else {})}
            page = await self._request("GET", _path(kind, mesh, parent), params=params)
            items += page[kind.plural]
            token = page.get("nextToken")
            if not token:
                return items

    async def list_all(self, kind: Kind) -> list[dict[str, Any]]:
        """Every resource of a kind across all meshes (and routers/gateways)."""
        meshes = await self.list_resources(Kind.MESH)
        if kind is Kind.MESH:
            return meshes
        result: list[dict[str, Any]] = []
        for mesh in meshes:
            name = mesh["meshName"]
            if kind.parent is None:
                result += await self.list_resources(kind, name)
                continue
            for parent in await self.list_resources(kind.parent, name):
                result += await self.list_resources(kind, name, parent[kind.parent.name_field])
        return result

    async def delete(self, key: ResourceKey) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("DELETE", _path(key))
        return result

    # meshplane API ----------------------------------------------------------------------

    async def apply(
        self,
        documents: list[tuple[str, str]],
        *,
        dry_run: bool = False,
        delete: bool = False,
        strict: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "documents": [{"source": s, "text": t} for s, t in documents],
            "dryRun": dry_run,
        }
        if strict:
            body["strict"] = True
        result: dict[str, Any] = await self._request(
            "POST", "/meshplane/v1/delete" if delete else "/meshplane/v1/apply", json=body
        )
        return result

    async def label_namespace(self, name: str, labels: Mapping[str, str | None]) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "PUT", f"/meshplane/v1/namespaces/{quote(name, safe='')}", json={"labels": labels}
        )
        return result

    async def namespaces(self) -> list[dict[str, Any]]:
        result = await self._request("GET", "/meshplane/v1/namespaces")
        return list(result["namespaces"])

    async def manifests(self) -> list[dict[str, Any]]:
        result = await self._request("GET", "/meshplane/v1/manifests")
        return list(result["manifests"])

    async def proxies(
        self, *, mesh: str | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        """The connected proxies (of ``mesh``, named ``name``, if given)."""
        params = {k: v for k, v in (("mesh", mesh), ("name", name)) if v is not None}
        result = await self._request("GET", "/meshplane/v1/proxies", params=params or None)
        return list(result["proxies"])

    async def telemetry(self, mesh: str, seconds: float | None = None) -> dict[str, Any]:
        """The golden signals of ``mesh`` over the last ``seconds`` (server default 60)."""
        params: dict[str, str] = {"mesh": mesh}
        if seconds is not None:
            params["seconds"] = f"{seconds:g}"
        result: dict[str, Any] = await self._request(
            "GET", "/meshplane/v1/telemetry", params=params
        )
        return result

    async def fleet(self) -> dict[str, Any]:
        """The replica's view of the fleet: its revision and lag, database, duty lease."""
        result: dict[str, Any] = await self._request("GET", "/meshplane/v1/fleet")
        return result

    async def tap(self, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """The requests a tap sees, as they happen (``GET /meshplane/v1/tap``), until the
        server ends the stream or the caller stops iterating."""
        try:
            async with self._http.stream(
                "GET", "/meshplane/v1/tap", params=params, timeout=httpx.Timeout(10, read=None)
            ) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    code = response.headers.get("x-amzn-errortype", "").split(":", 1)[0]
                    try:
                        message = str(_json.loads(body).get("message", body.decode()))
                    except ValueError:
                        message = body.decode(errors="replace")
                    raise _ERRORS.get(code, errors.MeshplaneError)(message)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield _json.loads(line)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the meshplane server at {self.server} ({exc.__class__.__name__})"
            ) from None

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/healthz")
        return result

    async def create_token(
        self, mesh: str, role: str, description: str | None = None
    ) -> dict[str, Any]:
        body = {"mesh": mesh, "role": role, "description": description}
        result: dict[str, Any] = await self._request("POST", "/meshplane/v1/tokens", json=body)
        return result

    async def tokens(self, mesh: str | None = None) -> list[dict[str, Any]]:
        params = {"mesh": mesh} if mesh is not None else None
        result = await self._request("GET", "/meshplane/v1/tokens", params=params)
        return list(result["tokens"])

    async def revoke_token(self, token_id: str) -> dict[str, Any]:
        result = await self._request("DELETE", f"/meshplane/v1/tokens/{quote(token_id, safe='')}")
        return dict(result["token"])

    async def create_proxy_token(self, resource: str, ttl_seconds: int) -> dict[str, Any]:
        """A proxy token for ``mesh/<mesh>/virtualNode/<name>`` (or a gateway)."""
        body = {"resource": resource, "ttlSeconds": ttl_seconds}
        result: dict[str, Any] = await self._request(
            "POST", "/meshplane/v1/proxy-tokens", json=body
        )
        return result

    async def revoke_proxy_tokens(self, resource: str, token_id: str | None) -> dict[str, Any]:
        """Revoke the proxy token ``token_id`` of ``resource``, or (None) all its tokens."""
        body: dict[str, Any] = {"resource": resource}
        if token_id is not None:
            body["tokenId"] = token_id
        result: dict[str, Any] = await self._request(
            "POST", "/meshplane/v1/proxy-tokens/revoke", json=body
        )
        return result

    async def mesh_ca(self, mesh: str, *, rotate: bool = False) -> dict[str, Any]:
        """The CA of ``mesh`` (trust bundle and roots); ``rotate`` starts a CA rotation."""
        path = f"/meshplane/v1/meshes/{quote(mesh, safe='')}/ca"
        result: dict[str, Any] = await (
            self._request("POST", f"{path}/rotate") if rotate else self._request("GET", path)
        )
        return result

    async def audit(
        self, *, mesh: str | None = None, since: float | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Audit entries, oldest first (at most ``limit``, else all of them)."""
        entries: list[dict[str, Any]] = []
        after = 0
        while limit is None or len(entries) < limit:
            params = {"after": str(after), "limit": str(min(1000, (limit or 1000) - len(entries)))}
            if mesh is not None:
                params["mesh"] = mesh
            if since is not None:
                params["since"] = repr(since)
            page = await self._request("GET", "/meshplane/v1/audit", params=params)
            entries += page["entries"]
            if page.get("next") is None:
                break
            after = int(page["next"])
        return entries

    # Cloud Map API and mesh DNS -----------------------------------------------------------

    async def cloud_map(self, operation: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One Cloud Map (servicediscovery JSON 1.1) call."""
        try:
            response = await self._http.post(
                "/",
                json=dict(body),
                headers={
                    "X-Amz-Target": f"Route53AutoNaming_v20170314.{operation}",
                    "Content-Type": "application/x-amz-json-1.1",
                },
            )
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the meshplane server at {self.server} ({exc.__class__.__name__})"
            ) from None
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            data = {"Message": response.text}
        if response.status_code >= 400:
            code = str(data.get("__type") or response.headers.get("x-amzn-errortype", ""))
            error = errors.MeshplaneError(f"{data.get('Message') or data.get('message')}")
            error.code = code.split(":", 1)[0] or error.code
            raise error
        return data

    async def dns_lookup(self, name: str, rdtype: str) -> dict[str, Any]:
        """What the mesh DNS server answers for ``name`` and why."""
        result: dict[str, Any] = await self._request(
            "GET", "/meshplane/v1/dns/lookup", params={"name": name, "type": rdtype}
        )
        return result


@asynccontextmanager
async def connect(
    server: str,
    *,
    token: str | None = None,
    ca_file: str | None = None,
    timeout: float = 30.0,
) -> AsyncIterator[Client]:
    """A client for ``server``, sending ``token`` (if any) and trusting ``ca_file`` (if any)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    verify: Any = True
    if ca_file:
        try:
            verify = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as error:
            reason = getattr(error, "strerror", None) or "not PEM certificates"
            raise errors.LocalError(f"--tls-ca {ca_file}: cannot read ({reason})") from None
    async with httpx.AsyncClient(
        base_url=server, timeout=timeout, headers=headers, verify=verify
    ) as http:
        yield Client(http, server)
