"""The ``appmesh.k8s.aws/v1beta2`` CRD specs, written in the schema language of ``schema``.

Field for field what the App Mesh controller's Go types (apis/appmesh/v1beta2) accept, with
the differences to the App Mesh API marked: ``renamed`` members (``certificateARN``,
``certificateAuthorityARNs``, ``meshServiceDiscovery``), ``local`` members the controller
reads itself (``awsName``, selectors, ``meshRef``, ``routes``, ``backendGroups``…) and
``*Ref``/``*ARN`` pairs.  Value rules (ranges, enums, unions) are the API model's business and
are checked on the converted spec; the webhook rules live in ``meshplane.manifests.webhooks``.

Used by ``meshplane.manifests.conversion``.
"""

from __future__ import annotations

from meshplane.manifests.schema import (
    BOOLEAN,
    INTEGER,
    STRING,
    Field,
    ListOf,
    Obj,
    Ref,
    Selector,
    local,
    obj,
    renamed,
    req,
)

# --- references -------------------------------------------------------------------------

NAMESPACED_REF = obj(name=req(STRING), namespace=STRING)
MESH_REF = obj(name=req(STRING), uid=STRING)
GATEWAY_REF = obj(name=req(STRING), namespace=STRING, uid=STRING)

VIRTUAL_SERVICE = Ref(
    "VirtualService", "virtualServiceRef", "virtualServiceARN", "virtualServiceName"
)
VIRTUAL_NODE = Ref("VirtualNode", "virtualNodeRef", "virtualNodeARN", "virtualNodeName")
VIRTUAL_ROUTER = Ref("VirtualRouter", "virtualRouterRef", "virtualRouterARN", "virtualRouterName")
WEIGHTED_NODE = Ref("VirtualNode", "virtualNodeRef", "virtualNodeARN", "virtualNode")

# --- shared shapes ----------------------------------------------------------------------

DURATION = obj(unit=req(STRING), value=req(INTEGER))
PORT_MAPPING = obj(port=req(INTEGER), protocol=req(STRING))
MATCH_RANGE = obj(start=req(INTEGER), end=req(INTEGER))
HEADER_MATCH = obj(exact=STRING, prefix=STRING, range=MATCH_RANGE, regex=STRING, suffix=STRING)
HEADER = obj(name=req(STRING), match=HEADER_MATCH, invert=BOOLEAN)
PATH_MATCH = obj(exact=STRING, regex=STRING)
QUERY_PARAMETER = obj(name=req(STRING), match=obj(exact=STRING))
HTTP_TIMEOUT = obj(perRequest=DURATION, idle=DURATION)
TCP_TIMEOUT = obj(idle=DURATION)
HTTP_POOL = obj(maxConnections=req(INTEGER), maxPendingRequests=INTEGER)
REQUESTS_POOL = obj(maxRequests=req(INTEGER))
SANS = obj(match=req(obj(exact=req(ListOf(STRING)))))
HEALTH_CHECK = obj(
    healthyThreshold=req(INTEGER),
    intervalMillis=req(INTEGER),
    path=STRING,
    port=INTEGER,
    protocol=req(STRING),
    timeoutMillis=req(INTEGER),
    unhealthyThreshold=req(INTEGER),
)
KEY_VALUE = obj(key=req(STRING), value=req(STRING))
LOGGING = obj(
    accessLog=obj(
        file=obj(path=req(STRING), format=obj(json=ListOf(KEY_VALUE), text=STRING)),
    )
)

# --- TLS ----------------------------------------------------------------------------------

ACM_CERTIFICATE = obj(certificateARN=renamed(STRING, "certificateArn", required=True))
FILE_CERTIFICATE = obj(certificateChain=req(STRING), privateKey=req(STRING))
SDS = obj(secretName=req(STRING))
ACM_TRUST = obj(
    certificateAuthorityARNs=renamed(ListOf(STRING), "certificateAuthorityArns", required=True)
)
FILE_TRUST = obj(certificateChain=req(STRING))
CLIENT_POLICY = obj(
    tls=obj(
        enforce=BOOLEAN,
        ports=ListOf(INTEGER),
        certificate=obj(file=FILE_CERTIFICATE, sds=SDS),
        validation=req(
            obj(
                trust=req(obj(acm=ACM_TRUST, file=FILE_TRUST, sds=SDS)),
                subjectAlternativeNames=SANS,
            )
        ),
    )
)
BACKEND_DEFAULTS = obj(clientPolicy=CLIENT_POLICY)


