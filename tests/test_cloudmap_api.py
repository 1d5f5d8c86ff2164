"""The AWS Cloud Map API (servicediscovery 2017-03-14) through a stock boto3 client and the
real AWS CLI against a real ``meshplane serve``: every operation of botocore's model, Cloud
Map's validation and error types, pagination, DiscoverInstances' filters, idempotency, ARNs,
roles, and hostile bodies that change nothing."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import botocore
import httpx
import pytest
from botocore.exceptions import ClientError

from meshplane.service.cloudmap import CloudMapService
from meshplane.service.cloudmap_inputs import ATTR_KEY, INSTANCE_ID, NAMESPACE_HTTP, SERVICE_NAME
from tests.support.auth import auth_server, create_token
from tests.support.server import MeshplaneServer

ACCOUNT = "000000000000"
TARGET = "Route53AutoNaming_v20170314."


def model() -> dict[str, Any]:
    path = Path(botocore.__file__).parent / "data/servicediscovery/2017-03-14/service-2.json.gz"
    with gzip.open(path) as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return exc.value.response["Error"]["Code"], exc.value.response["Error"]["Message"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def sd(server: MeshplaneServer) -> Any:
    """A boto3 client that leaves validation to the server (what Cloud Map itself checks)."""
    return server.cloudmap(validate=False)


def _namespace(sd: Any, name: str | None = None, kind: str = "http") -> str:
    name = name or unique("ns")
    if kind == "http":
        op = sd.create_http_namespace(Name=name)["OperationId"]
    else:
        op = sd.create_private_dns_namespace(Name=f"{name}.local", Vpc="vpc-1")["OperationId"]
    operation = sd.get_operation(OperationId=op)["Operation"]
    assert operation["Status"] == "SUCCESS" and operation["Type"] == "CREATE_NAMESPACE"
    ns_id: str = operation["Targets"]["NAMESPACE"]
    return ns_id


def test_operation_set_and_limits_match_botocore_model() -> None:
    data = model()
    service = CloudMapService.__new__(CloudMapService)
    CloudMapService.__init__(service, None, None)  # type: ignore[arg-type]
    assert set(service.operations) == set(data["operations"])
    shapes = data["shapes"]
    assert shapes["InstanceId"]["pattern"] == INSTANCE_ID.pattern
    assert shapes["AttrKey"]["pattern"] == ATTR_KEY.pattern
    assert shapes["NamespaceNameHttp"]["pattern"] == NAMESPACE_HTTP.pattern
    assert shapes["ServiceName"]["pattern"] == SERVICE_NAME.pattern
    assert shapes["AttrKey"]["max"] == 255 and shapes["AttrValue"]["max"] == 1024
    assert data["metadata"]["targetPrefix"] + "." == TARGET


def test_namespaces(sd: Any) -> None:
    name = unique("http")
    ns_id = _namespace(sd, name)
    ns = sd.get_namespace(Id=ns_id)["Namespace"]
    assert ns["Name"] == name and ns["Type"] == "HTTP"
    assert ns["Arn"] == f"arn:aws:servicediscovery:us-east-1:{ACCOUNT}:namespace/{ns_id}"
    assert ns["Properties"]["HttpProperties"]["HttpName"] == name
    assert ns["ServiceCount"] == 0
    dns_id = _namespace(sd, unique("priv"), kind="dns")
    dns_ns = sd.get_namespace(Id=dns_id)["Namespace"]
    assert dns_ns["Type"] == "DNS_PRIVATE"
    assert dns_ns["Properties"]["DnsProperties"]["SOA"]["TTL"] == 15
    public = sd.create_public_dns_namespace(
        Name=f"{unique('pub')}.example.com", Properties={"DnsProperties": {"SOA": {"TTL": 60}}}
    )
    public_id = sd.get_operation(OperationId=public["OperationId"])["Operation"]["Targets"][
        "NAMESPACE"
    ]
    sd.update_public_dns_namespace(Id=public_id, Namespace={"Description": "public"})
    assert sd.get_namespace(Id=public_id)["Namespace"]["Description"] == "public"
    # filters
    http_only = sd.list_namespaces(
        Filters=[{"Name": "TYPE", "Values": ["HTTP"], "Condition": "EQ"}]
    )
    assert {n["Type"] for n in http_only["Namespaces"]} == {"HTTP"}
    assert ns_id in {n["Id"] for n in http_only["Namespaces"]}
    begins = sd.list_namespaces(
        Filters=[{"Name": "NAME", "Values": [name[:9]], "Condition": "BEGINS_WITH"}]
    )
    assert ns_id in {n["Id"] for n in begins["Namespaces"]}
    # pagination
    first = sd.list_namespaces(MaxResults=1)
    assert len(first["Namespaces"]) == 1 and first["NextToken"]
    second = sd.list_namespaces(MaxResults=1, NextToken=first["NextToken"])
    assert second["Namespaces"][0]["Id"] != first["Namespaces"][0]["Id"]
    # update
    op = sd.update_http_namespace(Id=ns_id, Namespace={"Description": "new"})["OperationId"]
    assert sd.get_operation(OperationId=op)["Operation"]["Type"] == "UPDATE_NAMESPACE"
    assert sd.get_namespace(Id=ns_id)["Namespace"]["Description"] == "new"
    sd.update_private_dns_namespace(
        Id=dns_id, Namespace={"Properties": {"DnsProperties": {"SOA": {"TTL": 30}}}}
    )
    assert (
        sd.get_namespace(Id=dns_id)["Namespace"]["Properties"]["DnsProperties"]["SOA"]["TTL"] == 30
    )
    # errors
    with pytest.raises(ClientError) as exc:
        sd.create_http_namespace(Name=name)
    assert code_of(exc)[0] == "NamespaceAlreadyExists"
    assert exc.value.response["NamespaceId"] == ns_id
    with pytest.raises(ClientError) as exc:
        sd.get_namespace(Id="ns-doesnotexist0000")
    assert code_of(exc)[0] == "NamespaceNotFound"
    with pytest.raises(ClientError) as exc:
        sd.create_http_namespace(Name="arn:nope")
    code, message = code_of(exc)
    assert code == "InvalidInput" and message.startswith("Name:")
    sd.create_service(Name="svc", NamespaceId=ns_id)
    with pytest.raises(ClientError) as exc:
        sd.delete_namespace(Id=ns_id)
    assert code_of(exc)[0] == "ResourceInUse"
    # delete
    op = sd.delete_namespace(Id=dns_id)["OperationId"]
    assert sd.get_operation(OperationId=op)["Operation"]["Type"] == "DELETE_NAMESPACE"
    with pytest.raises(ClientError) as exc:
        sd.get_namespace(Id=dns_id)
    assert code_of(exc)[0] == "NamespaceNotFound"


def test_creator_request_id_is_idempotent(sd: Any) -> None:
    name = unique("idem")
    token = uuid.uuid4().hex
    first = sd.create_http_namespace(Name=name, CreatorRequestId=token)["OperationId"]
    again = sd.create_http_namespace(Name=name, CreatorRequestId=token)["OperationId"]
    assert first == again
    with pytest.raises(ClientError) as exc:
        sd.create_http_namespace(Name=unique("other"), CreatorRequestId=token)
    assert code_of(exc)[0] == "DuplicateRequest"


def test_services(sd: Any) -> None:
    ns_id = _namespace(sd, kind="dns")
    created = sd.create_service(
        Name="api",
        NamespaceId=ns_id,
        Description="the api",
        DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 10}]},
        HealthCheckCustomConfig={"FailureThreshold": 1},
        Tags=[{"Key": "team", "Value": "a"}],
    )["Service"]
    srv = created["Id"]
    assert created["Type"] == "DNS_HTTP" and created["Arn"].endswith(f":service/{srv}")
    got = sd.get_service(Id=srv)["Service"]
    assert got["DnsConfig"]["DnsRecords"] == [{"Type": "A", "TTL": 10}]
    assert got["HealthCheckCustomConfig"] == {"FailureThreshold": 1}
    listed = sd.list_services(
        Filters=[{"Name": "NAMESPACE_ID", "Values": [ns_id], "Condition": "EQ"}]
    )
    assert [s["Id"] for s in listed["Services"]] == [srv]
    assert sd.get_namespace(Id=ns_id)["Namespace"]["ServiceCount"] == 1
    op = sd.update_service(
        Id=srv, Service={"DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 20}]}}
    )["OperationId"]
    assert sd.get_operation(OperationId=op)["Operation"]["Type"] == "UPDATE_SERVICE"
    assert sd.get_service(Id=srv)["Service"]["DnsConfig"]["DnsRecords"][0]["TTL"] == 20
    # service attributes
    sd.update_service_attributes(ServiceId=srv, Attributes={"tier": "gold", "x": "1"})
    sd.delete_service_attributes(ServiceId=srv, Attributes=["x"])
    assert sd.get_service_attributes(ServiceId=srv)["ServiceAttributes"]["Attributes"] == {
        "tier": "gold"
    }
    # errors
    with pytest.raises(ClientError) as exc:
        sd.create_service(Name="api", NamespaceId=ns_id)
    assert code_of(exc)[0] == "ServiceAlreadyExists"
    with pytest.raises(ClientError) as exc:
        sd.create_service(Name="x", NamespaceId="ns-nope")
    assert code_of(exc)[0] == "NamespaceNotFound"
    http_ns = _namespace(sd)
    with pytest.raises(ClientError) as exc:
        sd.create_service(
            Name="x", NamespaceId=http_ns, DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 1}]}
        )
    assert code_of(exc) == (
        "InvalidInput",
        f"DnsConfig: namespace {http_ns} is an HTTP namespace (no DNS)",
    )
    with pytest.raises(ClientError) as exc:
        sd.create_service(
            Name="x", NamespaceId=ns_id, DnsConfig={"DnsRecords": [{"Type": "A", "TTL": -1}]}
        )
    assert code_of(exc)[0] == "InvalidInput"
    with pytest.raises(ClientError) as exc:
        sd.create_service(Name="bad name!", NamespaceId=ns_id)
    assert code_of(exc)[0] == "InvalidInput"
    with pytest.raises(ClientError) as exc:
        sd.get_service(Id="srv-nope")
    assert code_of(exc)[0] == "ServiceNotFound"
    # delete: refused while instances remain
    sd.register_instance(
        ServiceId=srv, InstanceId="i1", Attributes={"AWS_INSTANCE_IPV4": "198.18.0.1"}
    )
    with pytest.raises(ClientError) as exc:
        sd.delete_service(Id=srv)
    assert code_of(exc)[0] == "ResourceInUse"
    sd.deregister_instance(ServiceId=srv, InstanceId="i1")
    sd.delete_service(Id=srv)
    with pytest.raises(ClientError) as exc:
        sd.get_service(Id=srv)
    assert code_of(exc)[0] == "ServiceNotFound"


@pytest.fixture(scope="module")
def colors(sd: Any) -> tuple[str, str, str]:
    """An HTTP namespace with a custom-health-checked service and six instances."""
    name = unique("colors")
    ns_id = _namespace(sd, name)
    srv = sd.create_service(
        Name="color", NamespaceId=ns_id, HealthCheckCustomConfig={"FailureThreshold": 1}
    )["Service"]["Id"]
    for index, (color, zone) in enumerate(
        [("blue", "a"), ("blue", "b"), ("red", "a"), ("red", "b"), ("green", "a"), ("green", "b")]
    ):
        sd.register_instance(
            ServiceId=srv,
            InstanceId=f"{color}-{zone}",
            Attributes={
                "AWS_INSTANCE_IPV4": f"198.18.3.{index + 1}",
                "AWS_INSTANCE_PORT": "8080",
                "color": color,
                "zone": zone,
            },
        )
    return name, ns_id, srv


def test_instances_register_get_list(sd: Any, colors: tuple[str, str, str]) -> None:
    _, _, srv = colors
    got = sd.get_instance(ServiceId=srv, InstanceId="blue-a")
    assert got["Instance"]["Attributes"]["color"] == "blue"
    assert got["ResourceOwner"] == ACCOUNT
    # pagination
    page = sd.list_instances(ServiceId=srv, MaxResults=4)
    assert len(page["Instances"]) == 4 and page["NextToken"]
    rest = sd.list_instances(ServiceId=srv, MaxResults=4, NextToken=page["NextToken"])
    ids = [i["Id"] for i in page["Instances"] + rest["Instances"]]
    assert ids == sorted(ids) and len(set(ids)) == 6 and "NextToken" not in rest
    assert sd.get_service(Id=srv)["Service"]["InstanceCount"] == 6
    # register is an upsert
    sd.register_instance(
        ServiceId=srv,
        InstanceId="green-b",
        Attributes={"AWS_INSTANCE_IPV4": "198.18.3.66", "color": "green", "zone": "b"},
    )
    assert (
        sd.get_instance(ServiceId=srv, InstanceId="green-b")["Instance"]["Attributes"][
            "AWS_INSTANCE_IPV4"
        ]
        == "198.18.3.66"
    )
    assert sd.get_service(Id=srv)["Service"]["InstanceCount"] == 6
    with pytest.raises(ClientError) as exc:
        sd.get_instance(ServiceId=srv, InstanceId="nope")
    assert code_of(exc)[0] == "InstanceNotFound"
    with pytest.raises(ClientError) as exc:
        sd.list_instances(ServiceId="srv-nope")
    assert code_of(exc)[0] == "ServiceNotFound"


def test_discover_instances_filters(sd: Any, colors: tuple[str, str, str]) -> None:
    name, _, srv = colors

    def ids(**kwargs: Any) -> list[str]:
        found = sd.discover_instances(NamespaceName=name, ServiceName="color", **kwargs)
        return sorted(i["InstanceId"] for i in found["Instances"])

    assert ids() == ["blue-a", "blue-b", "green-a", "green-b", "red-a", "red-b"]
    assert ids(QueryParameters={"color": "blue"}) == ["blue-a", "blue-b"]
    assert ids(QueryParameters={"color": "blue", "zone": "b"}) == ["blue-b"]
    # optional parameters narrow when something matches them, else they are ignored
    assert ids(QueryParameters={"color": "red"}, OptionalParameters={"zone": "a"}) == ["red-a"]
    assert ids(QueryParameters={"color": "red"}, OptionalParameters={"zone": "z"}) == [
        "red-a",
        "red-b",
    ]
    assert len(ids(MaxResults=2)) == 2
    # health
    revision = sd.discover_instances_revision(NamespaceName=name, ServiceName="color")[
        "InstancesRevision"
    ]
    sd.update_instance_custom_health_status(ServiceId=srv, InstanceId="blue-a", Status="UNHEALTHY")
    assert sd.get_instances_health_status(ServiceId=srv, Instances=["blue-a", "blue-b"])[
        "Status"
    ] == {
        "blue-a": "UNHEALTHY",
        "blue-b": "HEALTHY",
    }
    assert ids(QueryParameters={"color": "blue"}) == ["blue-b"]  # HEALTHY by default
    assert ids(QueryParameters={"color": "blue"}, HealthStatus="UNHEALTHY") == ["blue-a"]
    assert ids(QueryParameters={"color": "blue"}, HealthStatus="ALL") == ["blue-a", "blue-b"]
    sd.update_instance_custom_health_status(ServiceId=srv, InstanceId="blue-b", Status="UNHEALTHY")
    assert ids(QueryParameters={"color": "blue"}, HealthStatus="HEALTHY") == []
    assert ids(QueryParameters={"color": "blue"}, HealthStatus="HEALTHY_OR_ELSE_ALL") == [
        "blue-a",
        "blue-b",
    ]
    # a health change does not move the revision; a registration does
    assert (
        sd.discover_instances_revision(NamespaceName=name, ServiceName="color")["InstancesRevision"]
        == revision
    )
    found = sd.discover_instances(
        NamespaceName=name, ServiceName="color", QueryParameters={"color": "red"}
    )
    assert {i["HealthStatus"] for i in found["Instances"]} == {"HEALTHY"}
    assert (
        found["Instances"][0]["NamespaceName"] == name
        and found["Instances"][0]["ServiceName"] == "color"
    )
    sd.register_instance(
        ServiceId=srv, InstanceId="extra", Attributes={"AWS_INSTANCE_IPV4": "198.18.3.99"}
    )
    assert (
        sd.discover_instances_revision(NamespaceName=name, ServiceName="color")["InstancesRevision"]
        > revision
    )
    sd.deregister_instance(ServiceId=srv, InstanceId="extra")
    status = sd.get_instances_health_status(ServiceId=srv, MaxResults=2)
    assert len(status["Status"]) == 2 and status["NextToken"]
    for bad in (
        {"NamespaceName": "nope", "ServiceName": "color"},
        {"NamespaceName": name, "ServiceName": "nope"},
    ):
        with pytest.raises(ClientError) as exc:
            sd.discover_instances(**bad)
        assert code_of(exc)[0] in ("NamespaceNotFound", "ServiceNotFound")


def test_custom_health_needs_a_custom_health_check(sd: Any) -> None:
    ns_id = _namespace(sd)
    srv = sd.create_service(Name="plain", NamespaceId=ns_id)["Service"]["Id"]
    sd.register_instance(ServiceId=srv, InstanceId="p1", Attributes={"k": "v"})
    with pytest.raises(ClientError) as exc:
        sd.update_instance_custom_health_status(ServiceId=srv, InstanceId="p1", Status="UNHEALTHY")
    assert code_of(exc)[0] == "CustomHealthNotFound"
    # a service without a health check: UNKNOWN, and every instance is discovered
    name = sd.get_namespace(Id=ns_id)["Namespace"]["Name"]
    found = sd.discover_instances(NamespaceName=name, ServiceName="plain", HealthStatus="HEALTHY")
    assert [(i["InstanceId"], i["HealthStatus"]) for i in found["Instances"]] == [("p1", "UNKNOWN")]


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"AWS_INSTANCE_IPV4": "300.1.1.1"}, "Attributes.AWS_INSTANCE_IPV4"),
        ({"AWS_INSTANCE_IPV6": "nope"}, "Attributes.AWS_INSTANCE_IPV6"),
        ({"AWS_INSTANCE_PORT": "70000"}, "Attributes.AWS_INSTANCE_PORT"),
        ({"AWS_INIT_HEALTH_STATUS": "MAYBE"}, "Attributes.AWS_INIT_HEALTH_STATUS"),
        ({f"k{i}": "v" for i in range(31)}, "Attributes"),
        (
            {"a": "x" * 1024, "b": "x" * 1024, "c": "x" * 1024, "d": "x" * 1024, "e": "x" * 1024},
            "Attributes",
        ),
        ({"k": "x" * 1025}, "Attributes.k"),
        ({"bad key": "v"}, "Attributes"),
    ],
)
def test_register_validation(
    sd: Any, colors: tuple[str, str, str], attributes: dict[str, str], field: str
) -> None:
    _, _, srv = colors
    before = sd.list_instances(ServiceId=srv)["Instances"]
    with pytest.raises(ClientError) as exc:
        sd.register_instance(ServiceId=srv, InstanceId="v1", Attributes=attributes)
    code, message = code_of(exc)
    assert code == "InvalidInput" and message.startswith(field), message
    assert sd.list_instances(ServiceId=srv)["Instances"] == before


def test_register_errors(sd: Any) -> None:
    with pytest.raises(ClientError) as exc:
        sd.register_instance(ServiceId="srv-nope", InstanceId="i", Attributes={"k": "v"})
    assert code_of(exc)[0] == "ServiceNotFound"
    ns_id = _namespace(sd, kind="dns")
    srv = sd.create_service(
        Name="needs-a", NamespaceId=ns_id, DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 5}]}
    )["Service"]["Id"]
    with pytest.raises(ClientError) as exc:
        sd.register_instance(ServiceId=srv, InstanceId="i", Attributes={"k": "v"})
    assert code_of(exc) == (
        "InvalidInput",
        "Attributes.AWS_INSTANCE_IPV4: required, the service has A records",
    )
    with pytest.raises(ClientError) as exc:
        sd.register_instance(
            ServiceId=srv, InstanceId="bad id!", Attributes={"AWS_INSTANCE_IPV4": "198.18.0.1"}
        )
    assert code_of(exc)[0] == "InvalidInput"
    with pytest.raises(ClientError) as exc:
        sd.deregister_instance(ServiceId=srv, InstanceId="never")
    assert code_of(exc)[0] == "InstanceNotFound"


def test_operations_and_tags(sd: Any) -> None:
    ns_id = _namespace(sd)
    arn = f"arn:aws:servicediscovery:us-east-1:{ACCOUNT}:namespace/{ns_id}"
    listed = sd.list_operations(
        Filters=[
            {"Name": "NAMESPACE_ID", "Values": [ns_id], "Condition": "EQ"},
            {"Name": "TYPE", "Values": ["CREATE_NAMESPACE", "DELETE_NAMESPACE"], "Condition": "IN"},
        ]
    )["Operations"]
    assert len(listed) == 1 and listed[0]["Status"] == "SUCCESS"
    statuses = sd.list_operations(Filters=[{"Name": "STATUS", "Values": ["FAIL"]}])["Operations"]
    assert statuses == []
    with pytest.raises(ClientError) as exc:
        sd.get_operation(OperationId="nope")
    assert code_of(exc)[0] == "OperationNotFound"
    sd.tag_resource(ResourceARN=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    sd.untag_resource(ResourceARN=arn, TagKeys=["a"])
    assert sd.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(ClientError) as exc:
        sd.list_tags_for_resource(ResourceARN=arn.replace(ns_id, "ns-nope"))
    assert code_of(exc)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        sd.tag_resource(ResourceARN=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(201)])
    assert code_of(exc)[0] in ("InvalidInput", "TooManyTagsException")


def _raw(server: MeshplaneServer, operation: str, body: bytes) -> httpx.Response:
    return httpx.post(
        server.url + "/",
        content=body,
        headers={"X-Amz-Target": TARGET + operation, "Content-Type": "application/x-amz-json-1.1"},
        timeout=60,
    )


def test_hostile_bodies_get_invalid_input_and_change_nothing(
    server: MeshplaneServer, sd: Any
) -> None:
    before = httpx.get(server.url + "/healthz").json()["revision"]
    for body in (b"{not json", b"[1,2]", b'{"Name": 5}', b"\xff\xfe"):
        response = _raw(server, "CreateHttpNamespace", body)
        assert response.status_code == 400, response.text
        assert response.json()["__type"] in ("InvalidInput", "BadRequestException")
    deep = b'{"Name":' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = _raw(server, "CreateHttpNamespace", deep)
    assert response.status_code == 400
    huge = b'{"Name":"' + b"a" * (60 * 1024 * 1024) + b'"}'
    response = _raw(server, "CreateHttpNamespace", huge)
    assert response.status_code in (400, 413)
    unknown = _raw(server, "DropEverything", b"{}")
    assert unknown.status_code == 400 and unknown.json()["__type"] == "InvalidInput"
    assert httpx.get(server.url + "/healthz").json()["revision"] == before
    assert "Traceback" not in server.log()


def test_dns_forwarding_off_refuses(server: MeshplaneServer) -> None:
    from tests.support.dns import dig

    # the test server runs with --dns-upstream off: names that are not the mesh's are refused
    assert dig(server.dns_port, "www.example.org").status == "REFUSED"


def test_roles_cover_the_registry(tmp_path: Path, fresh_url: str | None) -> None:
    server, admin = auth_server(tmp_path / "data", database_url=fresh_url)
    try:
        with admin.http(server) as http:
            editor = create_token(http, "shop", "editor")
            viewer = create_token(http, "shop", "viewer")
        admin_sd = server.cloudmap(admin.id, admin.secret)
        ns_id = _namespace(admin_sd)
        srv = admin_sd.create_service(Name="s", NamespaceId=ns_id)["Service"]["Id"]
        # an editor (what a sidecar's token needs) registers; it may not create namespaces
        editor_sd = server.cloudmap(editor.id, editor.secret)
        editor_sd.register_instance(
            ServiceId=srv, InstanceId="e1", Attributes={"appmesh.k8s.aws/mesh": "shop"}
        )
        with pytest.raises(ClientError) as exc:
            editor_sd.register_instance(
                ServiceId=srv, InstanceId="e2", Attributes={"appmesh.k8s.aws/mesh": "other"}
            )
        assert code_of(exc)[0] == "AccessDeniedException"
        with pytest.raises(ClientError) as exc:
            editor_sd.create_http_namespace(Name=unique("no"))
        assert code_of(exc)[0] == "AccessDeniedException"
        # a viewer discovers but does not register
        viewer_sd = server.cloudmap(viewer.id, viewer.secret)
        assert viewer_sd.list_instances(ServiceId=srv)["Instances"][0]["Id"] == "e1"
        with pytest.raises(ClientError) as exc:
            viewer_sd.register_instance(ServiceId=srv, InstanceId="v1", Attributes={"k": "v"})
        assert code_of(exc)[0] == "AccessDeniedException"
        # no credentials at all
        anonymous = server.cloudmap("nobody", "nothing")
        with pytest.raises(ClientError) as exc:
            anonymous.list_namespaces()
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    finally:
        server.stop()


def _aws_binary() -> str:
    here = Path(sys.executable).parent / "aws"
    found = str(here) if here.exists() else shutil.which("aws")
    if found is None:
        pytest.fail("the AWS CLI ('aws', from the awscli package of the test extras) is missing")
    return found


@pytest.fixture
def aws(server: MeshplaneServer, tmp_path: Path) -> Any:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_PAGER": "",
        "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_aws_binary(), "--endpoint-url", server.url, "servicediscovery", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    return run


def test_aws_cli(aws: Any) -> None:
    name = unique("cli")
    created = aws("create-http-namespace", "--name", name)
    assert created.returncode == 0, created.stderr
    op = json.loads(created.stdout)["OperationId"]
    ns_id = json.loads(aws("get-operation", "--operation-id", op).stdout)["Operation"]["Targets"][
        "NAMESPACE"
    ]
    srv = json.loads(aws("create-service", "--name", "web", "--namespace-id", ns_id).stdout)[
        "Service"
    ]["Id"]
    registered = aws(
        "register-instance", "--service-id", srv, "--instance-id", "w1",
        "--attributes", "AWS_INSTANCE_IPV4=198.18.0.7,version=blue",
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    found = aws(
        "discover-instances", "--namespace-name", name, "--service-name", "web",
        "--query-parameters", "version=blue",
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert [i["InstanceId"] for i in json.loads(found.stdout)["Instances"]] == ["w1"]
    listed = aws(
        "list-instances", "--service-id", srv, "--query", "Instances[].Id", "--output", "text"
    )
    assert listed.stdout.split() == ["w1"]
    missing = aws("get-instance", "--service-id", srv, "--instance-id", "nope")
    assert missing.returncode != 0 and "InstanceNotFound" in missing.stderr
    assert aws("deregister-instance", "--service-id", srv, "--instance-id", "w1").returncode == 0
    assert aws("delete-service", "--id", srv).returncode == 0
    assert aws("delete-namespace", "--id", ns_id).returncode == 0
