"""Property test: any mesh the model accepts translates without raising.

Random meshes from a small strategy: nodes with random listeners (protocol, timeouts,
connection pools, health checks, outlier detection), DNS or Cloud Map discovery, random
backends; services backed by nodes, routers or nothing; routers with random routes of every
type (matches, weights including 0, ports that may or may not exist, retry policies).  Specs
the model rejects are skipped: the translation only ever sees validated specs.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshplane.errors import BadRequestError
from meshplane.model import Kind, parse_spec
from meshplane.translate import ProxyIdentity, ProxyOptions, translate_proxy
from tests.support.translate import MeshBuilder

NODES = ["a", "b", "c", "d"]
SERVICES = ["s1", "s2", "s3", "s4"]
ROUTERS = ["r1", "r2"]
PORTS = [80, 81, 5432, 15001]
PROTOCOLS = ["http", "http2", "grpc", "tcp"]

durations = st.fixed_dictionaries(
    {"unit": st.sampled_from(["s", "ms"]), "value": st.integers(0, 10**12)}
)


@st.composite
def listeners(draw: st.DrawFn) -> dict[str, Any]:
    protocol = draw(st.sampled_from(PROTOCOLS))
    port = draw(st.sampled_from(PORTS))
    spec: dict[str, Any] = {"portMapping": {"port": port, "protocol": protocol}}
    if draw(st.booleans()):
        spec["timeout"] = {
            protocol: {"idle": draw(durations)}
            if protocol == "tcp"
            else {"idle": draw(durations), "perRequest": draw(durations)}
        }
    if draw(st.booleans()):
        spec["connectionPool"] = {
            "tcp": {"tcp": {"maxConnections": draw(st.integers(1, 2**31 - 1))}},
            "http": {"http": {"maxConnections": 1, "maxPendingRequests": 2}},
            "http2": {"http2": {"maxRequests": 3}},
            "grpc": {"grpc": {"maxRequests": 4}},
        }[protocol]
    if draw(st.booleans()):
        spec["healthCheck"] = {
            "healthyThreshold": 2,
            "unhealthyThreshold": 10,
            "intervalMillis": 5000,
            "timeoutMillis": 2000,
            "protocol": draw(st.sampled_from(PROTOCOLS)),
            "path": draw(st.sampled_from(["/", "/ping"])),
        }
    if draw(st.booleans()):
        spec["outlierDetection"] = {
            "maxServerErrors": draw(st.integers(1, 2**63 - 1)),
            "maxEjectionPercent": draw(st.integers(0, 100)),
            "interval": draw(durations),
            "baseEjectionDuration": draw(durations),
        }
    return spec


@st.composite
def nodes(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "listeners": draw(
            st.lists(listeners(), max_size=3, unique_by=lambda x: x["portMapping"]["port"])
        ),
        "backends": [
            {"virtualService": {"virtualServiceName": s}}
            for s in draw(st.lists(st.sampled_from([*SERVICES, "ghost"]), unique=True, max_size=4))
        ],
    }
    discovery = draw(st.sampled_from(["dns", "endpoints", "cloud", "none"]))
    if discovery in ("dns", "endpoints"):
        spec["serviceDiscovery"] = {
            "dns": {
                "hostname": "h.local",
                "responseType": "ENDPOINTS" if discovery == "endpoints" else "LOADBALANCER",
            }
        }
    elif discovery == "cloud":
        spec["serviceDiscovery"] = {"awsCloudMap": {"namespaceName": "n", "serviceName": "s"}}
    if draw(st.booleans()):
        spec["logging"] = {
            "accessLog": {
                "file": {
                    "path": "/dev/null",
                    "format": draw(
                        st.sampled_from(
                            [{"text": "%RESPONSE_CODE%"}, {"json": [{"key": "a", "value": "b"}]}]
                        )
                    ),
                }
            }
        }
    return spec


@st.composite
def routes(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["httpRoute", "http2Route", "grpcRoute", "tcpRoute"]))
    targets = draw(
        st.lists(
            st.fixed_dictionaries(
                {"virtualNode": st.sampled_from([*NODES, "ghost"]), "weight": st.integers(0, 100)},
                optional={"port": st.sampled_from(PORTS)},
            ),
            min_size=1,
            max_size=3,
        )
    )
    route: dict[str, Any] = {"action": {"weightedTargets": targets}}
    port = draw(st.none() | st.sampled_from(PORTS))
    if kind == "grpcRoute":
        route["match"] = {
            "serviceName": "svc.S",
            "methodName": "M",
            "metadata": [{"name": "m", "invert": True, "match": {"range": {"start": 0, "end": 5}}}],
        }
        route["retryPolicy"] = {
            "maxRetries": draw(st.integers(0, 2**40)),
            "perRetryTimeout": draw(durations),
            "grpcRetryEvents": ["unavailable"],
        }
    elif kind == "tcpRoute":
        route["match"] = {}
    else:
        route["match"] = draw(
            st.sampled_from(
                [
                    {"prefix": "/"},
                    {"path": {"exact": "/x"}},
                    {"path": {"regex": "/y.*"}},
                    {
                        "prefix": "/p",
                        "method": "GET",
                        "headers": [{"name": "h", "match": {"suffix": "z"}}],
                        "queryParameters": [{"name": "q"}],
                    },
                ]
            )
        )
        route["retryPolicy"] = {
            "maxRetries": 1,
            "perRetryTimeout": draw(durations),
            "httpRetryEvents": ["server-error", "stream-error"],
        }
        route["timeout"] = {"perRequest": draw(durations)}
    if port is not None:
        route["match"]["port"] = port
    spec: dict[str, Any] = {kind: route}
    if draw(st.booleans()):
        spec["priority"] = draw(st.integers(0, 1000))
    return spec


@st.composite
def meshes(draw: st.DrawFn) -> MeshBuilder:
    mesh = MeshBuilder(
        "m",
        {
            "egressFilter": {"type": draw(st.sampled_from(["ALLOW_ALL", "DROP_ALL"]))},
            "serviceDiscovery": {
                "ipPreference": draw(
                    st.sampled_from(["IPv6_PREFERRED", "IPv4_PREFERRED", "IPv4_ONLY", "IPv6_ONLY"])
                )
            },
        },
    )
    for name in NODES:
        mesh.node(name, draw(nodes()))
    for name in SERVICES:
        provider = draw(st.sampled_from([None, *NODES, *ROUTERS]))
        mesh.service(
            name,
            node=provider if provider in NODES else None,
            router=provider if provider in ROUTERS else None,
        )
    for name in ROUTERS:
        ports = draw(
            st.lists(
                st.tuples(st.sampled_from(PORTS), st.sampled_from(PROTOCOLS)),
                max_size=2,
                unique_by=lambda x: x[0],
            )
        )
        mesh.router(name, *ports)
        for i, route in enumerate(draw(st.lists(routes(), max_size=4))):
            mesh.route(name, f"route-{i}", route)
    return mesh


def valid_mesh(mesh: MeshBuilder) -> bool:
    try:
        for key, spec in mesh.specs.items():
            parse_spec(key.kind, spec)
    except BadRequestError:
        return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mesh=meshes(), address=st.sampled_from(["127.0.0.1", "0.0.0.0", "::1"]))
def test_translate_never_raises(mesh: MeshBuilder, address: str) -> None:
    view = mesh.view()
    options = ProxyOptions(address=address, tcp_egress_ports={"s1": 15001})
    for name in NODES:
        resources = translate_proxy(view, ProxyIdentity("m", Kind.VIRTUAL_NODE, name), options)
        names = [x.name for x in resources.listeners]
        assert len(names) == len(set(names))
        assert len({c.name for c in resources.clusters}) == len(resources.clusters)
        for message in resources.all():
            message.SerializeToString()
        if valid_mesh(mesh):
            assert resources.listeners  # a known node always has its egress listener