def _listener_tls(*, gateway: bool) -> Obj:
    acm = Field(
        ACM_TRUST,
        unsupported="the App Mesh API has no ACM trust for virtual gateway listeners: "
        "use file or sds",
    )
    trust = obj(acm=acm, file=FILE_TRUST, sds=SDS) if gateway else obj(file=FILE_TRUST, sds=SDS)
    return obj(
        certificate=req(obj(acm=ACM_CERTIFICATE, file=FILE_CERTIFICATE, sds=SDS)),
        mode=req(STRING),
        validation=obj(trust=req(trust), subjectAlternativeNames=SANS),
    )


# --- Mesh ---------------------------------------------------------------------------------

MESH = obj(
    awsName=local(STRING),
    namespaceSelector=local(Selector()),
    egressFilter=obj(type=req(STRING)),
    meshOwner=local(STRING),
    meshServiceDiscovery=renamed(obj(ipPreference=STRING), "serviceDiscovery"),
)

# --- VirtualNode --------------------------------------------------------------------------

NODE_LISTENER = obj(
    portMapping=req(PORT_MAPPING),
    healthCheck=HEALTH_CHECK,
    outlierDetection=obj(
        maxServerErrors=req(INTEGER),
        interval=req(DURATION),
        baseEjectionDuration=req(DURATION),
        maxEjectionPercent=req(INTEGER),
    ),
    connectionPool=obj(
        tcp=obj(maxConnections=req(INTEGER)),
        http=HTTP_POOL,
        http2=REQUESTS_POOL,
        grpc=REQUESTS_POOL,
    ),
    tls=_listener_tls(gateway=False),
    timeout=obj(tcp=TCP_TIMEOUT, http=HTTP_TIMEOUT, http2=HTTP_TIMEOUT, grpc=HTTP_TIMEOUT),
)
SERVICE_DISCOVERY = obj(
    awsCloudMap=obj(
        namespaceName=req(STRING), serviceName=req(STRING), attributes=ListOf(KEY_VALUE)
    ),
    dns=obj(hostname=req(STRING), responseType=STRING),
)
BACKEND = obj(
    virtualService=req(
        obj(
            ref=VIRTUAL_SERVICE,
            virtualServiceRef=local(NAMESPACED_REF),
            virtualServiceARN=local(STRING),
            clientPolicy=CLIENT_POLICY,
        )
    )
)
VIRTUAL_NODE_SPEC = obj(
    awsName=local(STRING),
    podSelector=local(Selector()),
    listeners=ListOf(NODE_LISTENER),
    serviceDiscovery=SERVICE_DISCOVERY,
    backends=ListOf(BACKEND),
    backendGroups=local(ListOf(NAMESPACED_REF)),
    backendDefaults=BACKEND_DEFAULTS,
    logging=LOGGING,
    meshRef=local(MESH_REF),
)

# --- VirtualService -----------------------------------------------------------------------

VIRTUAL_SERVICE_SPEC = obj(
    awsName=local(STRING),
    provider=obj(
        virtualNode=obj(
            ref=VIRTUAL_NODE, virtualNodeRef=local(NAMESPACED_REF), virtualNodeARN=local(STRING)
        ),
        virtualRouter=obj(
            ref=VIRTUAL_ROUTER,
            virtualRouterRef=local(NAMESPACED_REF),
            virtualRouterARN=local(STRING),
        ),
    ),
    meshRef=local(MESH_REF),
)

# --- VirtualRouter and its routes ---------------------------------------------------------

WEIGHTED_TARGETS = obj(
    weightedTargets=req(
        ListOf(
            obj(
                ref=WEIGHTED_NODE,
                virtualNodeRef=local(NAMESPACED_REF),
                virtualNodeARN=local(STRING),
                weight=req(INTEGER),
                port=INTEGER,
            )
        )
    )
)
RETRY_EVENTS = ListOf(STRING)
HTTP_ROUTE = obj(
    match=req(
        obj(
            headers=ListOf(HEADER),
            method=STRING,
            prefix=STRING,
            scheme=STRING,
            path=PATH_MATCH,
            queryParameters=ListOf(QUERY_PARAMETER),
            port=INTEGER,
        )
    ),
    action=req(WEIGHTED_TARGETS),
    retryPolicy=obj(
        httpRetryEvents=RETRY_EVENTS,
        tcpRetryEvents=RETRY_EVENTS,
        maxRetries=req(INTEGER),
        perRetryTimeout=req(DURATION),
    ),
    timeout=HTTP_TIMEOUT,
)
GRPC_ROUTE = obj(
    match=req(obj(methodName=STRING, serviceName=STRING, metadata=ListOf(HEADER), port=INTEGER)),
    action=req(WEIGHTED_TARGETS),
    retryPolicy=obj(
        grpcRetryEvents=RETRY_EVENTS,
        httpRetryEvents=RETRY_EVENTS,
        tcpRetryEvents=RETRY_EVENTS,
        maxRetries=req(INTEGER),
        perRetryTimeout=req(DURATION),
    ),
    timeout=HTTP_TIMEOUT,
)
TCP_ROUTE = obj(match=obj(port=INTEGER), action=req(WEIGHTED_TARGETS), timeout=TCP_TIMEOUT)
ROUTE = obj(
    name=local(STRING, required=True),
    grpcRoute=GRPC_ROUTE,
    httpRoute=HTTP_ROUTE,
    http2Route=HTTP_ROUTE,
    tcpRoute=TCP_ROUTE,
    priority=INTEGER,
)
VIRTUAL_ROUTER_SPEC = obj(
    awsName=local(STRING),
    listeners=ListOf(obj(portMapping=req(PORT_MAPPING))),
    routes=local(ListOf(ROUTE)),
    meshRef=local(MESH_REF),
)

