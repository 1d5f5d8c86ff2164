"""The AWS Cloud Map (servicediscovery 2017-03-14) operations over the store's registry.

``CloudMapService.call(operation, request, caller)`` runs one operation on a decoded JSON 1.1
request and returns the response members.  Every operation validates its input as Cloud Map
does (:mod:`meshplane.service.cloudmap_inputs`), checks the caller's role, then reads or writes
the registry records (:mod:`meshplane.store.registry`) inside one store transaction with an
audit entry, so a refused or bad request changes nothing.  The asynchronous calls of Cloud Map
complete before they answer here; their ``OperationId`` names a finished operation.

The operations come in groups, one module each, on a shared base
(:mod:`meshplane.service.cloudmap_base`): namespaces (:mod:`.cloudmap_namespaces`), services
(:mod:`.cloudmap_services`), instances (:mod:`.cloudmap_instances`), discovery and health
(:mod:`.cloudmap_discovery`), operation records (:mod:`.cloudmap_operations`) and tags
(:mod:`.cloudmap_tags`); :class:`CloudMapService` puts them together under the operation names.

Roles (the registry is outside every mesh): reading and discovery need the viewer role on some
mesh; registering, deregistering instances and setting their health, and creating, updating and
deleting services need editor on some mesh (on the mesh named by an instance's
``appmesh.k8s.aws/mesh`` attribute, when it has one); namespaces and tags need admin on some
mesh.  Called by the API (:mod:`meshplane.api.cloudmap`), the CLI through it, and the lease
sweeper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshplane.errors import InvalidInputError
from meshplane.service import cloudmap_inputs as v
from meshplane.service.arns import Partition
from meshplane.service.cloudmap_discovery import DiscoveryOperations
from meshplane.service.cloudmap_instances import InstanceOperations
from meshplane.service.cloudmap_namespaces import NamespaceOperations
from meshplane.service.cloudmap_operations import OperationLookups
from meshplane.service.cloudmap_services import ServiceOperations
from meshplane.service.cloudmap_tags import TagOperations
from meshplane.service.resources import Caller
from meshplane.store.protocols import ResourceStore

Handler = Callable[[dict[str, Any], Caller], dict[str, Any]]


class CloudMapService:
    """The Cloud Map operations of one store, for one region and account."""

    def __init__(self, store: ResourceStore, partition: Partition) -> None:
        self.store = store
        self.partition = partition
        namespaces = NamespaceOperations(store, partition)
        services = ServiceOperations(store, partition)
        instances = InstanceOperations(store, partition)
        discovery = DiscoveryOperations(store, partition)
        lookups = OperationLookups(store, partition)
        tags = TagOperations(store, partition)
        self.operations: dict[str, Handler] = {
            "CreateHttpNamespace": namespaces.create_http_namespace,
            "CreatePrivateDnsNamespace": namespaces.create_private_dns_namespace,
            "CreatePublicDnsNamespace": namespaces.create_public_dns_namespace,
            "UpdateHttpNamespace": namespaces.update_namespace,
            "UpdatePrivateDnsNamespace": namespaces.update_namespace,
            "UpdatePublicDnsNamespace": namespaces.update_namespace,
            "GetNamespace": namespaces.get_namespace,
            "ListNamespaces": namespaces.list_namespaces,
            "DeleteNamespace": namespaces.delete_namespace,
            "CreateService": services.create_service,
            "GetService": services.get_service,
            "ListServices": services.list_services,
            "UpdateService": services.update_service,
            "DeleteService": services.delete_service,
            "GetServiceAttributes": services.get_service_attributes,
            "UpdateServiceAttributes": services.update_service_attributes,
            "DeleteServiceAttributes": services.delete_service_attributes,
            "RegisterInstance": instances.register_instance,
            "DeregisterInstance": instances.deregister_instance,
            "GetInstance": instances.get_instance,
            "ListInstances": instances.list_instances,
            "DiscoverInstances": discovery.discover_instances,
            "DiscoverInstancesRevision": discovery.discover_instances_revision,
            "GetInstancesHealthStatus": discovery.get_instances_health_status,
            "UpdateInstanceCustomHealthStatus": discovery.update_instance_custom_health_status,
            "GetOperation": lookups.get_operation,
            "ListOperations": lookups.list_operations,
            "TagResource": tags.tag_resource,
            "UntagResource": tags.untag_resource,
            "ListTagsForResource": tags.list_tags_for_resource,
        }

    def call(self, operation: str, request: Any, caller: Caller) -> dict[str, Any]:
        handler = self.operations.get(operation)
        if handler is None:
            raise InvalidInputError(f"X-Amz-Target: unknown operation {operation[:80]!r}")
        return handler(v.body(request), caller)
