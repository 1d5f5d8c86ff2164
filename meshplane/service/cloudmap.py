"""The AWS Cloud Map (servicediscovery 2017-03-14) operations over the store's registry.

``CloudMapService.call(operation, request, caller)`` runs one operation on a decoded JSON 1.1
request and returns the response members.  Every operation validates its input as Cloud Map
does (:mod:`meshplane.service.cloudmap_inputs`), checks the caller's role, then reads or writes
the registry records (:mod:`meshplane.store.registry`) inside one store transaction with an
audit entry, so a refused or bad request changes nothing.  The asynchronous calls of Cloud Map
complete before they answer here; their ``OperationId`` names a finished operation.

Roles (the registry is outside every mesh): reading and discovery need the viewer role on some
mesh; registering, deregistering instances and setting their health, and creating, updating and
deleting services need editor on some mesh (on the mesh named by an instance's
``appmesh.k8s.aws/mesh`` attribute, when it has one); namespaces and tags need admin on some
mesh.  Called by the API (:mod:`meshplane.api.cloudmap`), the CLI through it, and the lease
sweeper.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meshplane.errors import (
    AccessDeniedError,
    CloudMapResourceInUseError,
    CloudMapResourceNotFoundError,
    CloudMapTooManyTagsError,
    CustomHealthNotFoundError,
    DuplicateRequestError,
    ForbiddenError,
    InstanceNotFoundError,
    InvalidInputError,
    NamespaceAlreadyExistsError,
    NamespaceNotFoundError,
    OperationNotFoundError,
    ResourceLimitExceededError,
    ServiceAlreadyExistsError,
    ServiceNotFoundError,
)
from meshplane.model.kinds import REGISTRY_MESH, Kind
from meshplane.service import cloudmap_inputs as v
from meshplane.service.access import Role
from meshplane.service.arns import Partition
from meshplane.service.resources import Caller
from meshplane.store import registry
from meshplane.store.protocols import ResourceReader, ResourceStore, Store, Transaction
from meshplane.store.records import Record, Tag

MAX_NAMESPACES = 50
MAX_SERVICES_PER_NAMESPACE = 10_000
MAX_INSTANCES_PER_SERVICE = 1_000
MESH_ATTRIBUTE = "appmesh.k8s.aws/mesh"

Handler = Callable[[dict[str, Any], Caller], dict[str, Any]]


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def _operation_id() -> str:
    """Time-ordered (so the oldest come first in a listing), unique."""
    return f"{time.time_ns():x}-{secrets.token_hex(8)}"[:32]


def _strip_arn(value: str) -> str:
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def _token_key(token: str) -> str:
    return "cloudmap:" + hashlib.sha256(token.encode()).hexdigest()[:48]


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class CloudMapService:
    """The Cloud Map operations of one store, for one region and account."""

    def __init__(self, store: ResourceStore, partition: Partition) -> None:
        self.store = store
        self.partition = partition
        self.operations: dict[str, Handler] = {
            "CreateHttpNamespace": self.create_http_namespace,
            "CreatePrivateDnsNamespace": self.create_private_dns_namespace,
            "CreatePublicDnsNamespace": self.create_public_dns_namespace,
            "UpdateHttpNamespace": self.update_namespace,
            "UpdatePrivateDnsNamespace": self.update_namespace,
            "UpdatePublicDnsNamespace": self.update_namespace,
            "GetNamespace": self.get_namespace,
            "ListNamespaces": self.list_namespaces,
            "DeleteNamespace": self.delete_namespace,
            "CreateService": self.create_service,
            "GetService": self.get_service,
            "ListServices": self.list_services,
            "UpdateService": self.update_service,
            "DeleteService": self.delete_service,
            "GetServiceAttributes": self.get_service_attributes,
            "UpdateServiceAttributes": self.update_service_attributes,
            "DeleteServiceAttributes": self.delete_service_attributes,
            "RegisterInstance": self.register_instance,
            "DeregisterInstance": self.deregister_instance,
            "GetInstance": self.get_instance,
            "ListInstances": self.list_instances,
            "DiscoverInstances": self.discover_instances,
            "DiscoverInstancesRevision": self.discover_instances_revision,
            "GetInstancesHealthStatus": self.get_instances_health_status,
            "UpdateInstanceCustomHealthStatus": self.update_instance_custom_health_status,
            "GetOperation": self.get_operation,
            "ListOperations": self.list_operations,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    def call(self, operation: str, request: Any, caller: Caller) -> dict[str, Any]:
        handler = self.operations.get(operation)
        if handler is None:
            raise InvalidInputError(f"X-Amz-Target: unknown operation {operation[:80]!r}")
        return handler(v.body(request), caller)

    # --- access, shapes --------------------------------------------------------------------

    @staticmethod
    def _require(caller: Caller, role: Role, action: str, mesh: str | None = None) -> None:
        try:
            if mesh is not None:
                caller.principal.require(mesh, role, action)
            else:
                caller.principal.require_anywhere(role, action)
        except ForbiddenError as error:
            raise AccessDeniedError(error.message) from None

    def arn(self, kind: str, resource_id: str) -> str:
        p = self.partition
        return f"arn:aws:servicediscovery:{p.region}:{p.account_id}:{kind}/{resource_id}"

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

    def _service_shape(self, record: Record) -> dict[str, Any]:
        hidden = ("ServiceAttributes", "Fingerprint")
        spec = {k: v for k, v in record.spec.items() if k not in hidden}
        return {
            **spec,
            "Arn": self.arn("service", record.key.name),
            "ResourceOwner": record.resource_owner,
            "CreatedByAccount": record.mesh_owner,
        }

    def _audit(self, tx: Transaction, caller: Caller, operation: str, record: Record) -> None:
        kind = record.key.kind.value.removeprefix("cloudMap").lower()
        tx.audit(
            caller.principal.id,
            operation,
            mesh=REGISTRY_MESH,
            resource=f"cloudmap/{kind}/{record.key.name}",
            version=record.version,
            via=caller.via,
        )

    def _operation(
        self, tx: Transaction, kind: str, targets: Mapping[str, str], caller: Caller
    ) -> str:
        now = time.time()
        op_id = _operation_id()
        tx.create(
            registry.operation_key(op_id),
            {
                "Id": op_id,
                "Type": kind,
                "Status": "SUCCESS",
                "CreateDate": now,
                "UpdateDate": now,
                "Targets": dict(targets),
            },
            mesh_owner=caller.account_id,
            resource_owner=caller.account_id,
        )
        return op_id

    # --- namespaces ------------------------------------------------------------------------

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
        fingerprint = _fingerprint(kind, name, description, [(t.key, t.value) for t in tags])

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
            ns_id = _new_id("ns-")
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

    def _namespace(self, reader: ResourceReader, namespace_id: str, field: str = "Id") -> Record:
        record = registry.namespace(reader, _strip_arn(namespace_id))
        if record is None:
            raise NamespaceNotFoundError(f"{field}: namespace {namespace_id!r} not found")
        return record

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
        page, token = _page(records, after, count)
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

    # --- services --------------------------------------------------------------------------

    def _service(self, reader: ResourceReader, service_id: str, field: str = "Id") -> Record:
        record = registry.service(reader, _strip_arn(service_id))
        if record is None:
            raise ServiceNotFoundError(f"{field}: service {service_id!r} not found")
        return record

    def create_service(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        name = v.required(request, "Name", pattern=v.SERVICE_NAME)
        ns_id = v.string(request, "NamespaceId", max_len=255)
        token = v.request_id(request)
        description = v.description(request)
        dns = v.dns_config(request)
        health = v.health_check_config(request, "HealthCheckConfig")
        custom = v.custom_health_config(request)
        tags = v.tags(request)
        wanted_type = v.string(request, "Type", choices=("HTTP",))
        if health is not None and custom is not None:
            raise InvalidInputError(
                "HealthCheckConfig and HealthCheckCustomConfig: give at most one of them"
            )
        if dns is not None and ns_id is None:
            ns_id = dns.get("NamespaceId")
        if ns_id is None:
            raise InvalidInputError("NamespaceId: required")
        if dns is not None and wanted_type == "HTTP":
            raise InvalidInputError("Type: HTTP services have no DnsConfig")
        self._require(caller, Role.EDITOR, f"create Cloud Map service {name!r}")
        fingerprint = _fingerprint(name, ns_id, description, dns, health, custom)

        def work(tx: Transaction) -> dict[str, Any]:
            namespace = self._namespace(tx, ns_id, "NamespaceId")
            existing = registry.service_named(tx, namespace.key.name, name)
            if existing is not None:
                replay = token is not None and existing.spec.get("CreatorRequestId") == token
                if replay and existing.spec.get("Fingerprint") == fingerprint:
                    return {"Service": self._service_shape(existing)}
                raise ServiceAlreadyExistsError(
                    f"Name: service {name!r} already exists in namespace {namespace.key.name}",
                    ServiceId=existing.key.name,
                    ServiceArn=self.arn("service", existing.key.name),
                    CreatorRequestId=str(existing.spec.get("CreatorRequestId") or ""),
                )
            if len(registry.services(tx, namespace.key.name)) >= MAX_SERVICES_PER_NAMESPACE:
                raise ResourceLimitExceededError(
                    f"at most {MAX_SERVICES_PER_NAMESPACE} services per namespace"
                )
            is_dns = namespace.spec["Type"] != "HTTP"
            if dns is not None and not is_dns:
                raise InvalidInputError(
                    f"DnsConfig: namespace {namespace.key.name} is an HTTP namespace (no DNS)"
                )
            if health is not None and namespace.spec["Type"] != "DNS_PUBLIC":
                raise InvalidInputError(
                    "HealthCheckConfig: Route 53 health checks need a public DNS namespace"
                )
            srv_id = _new_id("srv-")
            spec: dict[str, Any] = {
                "Id": srv_id,
                "Name": name,
                "NamespaceId": namespace.key.name,
                "Type": "DNS_HTTP" if dns is not None else "HTTP",
                "InstanceCount": 0,
                "CreateDate": time.time(),
                "Fingerprint": fingerprint,
            }
            for field, value in (
                ("Description", description),
                ("DnsConfig", dns),
                ("HealthCheckConfig", health),
                ("HealthCheckCustomConfig", custom),
                ("CreatorRequestId", token),
            ):
                if value:
                    spec[field] = value
            if dns is not None:
                spec["DnsConfig"] = {**dns, "NamespaceId": namespace.key.name}
            record = tx.create(
                registry.service_key(namespace.key.name, srv_id),
                spec,
                mesh_owner=caller.account_id,
                resource_owner=caller.account_id,
                tags=tags,
            )
            self._audit(tx, caller, "CreateService", record)
            return {"Service": self._service_shape(record)}

        return self.store.transact(work)

    def get_service(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "Id")
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        return {"Service": self._service_shape(self._service(self.store, srv_id))}

    def list_services(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        count = v.integer(request, "MaxResults", minimum=1, maximum=100, default=100)
        after = v.next_token(request)
        found = v.filters(request, ("NAMESPACE_ID", "RESOURCE_OWNER"))
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")

        def keep(record: Record) -> bool:
            actual = {"NAMESPACE_ID": record.key.parent, "RESOURCE_OWNER": record.resource_owner}
            return all(v.matches(cond, values, actual[name]) for name, cond, values in found)

        records = [r for r in registry.services(self.store) if keep(r)]
        page, token = _page(records, after, count)
        summary_keys = (
            "Id", "Name", "Type", "Description", "InstanceCount", "DnsConfig",
            "HealthCheckConfig", "HealthCheckCustomConfig", "CreateDate",
        )  # fmt: skip
        return {
            "Services": [
                {
                    **{k: r.spec[k] for k in summary_keys if k in r.spec},
                    "Arn": self.arn("service", r.key.name),
                }
                for r in page
            ],
            **({"NextToken": token} if token else {}),
        }

    def update_service(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "Id")
        change = v.struct(request, "Service")
        if change is None:
            raise InvalidInputError("Service: required")
        description = v.description(change)
        dns_change = v.struct(change, "DnsConfig")
        records = (
            v.dns_records(dns_change.get("DnsRecords"), "Service.DnsConfig.DnsRecords")
            if dns_change is not None
            else None
        )
        health = v.health_check_config(change, "Service.HealthCheckConfig")
        self._require(caller, Role.EDITOR, f"update Cloud Map service {srv_id!r}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._service(tx, srv_id)
            spec = dict(record.spec)
            if description is not None:
                spec["Description"] = description
            if records is not None:
                if "DnsConfig" not in spec:
                    raise InvalidInputError("Service.DnsConfig: the service has no DNS records")
                kinds = {r["Type"] for r in spec["DnsConfig"]["DnsRecords"]}
                if {r["Type"] for r in records} != kinds:
                    raise InvalidInputError(
                        "Service.DnsConfig.DnsRecords: only the TTLs can change, not the types"
                    )
                spec["DnsConfig"] = {**spec["DnsConfig"], "DnsRecords": records}
            if health is not None:
                if "HealthCheckConfig" not in spec:
                    raise InvalidInputError(
                        "Service.HealthCheckConfig: the service has no Route 53 health check"
                    )
                spec["HealthCheckConfig"] = health
            updated = tx.update(record.key, spec)
            self._audit(tx, caller, "UpdateService", updated)
            target = {"SERVICE": record.key.name}
            return {"OperationId": self._operation(tx, "UPDATE_SERVICE", target, caller)}

        return self.store.transact(work)

    def delete_service(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "Id")
        self._require(caller, Role.EDITOR, f"delete Cloud Map service {srv_id!r}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._service(tx, srv_id)
            if registry.instance_records(tx, record.key.name, limit=1):
                raise CloudMapResourceInUseError(
                    f"Id: service {record.key.name} still has instances; deregister them first"
                )
            self._audit(tx, caller, "DeleteService", tx.delete(record.key))
            return {}

        return self.store.transact(work)

    def get_service_attributes(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        record = self._service(self.store, srv_id, "ServiceId")
        return {
            "ServiceAttributes": {
                "ServiceArn": self.arn("service", record.key.name),
                "Attributes": dict(record.spec.get("ServiceAttributes", {})),
            }
        }

    def _set_service_attributes(
        self,
        caller: Caller,
        srv_id: str,
        change: Callable[[dict[str, str]], dict[str, str]],
    ) -> dict[str, Any]:
        self._require(caller, Role.EDITOR, f"change the attributes of service {srv_id!r}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._service(tx, srv_id, "ServiceId")
            attributes = change(dict(record.spec.get("ServiceAttributes", {})))
            if len(attributes) > 30:
                raise ResourceLimitExceededError("Attributes: at most 30 service attributes")
            updated = tx.update(record.key, {**record.spec, "ServiceAttributes": attributes})
            self._audit(tx, caller, "UpdateServiceAttributes", updated)
            return {}

        return self.store.transact(work)

    def update_service_attributes(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        attributes = v.attribute_map(request, "Attributes", required_map=True)
        if not 1 <= len(attributes) <= 30:
            raise InvalidInputError("Attributes: 1 to 30 attributes")
        return self._set_service_attributes(caller, srv_id, lambda old: {**old, **attributes})

    def delete_service_attributes(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        keys = request.get("Attributes")
        if not isinstance(keys, list) or not 1 <= len(keys) <= 30:
            raise InvalidInputError("Attributes: required, 1 to 30 attribute keys")
        if not all(isinstance(k, str) and 1 <= len(k) <= 255 for k in keys):
            raise InvalidInputError("Attributes: keys are strings of 1 to 255 characters")
        drop = set(keys)
        return self._set_service_attributes(
            caller, srv_id, lambda old: {k: val for k, val in old.items() if k not in drop}
        )

    # --- instances -------------------------------------------------------------------------

    def register_instance(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        instance_id = v.required(request, "InstanceId", max_len=64, pattern=v.INSTANCE_ID)
        token = v.request_id(request)
        attributes = v.instance_attributes(request)
        lease = request.get("MeshplaneLeaseSeconds")
        if lease is not None and (
            isinstance(lease, bool) or not isinstance(lease, int) or not 1 <= lease <= 3600
        ):
            raise InvalidInputError("MeshplaneLeaseSeconds: an integer from 1 to 3600")
        self._require(
            caller,
            Role.EDITOR,
            f"register instances ({instance_id!r})",
            attributes.get(MESH_ATTRIBUTE),
        )

        def work(tx: Transaction) -> dict[str, Any]:
            service = self._service(tx, srv_id, "ServiceId")
            _check_records(service, attributes)
            key = registry.instance_key(service.key.name, instance_id)
            current = tx.get(key)
            spec: dict[str, Any] = {"Id": instance_id, "Attributes": attributes}
            if token:
                spec["CreatorRequestId"] = token
            if lease is not None:
                spec["Lease"] = {"Seconds": lease, "ExpiresAt": time.time() + lease}
            if current is None:
                if (
                    len(registry.instance_records(tx, service.key.name))
                    >= MAX_INSTANCES_PER_SERVICE
                ):
                    raise ResourceLimitExceededError(
                        f"ServiceId: at most {MAX_INSTANCES_PER_SERVICE} instances per service"
                    )
                spec["Health"] = attributes.get("AWS_INIT_HEALTH_STATUS", registry.HEALTHY)
                record = tx.create(
                    key, spec, mesh_owner=caller.account_id, resource_owner=caller.account_id
                )
                count = int(service.spec.get("InstanceCount", 0)) + 1
            else:
                spec["Health"] = current.spec.get("Health", registry.HEALTHY)
                if lease is not None and current.spec.get("Lease", {}).get("Expired"):
                    spec["Health"] = attributes.get("AWS_INIT_HEALTH_STATUS", registry.HEALTHY)
                record = tx.update(key, spec)
                count = int(service.spec.get("InstanceCount", 0))
            tx.update(service.key, {**service.spec, "InstanceCount": count})
            self._audit(tx, caller, "RegisterInstance", record)
            targets = {"SERVICE": service.key.name, "INSTANCE": instance_id}
            return {"OperationId": self._operation(tx, "REGISTER_INSTANCE", targets, caller)}

        return self.store.transact(work)

    def deregister_instance(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        instance_id = v.required(request, "InstanceId", max_len=64)

        def work(tx: Transaction) -> dict[str, Any]:
            service = self._service(tx, srv_id, "ServiceId")
            record = self._instance(tx, service, instance_id)
            self._require(
                caller,
                Role.EDITOR,
                f"deregister instance {instance_id!r}",
                record.spec.get("Attributes", {}).get(MESH_ATTRIBUTE),
            )
            self._audit(tx, caller, "DeregisterInstance", tx.delete(record.key))
            count = max(0, int(service.spec.get("InstanceCount", 1)) - 1)
            tx.update(service.key, {**service.spec, "InstanceCount": count})
            targets = {"SERVICE": service.key.name, "INSTANCE": instance_id}
            return {"OperationId": self._operation(tx, "DEREGISTER_INSTANCE", targets, caller)}

        self._require(caller, Role.EDITOR, f"deregister instance {instance_id!r}")
        return self.store.transact(work)

    @staticmethod
    def _instance(reader: ResourceReader, service: Record, instance_id: str) -> Record:
        record = reader.get(registry.instance_key(service.key.name, instance_id))
        if record is None:
            raise InstanceNotFoundError(
                f"InstanceId: instance {instance_id!r} not found in service {service.key.name}"
            )
        return record

    def get_instance(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        instance_id = v.required(request, "InstanceId", max_len=64)
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        service = self._service(self.store, srv_id, "ServiceId")
        record = self._instance(self.store, service, instance_id)
        instance = {"Id": instance_id, "Attributes": dict(record.spec["Attributes"])}
        if record.spec.get("CreatorRequestId"):
            instance["CreatorRequestId"] = record.spec["CreatorRequestId"]
        instance["CreatedByAccount"] = record.resource_owner
        return {"ResourceOwner": service.resource_owner, "Instance": instance}

    def list_instances(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        count = v.integer(request, "MaxResults", minimum=1, maximum=100, default=100)
        after = v.next_token(request)
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        service = self._service(self.store, srv_id, "ServiceId")
        records = registry.instance_records(
            self.store, service.key.name, after=after, limit=count + 1
        )
        page = records[:count]
        token = v.encode_token(page[-1].key.name) if len(records) > count else None
        return {
            "ResourceOwner": service.resource_owner,
            "Instances": [
                {
                    "Id": r.key.name,
                    "Attributes": dict(r.spec["Attributes"]),
                    "CreatedByAccount": r.resource_owner,
                }
                for r in page
            ],
            **({"NextToken": token} if token else {}),
        }

    def _discovered(
        self, request: dict[str, Any], caller: Caller
    ) -> tuple[Record, Record, list[registry.Instance]]:
        namespace_name = v.required(request, "NamespaceName", pattern=v.NAMESPACE_NAME)
        service_name = v.required(request, "ServiceName", pattern=v.SERVICE_NAME)
        owner = v.string(request, "OwnerAccount", min_len=12, max_len=12)
        self._require(caller, Role.VIEWER, "discover Cloud Map instances")
        namespace = registry.namespace_by_http_name(self.store, namespace_name)
        if namespace is None or (owner is not None and owner != namespace.resource_owner):
            raise NamespaceNotFoundError(f"NamespaceName: namespace {namespace_name!r} not found")
        service = registry.service_named(self.store, namespace.key.name, service_name)
        if service is None:
            raise ServiceNotFoundError(
                f"ServiceName: service {service_name!r} not found in {namespace_name!r}"
            )
        return namespace, service, registry.instances(self.store, service)

    def discover_instances(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        count = v.integer(request, "MaxResults", minimum=1, maximum=1000, default=100)
        query = v.attribute_map(request, "QueryParameters")
        optional = v.attribute_map(request, "OptionalParameters")
        wanted = v.string(
            request, "HealthStatus", choices=("HEALTHY", "UNHEALTHY", "ALL", "HEALTHY_OR_ELSE_ALL")
        )
        namespace, service, found = self._discovered(request, caller)
        chosen = select_instances(found, query, optional, wanted or "HEALTHY")
        return {
            "Instances": [
                {
                    "InstanceId": i.id,
                    "NamespaceName": registry.http_name(namespace),
                    "ServiceName": service.spec["Name"],
                    "HealthStatus": i.health,
                    "Attributes": dict(i.attributes),
                }
                for i in chosen[:count]
            ],
            "InstancesRevision": service.revision,
        }

    def discover_instances_revision(
        self, request: dict[str, Any], caller: Caller
    ) -> dict[str, Any]:
        _, service, _ = self._discovered(request, caller)
        return {"InstancesRevision": service.revision}

    def get_instances_health_status(
        self, request: dict[str, Any], caller: Caller
    ) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        count = v.integer(request, "MaxResults", minimum=1, maximum=100, default=100)
        after = v.next_token(request)
        ids = request.get("Instances")
        if ids is not None and (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(i, str) and len(i) <= 64 for i in ids)
        ):
            raise InvalidInputError("Instances: a non-empty list of instance ids")
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        service = self._service(self.store, srv_id, "ServiceId")
        found = {i.id: i for i in registry.instances(self.store, service)}
        wanted = sorted(set(ids)) if ids is not None else sorted(found)
        for instance_id in wanted:
            if instance_id not in found:
                raise InstanceNotFoundError(f"Instances: instance {instance_id!r} not found")
        if after is not None:
            wanted = [i for i in wanted if i > after]
        page = wanted[:count]
        token = v.encode_token(page[-1]) if len(wanted) > count else None
        return {
            "Status": {i: found[i].health for i in page},
            **({"NextToken": token} if token else {}),
        }

    def update_instance_custom_health_status(
        self, request: dict[str, Any], caller: Caller
    ) -> dict[str, Any]:
        srv_id = v.resource_id(request, "ServiceId")
        instance_id = v.required(request, "InstanceId", max_len=64)
        status = v.required(request, "Status", choices=("HEALTHY", "UNHEALTHY"))
        self._require(caller, Role.EDITOR, f"set the health of instance {instance_id!r}")
        return self.store.transact(
            lambda tx: self.set_health(tx, srv_id, instance_id, status, caller)
        )

    def set_health(
        self, tx: Transaction, srv_id: str, instance_id: str, status: str, caller: Caller
    ) -> dict[str, Any]:
        service = self._service(tx, srv_id, "ServiceId")
        if not service.spec.get("HealthCheckCustomConfig"):
            raise CustomHealthNotFoundError(
                f"ServiceId: service {service.key.name} has no custom health check "
                "(HealthCheckCustomConfig)"
            )
        record = self._instance(tx, service, instance_id)
        if record.spec.get("Health") != status:
            updated = tx.update(record.key, {**record.spec, "Health": status})
            self._audit(tx, caller, "UpdateInstanceCustomHealthStatus", updated)
        return {}

    # --- operations ------------------------------------------------------------------------

    def get_operation(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        op_id = v.required(request, "OperationId", max_len=255)
        v.string(request, "OwnerAccount", min_len=12, max_len=12)
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        record = self.store.get(registry.operation_key(op_id))
        if record is None:
            raise OperationNotFoundError(f"OperationId: operation {op_id!r} not found")
        return {"Operation": dict(record.spec)}

    def list_operations(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        count = v.integer(request, "MaxResults", minimum=1, maximum=100, default=100)
        after = v.next_token(request)
        found = v.filters(request, ("NAMESPACE_ID", "SERVICE_ID", "STATUS", "TYPE", "UPDATE_DATE"))
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")

        def keep(record: Record) -> bool:
            spec = record.spec
            targets = spec.get("Targets", {})
            actual = {
                "NAMESPACE_ID": str(targets.get("NAMESPACE", "")),
                "SERVICE_ID": str(targets.get("SERVICE", "")),
                "STATUS": str(spec["Status"]),
                "TYPE": str(spec["Type"]),
                "UPDATE_DATE": str(spec["UpdateDate"]),
            }
            return all(v.matches(cond, values, actual[name]) for name, cond, values in found)

        records = [
            r for r in self.store.list_kind(Kind.CLOUD_MAP_OPERATION, REGISTRY_MESH, "") if keep(r)
        ]
        page, token = _page(records, after, count)
        return {
            "Operations": [{"Id": r.key.name, "Status": r.spec["Status"]} for r in page],
            **({"NextToken": token} if token else {}),
        }

    # --- tags ------------------------------------------------------------------------------

    def _tagged(self, reader: ResourceReader, arn: str) -> Record:
        prefix = f"arn:aws:servicediscovery:{self.partition.region}:"
        kind, _, resource_id = arn.rpartition(":")[2].partition("/")
        record = None
        if arn.startswith(prefix) and kind == "namespace":
            record = registry.namespace(reader, resource_id)
        elif arn.startswith(prefix) and kind == "service":
            record = registry.service(reader, resource_id)
        if record is None:
            raise CloudMapResourceNotFoundError(f"ResourceARN: {arn[:200]!r} not found")
        return record

    def tag_resource(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        arn = v.required(request, "ResourceARN", min_len=1, max_len=1011)
        if request.get("Tags") is None:
            raise InvalidInputError("Tags: required")
        new = v.tags(request)
        self._require(caller, Role.ADMIN, f"tag {arn[:200]}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._tagged(tx, arn)
            merged: dict[str, Tag] = {t.key: t for t in record.tags}
            merged.update({t.key: t for t in new})
            if len(merged) > v.MAX_TAGS:
                raise CloudMapTooManyTagsError(
                    f"Tags: a resource has at most {v.MAX_TAGS} tags", ResourceName=arn
                )
            self._audit(tx, caller, "TagResource", tx.set_tags(record.key, list(merged.values())))
            return {}

        return self.store.transact(work)

    def untag_resource(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        arn = v.required(request, "ResourceARN", min_len=1, max_len=1011)
        drop = set(v.tag_keys(request))
        self._require(caller, Role.ADMIN, f"untag {arn[:200]}")

        def work(tx: Transaction) -> dict[str, Any]:
            record = self._tagged(tx, arn)
            kept = [t for t in record.tags if t.key not in drop]
            self._audit(tx, caller, "UntagResource", tx.set_tags(record.key, kept))
            return {}

        return self.store.transact(work)

    def list_tags_for_resource(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        arn = v.required(request, "ResourceARN", min_len=1, max_len=1011)
        self._require(caller, Role.VIEWER, "read the Cloud Map registry")
        record = self._tagged(self.store, arn)
        return {"Tags": [{"Key": t.key, "Value": t.value} for t in record.tags]}


_TYPE_OPS = {"HTTP": "Http", "DNS_PRIVATE": "PrivateDns", "DNS_PUBLIC": "PublicDns"}


def _page(records: list[Record], after: str | None, count: int) -> tuple[list[Record], str | None]:
    ordered = sorted(records, key=lambda r: r.key.name)
    if after is not None:
        ordered = [r for r in ordered if r.key.name > after]
    page = ordered[:count]
    return page, (v.encode_token(page[-1].key.name) if len(ordered) > count else None)


def _check_records(service: Record, attributes: Mapping[str, str]) -> None:
    """The address attributes a service's DNS records need."""
    types = {r["Type"] for r in service.spec.get("DnsConfig", {}).get("DnsRecords", [])}
    needs = {
        "A": "AWS_INSTANCE_IPV4",
        "AAAA": "AWS_INSTANCE_IPV6",
        "SRV": "AWS_INSTANCE_PORT",
        "CNAME": "AWS_INSTANCE_CNAME",
    }
    for record_type, attribute in needs.items():
        if record_type in types and attribute not in attributes:
            if (
                record_type == "SRV"
                and ("AWS_INSTANCE_IPV4" in attributes or "AWS_INSTANCE_IPV6" in attributes)
                and "AWS_INSTANCE_PORT" in attributes
            ):
                continue
            raise InvalidInputError(
                f"Attributes.{attribute}: required, the service has {record_type} records"
            )