# --- VirtualGateway -----------------------------------------------------------------------

GATEWAY_LISTENER = obj(
    portMapping=req(PORT_MAPPING),
    healthCheck=obj(
        healthyThreshold=INTEGER,
        intervalMillis=req(INTEGER),
        path=STRING,
        port=INTEGER,
        protocol=req(STRING),
        timeoutMillis=req(INTEGER),
        unhealthyThreshold=req(INTEGER),
    ),
    connectionPool=obj(http=HTTP_POOL, http2=REQUESTS_POOL, grpc=REQUESTS_POOL),
    tls=_listener_tls(gateway=True),
)
VIRTUAL_GATEWAY_SPEC = obj(
    awsName=local(STRING),
    namespaceSelector=local(Selector()),
    podSelector=local(Selector()),
    gatewayRouteSelector=local(Selector()),
    listeners=ListOf(GATEWAY_LISTENER),
    logging=LOGGING,
    backendDefaults=BACKEND_DEFAULTS,
    meshRef=local(MESH_REF),
)

# --- GatewayRoute -------------------------------------------------------------------------

_TARGET_SERVICE_REF = obj(
    name=req(STRING),
    namespace=STRING,
    port=Field(
        INTEGER,
        ignored="not a field of virtualServiceRef, ignored (Kubernetes drops it); "
        "a target port goes in action.target.port",
    ),
)
GATEWAY_TARGET = obj(
    virtualService=req(
        obj(
            ref=VIRTUAL_SERVICE,
            virtualServiceRef=local(_TARGET_SERVICE_REF),
            virtualServiceARN=local(STRING),
        )
    ),
    port=INTEGER,
)
HOSTNAME_MATCH = obj(exact=STRING, suffix=STRING)
HOSTNAME_REWRITE = obj(defaultTargetHostname=STRING)
HTTP_GATEWAY_ROUTE = obj(
    match=req(
        obj(
            prefix=STRING,
            path=PATH_MATCH,
            queryParameters=ListOf(QUERY_PARAMETER),
            method=STRING,
            hostname=HOSTNAME_MATCH,
            headers=ListOf(HEADER),
            port=INTEGER,
        )
    ),
    action=req(
        obj(
            target=req(GATEWAY_TARGET),
            rewrite=obj(
                prefix=obj(defaultPrefix=STRING, value=STRING),
                path=obj(exact=STRING),
                hostname=HOSTNAME_REWRITE,
            ),
        )
    ),
)
GRPC_GATEWAY_ROUTE = obj(
    match=req(
        obj(serviceName=STRING, hostname=HOSTNAME_MATCH, metadata=ListOf(HEADER), port=INTEGER)
    ),
    action=req(obj(target=req(GATEWAY_TARGET), rewrite=obj(hostname=HOSTNAME_REWRITE))),
)
GATEWAY_ROUTE_SPEC = obj(
    awsName=local(STRING),
    priority=INTEGER,
    grpcRoute=GRPC_GATEWAY_ROUTE,
    httpRoute=HTTP_GATEWAY_ROUTE,
    http2Route=HTTP_GATEWAY_ROUTE,
    virtualGatewayRef=local(GATEWAY_REF),
    meshRef=local(MESH_REF),
)

# --- BackendGroup -------------------------------------------------------------------------

BACKEND_GROUP_SPEC = obj(virtualservices=local(ListOf(NAMESPACED_REF)), meshRef=local(MESH_REF))

SPECS: dict[str, Obj] = {
    "Mesh": MESH,
    "VirtualNode": VIRTUAL_NODE_SPEC,
    "VirtualService": VIRTUAL_SERVICE_SPEC,
    "VirtualRouter": VIRTUAL_ROUTER_SPEC,
    "VirtualGateway": VIRTUAL_GATEWAY_SPEC,
    "GatewayRoute": GATEWAY_ROUTE_SPEC,
    "BackendGroup": BACKEND_GROUP_SPEC,
}
"""The spec schema of every kind of the group, by kind."""
