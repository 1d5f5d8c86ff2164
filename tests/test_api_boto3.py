"""The App Mesh API through a stock boto3 client against a real ``meshplane serve``:
all 38 operations, their error paths, pagination, idempotency and ARNs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

ACCOUNT = "000000000000"


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = exc.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


HTTP_LISTENER = {"portMapping": {"port": 8080, "protocol": "http"}}


def node_spec(hostname: str, backends: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "listeners": [HTTP_LISTENER],
        "serviceDiscovery": {"dns": {"hostname": hostname}},
    }
    if backends:
        spec["backends"] = [{"virtualService": {"virtualServiceName": b}} for b in backends]
    return spec


@pytest.fixture
def mesh(appmesh: Any) -> str:
    name = unique("mesh")
    appmesh.create_mesh(meshName=name)
    return name


def test_mesh_lifecycle(appmesh: Any) -> None:
    name = unique("mesh")
    created = appmesh.create_mesh(meshName=name, tags=[{"key": "team", "value": "a"}])["mesh"]
    assert created["meshName"] == name
    meta = created["metadata"]
    assert meta["arn"] == f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/{name}"
    assert meta["version"] == 1
    assert meta["meshOwner"] == meta["resourceOwner"] == ACCOUNT
    assert meta["uid"]
    assert meta["createdAt"] == meta["lastUpdatedAt"]
    assert created["status"]["status"] == "ACTIVE"
    assert created["spec"] == {"egressFilter": {"type": "DROP_ALL"}}

    described = appmesh.describe_mesh(meshName=name)["mesh"]
    assert described == created

    updated = appmesh.update_mesh(meshName=name, spec={"egressFilter": {"type": "ALLOW_ALL"}})[
        "mesh"
    ]
    assert updated["metadata"]["version"] == 2
    assert updated["spec"]["egressFilter"]["type"] == "ALLOW_ALL"
    assert updated["metadata"]["lastUpdatedAt"] >= updated["metadata"]["createdAt"]

    names = [
        m["meshName"]
        for m in appmesh.get_paginator("list_meshes").paginate().build_full_result()["meshes"]
    ]
    assert name in names

    deleted = appmesh.delete_mesh(meshName=name)["mesh"]
    assert deleted["status"]["status"] == "DELETED"
    with pytest.raises(ClientError) as exc:
        appmesh.describe_mesh(meshName=name)
    assert error_of(exc)[:2] == ("NotFoundException", 404)


def test_every_kind_crud(appmesh: Any, mesh: str) -> None:
    node = appmesh.create_virtual_node(
        meshName=mesh, virtualNodeName="blue", spec=node_spec("blue.local")
    )["virtualNode"]
    assert node["virtualNodeName"] == "blue"
    assert node["metadata"]["arn"].endswith(f":mesh/{mesh}/virtualNode/blue")
    appmesh.create_virtual_node(
        meshName=mesh, virtualNodeName="green", spec=node_spec("green.local")
    )

    router = appmesh.create_virtual_router(
        meshName=mesh,
        virtualRouterName="router",
        spec={"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]},
    )["virtualRouter"]
    assert router["metadata"]["arn"].endswith(f":mesh/{mesh}/virtualRouter/router")

    route_spec = {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [
                    {"virtualNode": "blue", "weight": 90},
                    {"virtualNode": "green", "weight": 10},
                ]
            },
        }
    }
    route = appmesh.create_route(
        meshName=mesh, virtualRouterName="router", routeName="r1", spec=route_spec
    )["route"]
    assert route["routeName"] == "r1" and route["virtualRouterName"] == "router"
    assert route["metadata"]["arn"].endswith(f":mesh/{mesh}/virtualRouter/router/route/r1")
    assert route["spec"]["httpRoute"] == route_spec["httpRoute"]

    service = appmesh.create_virtual_service(
        meshName=mesh,
        virtualServiceName="app.local",
        spec={"provider": {"virtualRouter": {"virtualRouterName": "router"}}},
    )["virtualService"]
    assert service["virtualServiceName"] == "app.local"

    gateway = appmesh.create_virtual_gateway(
        meshName=mesh,
        virtualGatewayName="gw",
        spec={"listeners": [{"portMapping": {"port": 8088, "protocol": "http"}}]},
    )["virtualGateway"]
    assert gateway["metadata"]["arn"].endswith(f":mesh/{mesh}/virtualGateway/gw")
    gateway_route = appmesh.create_gateway_route(
        meshName=mesh,
        virtualGatewayName="gw",
        gatewayRouteName="gr",
        spec={
            "httpRoute": {
                "match": {"prefix": "/"},
                "action": {"target": {"virtualService": {"virtualServiceName": "app.local"}}},
            }
        },
    )["gatewayRoute"]
    assert gateway_route["metadata"]["arn"].endswith(
        f":mesh/{mesh}/virtualGateway/gw/gatewayRoute/gr"
    )

    # describe each
    assert (
        appmesh.describe_virtual_node(meshName=mesh, virtualNodeName="blue")["virtualNode"] == node
    )
    assert (
        appmesh.describe_virtual_router(meshName=mesh, virtualRouterName="router")["virtualRouter"]
        == router
    )
    assert (
        appmesh.describe_route(meshName=mesh, virtualRouterName="router", routeName="r1")["route"]
        == route
    )
    assert (
        appmesh.describe_virtual_service(meshName=mesh, virtualServiceName="app.local")[
            "virtualService"
        ]
        == service
    )
    assert (
        appmesh.describe_virtual_gateway(meshName=mesh, virtualGatewayName="gw")["virtualGateway"]
        == gateway
    )
    assert (
        appmesh.describe_gateway_route(
            meshName=mesh, virtualGatewayName="gw", gatewayRouteName="gr"
        )["gatewayRoute"]
        == gateway_route
    )

    # list each (Ref shapes)
    nodes = appmesh.list_virtual_nodes(meshName=mesh)["virtualNodes"]
    assert sorted(n["virtualNodeName"] for n in nodes) == ["blue", "green"]
    ref = next(n for n in nodes if n["virtualNodeName"] == "blue")
    assert set(ref) == {
        "arn",
        "createdAt",
        "lastUpdatedAt",
        "meshName",
        "meshOwner",
        "resourceOwner",
        "version",
        "virtualNodeName",
    }
    assert [
        r["routeName"]
        for r in appmesh.list_routes(meshName=mesh, virtualRouterName="router")["routes"]
    ] == ["r1"]
    assert [
        s["virtualServiceName"]
        for s in appmesh.list_virtual_services(meshName=mesh)["virtualServices"]
    ] == ["app.local"]
    assert [
        r["virtualRouterName"]
        for r in appmesh.list_virtual_routers(meshName=mesh)["virtualRouters"]
    ] == ["router"]
    assert [
        g["virtualGatewayName"]
        for g in appmesh.list_virtual_gateways(meshName=mesh)["virtualGateways"]
    ] == ["gw"]
    assert [
        g["gatewayRouteName"]
        for g in appmesh.list_gateway_routes(meshName=mesh, virtualGatewayName="gw")[
            "gatewayRoutes"
        ]
    ] == ["gr"]

    # update each
    route_spec["httpRoute"]["action"]["weightedTargets"][0]["weight"] = 50
    route_spec["httpRoute"]["action"]["weightedTargets"][1]["weight"] = 50
    updated = appmesh.update_route(
        meshName=mesh, virtualRouterName="router", routeName="r1", spec=route_spec
    )["route"]
    assert updated["metadata"]["version"] == 2
    assert updated["metadata"]["uid"] == route["metadata"]["uid"]
    assert (
        appmesh.update_virtual_node(
            meshName=mesh, virtualNodeName="blue", spec=node_spec("blue2.local")
        )["virtualNode"]["spec"]["serviceDiscovery"]["dns"]["hostname"]
        == "blue2.local"
    )
    assert (
        appmesh.update_virtual_router(
            meshName=mesh, virtualRouterName="router", spec={"listeners": [HTTP_LISTENER]}
        )["virtualRouter"]["metadata"]["version"]
        == 2
    )
    assert (
        appmesh.update_virtual_service(
            meshName=mesh,
            virtualServiceName="app.local",
            spec={"provider": {"virtualNode": {"virtualNodeName": "green"}}},
        )["virtualService"]["metadata"]["version"]
        == 2
    )
    assert (
        appmesh.update_virtual_gateway(
            meshName=mesh,
            virtualGatewayName="gw",
            spec={"listeners": [{"portMapping": {"port": 9090, "protocol": "http"}}]},
        )["virtualGateway"]["metadata"]["version"]
        == 2
    )
    assert (
        appmesh.update_gateway_route(
            meshName=mesh,
            virtualGatewayName="gw",
            gatewayRouteName="gr",
            spec={
                "httpRoute": {
                    "match": {"prefix": "/v2/"},
                    "action": {"target": {"virtualService": {"virtualServiceName": "app.local"}}},
                }
            },
        )["gatewayRoute"]["metadata"]["version"]
        == 2
    )

    # in-use rules, then deletes in dependency order
    in_use = [
        lambda: appmesh.delete_mesh(meshName=mesh),
        lambda: appmesh.delete_virtual_node(meshName=mesh, virtualNodeName="green"),  # provider
        lambda: appmesh.delete_virtual_node(meshName=mesh, virtualNodeName="blue"),  # route target
        lambda: appmesh.delete_virtual_router(meshName=mesh, virtualRouterName="router"),  # routes
        lambda: appmesh.delete_virtual_gateway(meshName=mesh, virtualGatewayName="gw"),  # gw routes
        lambda: appmesh.delete_virtual_service(
            meshName=mesh, virtualServiceName="app.local"
        ),  # gr target
    ]
    for attempt in in_use:
        with pytest.raises(ClientError) as exc:
            attempt()
        code, status, message = error_of(exc)
        assert (code, status) == ("ResourceInUseException", 409), message
        assert "in use" in message or "not empty" in message

    assert (
        appmesh.delete_gateway_route(meshName=mesh, virtualGatewayName="gw", gatewayRouteName="gr")[
            "gatewayRoute"
        ]["status"]["status"]
        == "DELETED"
    )
    assert (
        appmesh.delete_virtual_gateway(meshName=mesh, virtualGatewayName="gw")["virtualGateway"][
            "status"
        ]["status"]
        == "DELETED"
    )
    assert (
        appmesh.delete_virtual_service(meshName=mesh, virtualServiceName="app.local")[
            "virtualService"
        ]["status"]["status"]
        == "DELETED"
    )
    assert (
        appmesh.delete_route(meshName=mesh, virtualRouterName="router", routeName="r1")["route"][
            "status"
        ]["status"]
        == "DELETED"
    )
    assert (
        appmesh.delete_virtual_router(meshName=mesh, virtualRouterName="router")["virtualRouter"][
            "status"
        ]["status"]
        == "DELETED"
    )
    for name in ("blue", "green"):
        assert (
            appmesh.delete_virtual_node(meshName=mesh, virtualNodeName=name)["virtualNode"][
                "status"
            ]["status"]
            == "DELETED"
        )
    appmesh.delete_mesh(meshName=mesh)


def test_not_found_paths(appmesh: Any, mesh: str) -> None:
    calls = [
        lambda: appmesh.describe_mesh(meshName="no-such-mesh"),
        lambda: appmesh.describe_virtual_node(meshName=mesh, virtualNodeName="nope"),
        lambda: appmesh.describe_virtual_service(meshName=mesh, virtualServiceName="nope"),
        lambda: appmesh.describe_virtual_router(meshName=mesh, virtualRouterName="nope"),
        lambda: appmesh.describe_route(meshName=mesh, virtualRouterName="nope", routeName="r"),
        lambda: appmesh.describe_virtual_gateway(meshName=mesh, virtualGatewayName="nope"),
        lambda: appmesh.describe_gateway_route(
            meshName=mesh, virtualGatewayName="nope", gatewayRouteName="r"
        ),
        lambda: appmesh.list_virtual_nodes(meshName="no-such-mesh"),
        lambda: appmesh.list_routes(meshName=mesh, virtualRouterName="nope"),
        lambda: appmesh.create_virtual_node(meshName="no-such-mesh", virtualNodeName="n", spec={}),
        lambda: appmesh.update_virtual_node(meshName=mesh, virtualNodeName="nope", spec={}),
        lambda: appmesh.delete_virtual_node(meshName=mesh, virtualNodeName="nope"),
        lambda: appmesh.delete_mesh(meshName="no-such-mesh"),
        lambda: appmesh.create_virtual_service(
            meshName=mesh,
            virtualServiceName="s",
            spec={"provider": {"virtualNode": {"virtualNodeName": "missing"}}},
        ),
        lambda: appmesh.describe_virtual_node(
            meshName=mesh, virtualNodeName="n", meshOwner="123456789012"
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        code, status, message = error_of(exc)
        assert (code, status) == ("NotFoundException", 404), message
        assert message


def test_bad_requests_name_the_field(appmesh: Any, mesh: str) -> None:
    cases = [
        (
            lambda: appmesh.create_virtual_node(
                meshName=mesh,
                virtualNodeName="n",
                spec={
                    "listeners": [{"portMapping": {"port": 70000, "protocol": "http"}}],
                    "serviceDiscovery": {"dns": {"hostname": "x"}},
                },
            ),
            "spec.listeners[0].portMapping.port",
        ),
        (
            lambda: appmesh.create_virtual_node(
                meshName=mesh, virtualNodeName="n", spec={"listeners": [HTTP_LISTENER]}
            ),
            "erviceDiscovery",
        ),
        (
            lambda: appmesh.create_virtual_router(
                meshName=mesh,
                virtualRouterName="r",
                spec={"listeners": [{"portMapping": {"port": 80, "protocol": "udp"}}]},
            ),
            "protocol",
        ),
        (lambda: appmesh.create_mesh(meshName="x" * 256), "meshName"),
        (lambda: appmesh.list_meshes(limit=101), "limit"),
        (lambda: appmesh.list_meshes(nextToken="garbage!"), "nextToken"),
        (
            lambda: appmesh.describe_virtual_node(
                meshName=mesh, virtualNodeName="n", meshOwner="12"
            ),
            "meshOwner",
        ),
        (lambda: appmesh.tag_resource(resourceArn="arn:aws:s3:::bucket", tags=[]), "resourceArn"),
    ]
    for call, field in cases:
        with pytest.raises((ClientError, ParamValidationError)) as exc:
            call()
        if isinstance(exc.value, ParamValidationError):  # botocore's own client-side check
            continue
        code, status, message = error_of(exc)  # type: ignore[arg-type]
        assert (code, status) == ("BadRequestException", 400), message
        assert field in message, message
    assert appmesh.list_virtual_nodes(meshName=mesh)["virtualNodes"] == []


def test_route_protocol_must_match_router(appmesh: Any, mesh: str) -> None:
    appmesh.create_virtual_node(meshName=mesh, virtualNodeName="n", spec=node_spec("n.local"))
    appmesh.create_virtual_router(
        meshName=mesh, virtualRouterName="r", spec={"listeners": [HTTP_LISTENER]}
    )
    with pytest.raises(ClientError) as exc:
        appmesh.create_route(
            meshName=mesh,
            virtualRouterName="r",
            routeName="g",
            spec={
                "grpcRoute": {
                    "match": {"serviceName": "svc"},
                    "action": {"weightedTargets": [{"virtualNode": "n", "weight": 1}]},
                }
            },
        )
    code, _status, message = error_of(exc)
    assert code == "BadRequestException" and "grpc" in message and "http" in message
    with pytest.raises(ClientError) as exc:
        appmesh.create_route(
            meshName=mesh,
            virtualRouterName="r",
            routeName="missing",
            spec={
                "httpRoute": {
                    "match": {"prefix": "/"},
                    "action": {"weightedTargets": [{"virtualNode": "ghost", "weight": 1}]},
                }
            },
        )
    assert error_of(exc)[0] == "NotFoundException"
    assert appmesh.list_routes(meshName=mesh, virtualRouterName="r")["routes"] == []


def test_conflicts_and_idempotency(appmesh: Any, mesh: str) -> None:
    with pytest.raises(ClientError) as exc:
        appmesh.create_mesh(meshName=mesh)
    assert error_of(exc)[:2] == ("ConflictException", 409)

    token = str(uuid.uuid4())
    spec = node_spec("a.local")
    first = appmesh.create_virtual_node(
        meshName=mesh, virtualNodeName="a", spec=spec, clientToken=token
    )
    again = appmesh.create_virtual_node(
        meshName=mesh, virtualNodeName="a", spec=spec, clientToken=token
    )
    assert first["virtualNode"] == again["virtualNode"]
    with pytest.raises(ClientError) as exc:
        appmesh.create_virtual_node(
            meshName=mesh, virtualNodeName="a", spec=node_spec("b.local"), clientToken=token
        )
    code, status, message = error_of(exc)
    assert (code, status) == ("ConflictException", 409)
    assert "clientToken" in message

    update_token = str(uuid.uuid4())
    u1 = appmesh.update_virtual_node(
        meshName=mesh, virtualNodeName="a", spec=node_spec("c.local"), clientToken=update_token
    )
    u2 = appmesh.update_virtual_node(
        meshName=mesh, virtualNodeName="a", spec=node_spec("c.local"), clientToken=update_token
    )
    assert u1["virtualNode"]["metadata"]["version"] == u2["virtualNode"]["metadata"]["version"] == 2


def test_pagination(appmesh: Any, mesh: str) -> None:
    for i in range(25):
        appmesh.create_virtual_node(meshName=mesh, virtualNodeName=f"n{i:02d}", spec={})
    page = appmesh.list_virtual_nodes(meshName=mesh, limit=10)
    assert len(page["virtualNodes"]) == 10 and page["nextToken"]
    pages = appmesh.get_paginator("list_virtual_nodes").paginate(
        meshName=mesh, PaginationConfig={"PageSize": 7}
    )
    names = [n["virtualNodeName"] for p in pages for n in p["virtualNodes"]]
    assert names == [f"n{i:02d}" for i in range(25)]
    last = appmesh.list_virtual_nodes(meshName=mesh, limit=25)
    assert "nextToken" not in last or last["nextToken"] is None


def test_tags(appmesh: Any, mesh: str) -> None:
    arn = appmesh.describe_mesh(meshName=mesh)["mesh"]["metadata"]["arn"]
    appmesh.tag_resource(
        resourceArn=arn, tags=[{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]
    )
    appmesh.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "3"}])
    tags = appmesh.list_tags_for_resource(resourceArn=arn)["tags"]
    assert tags == [{"key": "a", "value": "3"}, {"key": "b", "value": "2"}]
    appmesh.untag_resource(resourceArn=arn, tagKeys=["a"])
    assert appmesh.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "b", "value": "2"}]

    appmesh.tag_resource(
        resourceArn=arn, tags=[{"key": f"k{i:02d}", "value": "v"} for i in range(40)]
    )
    paged = (
        appmesh.get_paginator("list_tags_for_resource")
        .paginate(resourceArn=arn, PaginationConfig={"PageSize": 15})
        .build_full_result()["tags"]
    )
    assert len(paged) == 41
    with pytest.raises(ClientError) as exc:
        appmesh.tag_resource(
            resourceArn=arn, tags=[{"key": f"x{i}", "value": "v"} for i in range(10)]
        )
    assert error_of(exc)[:2] == ("TooManyTagsException", 400)
    assert (
        len(
            appmesh.get_paginator("list_tags_for_resource")
            .paginate(resourceArn=arn)
            .build_full_result()["tags"]
        )
        == 41
    )

    node = appmesh.create_virtual_node(
        meshName=mesh, virtualNodeName="tagged", spec={}, tags=[{"key": "team", "value": "x"}]
    )["virtualNode"]
    assert appmesh.list_tags_for_resource(resourceArn=node["metadata"]["arn"])["tags"] == [
        {"key": "team", "value": "x"}
    ]
    with pytest.raises(ClientError) as exc:
        appmesh.list_tags_for_resource(
            resourceArn=f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/{mesh}/virtualNode/ghost"
        )
    assert error_of(exc)[0] == "NotFoundException"
    with pytest.raises(ClientError) as exc:
        appmesh.create_virtual_node(
            meshName=mesh,
            virtualNodeName="toomany",
            spec={},
            tags=[{"key": f"k{i}", "value": "v"} for i in range(51)],
        )
    assert error_of(exc)[0] == "TooManyTagsException"


def test_mesh_owner_matches(appmesh: Any, mesh: str) -> None:
    node = appmesh.create_virtual_node(
        meshName=mesh, virtualNodeName="owned", spec={}, meshOwner=ACCOUNT
    )
    assert node["virtualNode"]["metadata"]["meshOwner"] == ACCOUNT
    assert appmesh.list_virtual_nodes(meshName=mesh, meshOwner=ACCOUNT)["virtualNodes"]


def test_openapi_document(server: Any) -> None:
    import httpx

    document = httpx.get(f"{server.url}/openapi.json").json()
    appmesh = {
        op["operationId"]
        for path, item in document["paths"].items()
        if path.startswith("/v20190125/")
        for op in item.values()
    }
    assert len(appmesh) == 38
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert {"ApplyManifests", "Health", "Metrics", "CloudMap"} <= operations
    assert "CreateRoute" in operations and "ListTagsForResource" in operations
    assert (
        "/v20190125/meshes/{meshName}/virtualRouter/{virtualRouterName}/routes" in document["paths"]
    )
