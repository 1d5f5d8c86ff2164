"""The Cloud Map namespace operations: Create{Http,PrivateDns,PublicDns}Namespace, the three
Update*Namespace, GetNamespace, ListNamespaces and DeleteNamespace.

Creating, updating and deleting a namespace needs the admin role on some mesh, reading it the
viewer role.  A ``CreatorRequestId`` makes a creation idempotent (the store remembers the
request's fingerprint and answer).  Part of :class:`meshplane.service.cloudmap.CloudMapService`.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from meshplane.errors import (
    CloudMapResourceInUseError,
    DuplicateRequestError,
    InvalidInputError,
    NamespaceAlreadyExistsError,
    ResourceLimitExceededError,
)
from meshplane.service import cloudmap_base as base
from meshplane.service import cloudmap_inputs as v
from meshplane.service.access import Role
from meshplane.service.resources import Caller
from meshplane.store import registry
from meshplane.store.protocols import ResourceReader, Transaction
from meshplane.store.records import Record

MAX_NAMESPACES = 50

_TYPE_OPS = {"HTTP": "Http", "DNS_PRIVATE": "PrivateDns", "DNS_PUBLIC": "PublicDns"}


def _token_key(token: str) -> str:
    return "cloudmap:" + hashlib.sha256(token.encode()).hexdigest()[:48]


class NamespaceOperations(base.RegistryOperations):
    """The namespace operations of one store."""

    def _namespace_shape(self, reader: ResourceReader, record: Record) -> dict[str, Any]:
        spec = record.spec
        return {
            **{k: spec[k] for k in ("Id", "Name", "Type", "Properties", "CreateDate") if k in spec},
            **({"Description": spec["Description"]} if spec.get("Description") else {}),
            **(
                {"CreatorRequestId": spec["CreatorRequestId"]}
                if spec.get("CreatorRequestId")
                else {}
            ),
            "Arn": self.arn("namespace", record.key.name),
            "ResourceOwner": record.resource_owner,
            "ServiceCount": len(registry.services(reader, record.key.name)),
        }

    def _create_namespace(
        self, request: dict[str, Any], caller: Caller, kind: str, name: str, ttl: int | None
    ) -> dict[str, Any]:
        self._require(caller, Role.ADMIN, f"create Cloud Map namespace {name!r}")
        token = v.request_id(request)
        description = v.description(request)
        tags = v.tags(request)
        if kind == "DNS_PRIVATE":
            v.required(request, "Vpc", max_len=64)
        properties: dict[str, Any] = {"HttpProperties": {"HttpName": name}}
        if ttl is not None:
            properties["DnsProperties"] = {"SOA": {"TTL": ttl}}
        fingerprint = base.fingerprint(kind, name, description, [(t.key, t.value) for t in tags])

        def work(tx: Transaction) -> dict[str, Any]:
            if token is not None:
                seen = tx.client_token(_token_key(token))
                if seen is not None:
                    if seen[0] != fingerprint:
                        raise DuplicateRequestError(
                            f"CreatorRequestId: {token!r} was used for a different request"
                        )
                    answer: dict[str, Any] = seen[1]
                    return answer
            for existing in registry.namespaces(tx):
                if str(existing.spec["Name"]).lower() == name.lower():
                    raise NamespaceAlreadyExistsError(
                        f"Name: namespace {name!r} already exists ({existing.key.name})",
                        NamespaceId=existing.key.name,
                        CreatorRequestId=str(existing.spec.get("CreatorRequestId") or ""),
                    )
            if len(registry.namespaces(tx)) >= MAX_NAMESPACES:
                raise ResourceLimitExceededError(f"at most {MAX_NAMESPACES} namespaces")
            ns_id = base.new_id("ns-")
            spec: dict[str, Any] = {
                "Id": ns_id,
                "Name": name,
                "Type": kind,
                "Properties": properties,
                "CreateDate": time.time(),
            }
            if description:
                spec["Description"] = description
            if token:
                spec["CreatorRequestId"] = token
            record = tx.create(
                registry.namespace_key(ns_id),
                spec,
                mesh_owner=caller.account_id,
                resource_owner=caller.account_id,
                tags=tags,
            )
            self._audit(tx, caller, f"Create{_TYPE_OPS[kind]}Namespace", record)
            answer = {
                "OperationId": self._operation(tx, "CREATE_NAMESPACE", {"NAMESPACE": ns_id}, caller)
            }
            if token is not None:
                tx.remember_client_token(_token_key(token), fingerprint, answer)
            return answer

        return self.store.transact(work)

    def create_http_namespace(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        name = v.required(request, "Name", pattern=v.NAMESPACE_HTTP)
        return self._create_namespace(request, caller, "HTTP", name, None)

    def create_private_dns_namespace(
        self, request: dict[str, Any], caller: Caller
    ) -> dict[str, Any]:
        name = v.required(request, "Name", pattern=v.NAMESPACE_PRIVATE)
        ttl = v.soa_ttl(v.struct(request, "Properties"), "Properties", default=15)
        return self._create_namespace(request, caller, "DNS_PRIVATE", name.rstrip("."), ttl)

    def create_public_dns_namespace(
        self, request: dict[str, Any], caller: Caller
    ) -> dict[str, Any]:
        name = v.required(request, "Name", max_len=253, pattern=v.NAMESPACE_PUBLIC)
        ttl = v.soa_ttl(v.struct(request, "Properties"), "Properties", default=15)
        return self._create_namespace(request, caller, "DNS_PUBLIC", name, ttl)

    def update_namespace(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        ns_id = v.resource_id(request, "Id")
        v.request_id(request, "UpdaterRequestId")
        change = v.struct(request, "Namespace")
        if change is None:
            raise InvalidInputError("Namespace: required")
        description = v.description(change)
        properties = v.struct(change, "Properties")
        self._require(caller, Role.ADMIN, f"update Cloud Map namespace {ns_id!r}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._namespace(tx, ns_id)
            spec = dict(record.spec)
            if description is not None:
                spec["Description"] = description
            if properties is not None:
                if spec["Type"] == "HTTP":
                    raise InvalidInputError("Namespace.Properties: an HTTP namespace has no DNS")
                ttl = v.soa_ttl(properties, "Namespace.Properties", default=None)
                spec["Properties"] = {**spec["Properties"], "DnsProperties": {"SOA": {"TTL": ttl}}}
            updated = tx.update(record.key, spec)
            self._audit(tx, caller, "UpdateNamespace", updated)
            target = {"NAMESPACE": record.key.name}
            return {"OperationId": self._operation(tx, "UPDATE_NAMESPACE", target, caller)}

        return self.store.transact(work)

    def get_namespace(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        ns_id = v.resource_id(request, "Id")
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        return {"Namespace": self._namespace_shape(self.store, self._namespace(self.store, ns_id))}

    def list_namespaces(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        count = v.integer(request, "MaxResults", minimum=1, maximum=100, default=100)
        after = v.next_token(request)
        found = v.filters(request, ("TYPE", "NAME", "HTTP_NAME", "RESOURCE_OWNER"))
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")

        def keep(record: Record) -> bool:
            actual = {
                "TYPE": str(record.spec["Type"]),
                "NAME": str(record.spec["Name"]),
                "HTTP_NAME": registry.http_name(record),
                "RESOURCE_OWNER": record.resource_owner,
            }
            return all(v.matches(cond, values, actual[name]) for name, cond, values in found)

        records = [r for r in registry.namespaces(self.store) if keep(r)]
        page, token = base.page(records, after, count)
        return {
            "Namespaces": [self._namespace_shape(self.store, r) for r in page],
            **({"NextToken": token} if token else {}),
        }

    def delete_namespace(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        ns_id = v.resource_id(request, "Id")
        self._require(caller, Role.ADMIN, f"delete Cloud Map namespace {ns_id!r}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._namespace(tx, ns_id)
            if registry.services(tx, record.key.name):
                raise CloudMapResourceInUseError(
                    f"Id: namespace {record.key.name} still has services; delete them first"
                )
            self._audit(tx, caller, "DeleteNamespace", tx.delete(record.key))
            target = {"NAMESPACE": record.key.name}
            return {"OperationId": self._operation(tx, "DELETE_NAMESPACE", target, caller)}

        return self.store.transact(work)