def select_instances(
    found: list[registry.Instance],
    query: Mapping[str, str],
    optional: Mapping[str, str],
    health: str,
) -> list[registry.Instance]:
    """DiscoverInstances' filters: every query parameter must match; the optional ones apply
    when some instance matches them too; then the health filter (ignored for services without
    a health check, whose instances are UNKNOWN)."""

    def match(instance: registry.Instance, wanted: Mapping[str, str]) -> bool:
        return all(instance.attributes.get(k) == val for k, val in wanted.items())

    chosen = [i for i in found if match(i, query)]
    if optional:
        narrowed = [i for i in chosen if match(i, optional)]
        if narrowed:
            chosen = narrowed
    if any(i.health == registry.UNKNOWN for i in chosen) or health == "ALL":
        return sorted(chosen, key=lambda i: i.id)
    healthy = [i for i in chosen if i.health == registry.HEALTHY]
    if health == "HEALTHY":
        chosen = healthy
    elif health == "UNHEALTHY":
        chosen = [i for i in chosen if i.health == registry.UNHEALTHY]
    elif health == "HEALTHY_OR_ELSE_ALL":
        chosen = healthy or chosen
    return sorted(chosen, key=lambda i: i.id)


class RegistryCollector(Collector):
    """Prometheus gauges of the registry, read from the store at scrape time:
    ``meshplane_registry_namespaces``, ``meshplane_registry_services`` and
    ``meshplane_registry_instances{health}`` (lapsed leases count as UNHEALTHY)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        services = registry.services(self.store)
        namespaces = GaugeMetricFamily(
            "meshplane_registry_namespaces", "Cloud Map namespaces in the registry"
        )
        namespaces.add_metric([], len(registry.namespaces(self.store)))
        yield namespaces
        service_count = GaugeMetricFamily(
            "meshplane_registry_services", "Cloud Map services in the registry"
        )
        service_count.add_metric([], len(services))
        yield service_count
        health: dict[str, int] = {registry.HEALTHY: 0, registry.UNHEALTHY: 0, registry.UNKNOWN: 0}
        for service in services:
            for instance in registry.instances(self.store, service):
                health[instance.health] = health.get(instance.health, 0) + 1
        instances = GaugeMetricFamily(
            "meshplane_registry_instances",
            "Registered Cloud Map instances, by health status",
            labels=["health"],
        )
        for status, count in sorted(health.items()):
            instances.add_metric([status], count)
        yield instances
