"""End to end with real Envoy sidecars: retries, per-request timeouts, outlier detection and
active health checks, each proven with real traffic and the consumer's admin interface.

One client sidecar reaches four provider nodes, each a real HTTP app behind its own sidecar:

- ``flaky`` (behind router ``flaky``): ``/retry`` has a configured retry policy (2 retries on
  ``server-error``), ``/noretry`` one with ``maxRetries`` 0, anything else App Mesh's hidden
  default policy (2 retries on 503 and connection failures);
- ``slow`` (behind router ``slow``): ``/cut`` has a 300 ms ``perRequest`` timeout, anything
  else the default 15 s;
- ``ejectable``: its listener has outlier detection (3 server errors eject it);
- ``checked``: its listener has an HTTP health check on ``/health``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.apps import App
from tests.support.mesh import Mesh, Sidecar
from tests.support.ports import free_port
from tests.support.topology import call, cluster_hosts, counted, http_listener, outcome, workload

pytestmark = pytest.mark.e2e

MESH = "resilience"
FLAKY = "flaky.resilience.local"
SLOW = "slow.resilience.local"
EJECTABLE = "ejectable.resilience.local"
CHECKED = "checked.resilience.local"
TIMEOUT_MS = 300
DELAY = 3.0

OUTLIER_DETECTION = {
    "maxServerErrors": 3,
    "interval": {"unit": "s", "value": 1},
    "baseEjectionDuration": {"unit": "s", "value": 300},  # outlasts the test
    "maxEjectionPercent": 100,
}
HEALTH_CHECK = {
    "protocol": "http",
    "path": "/health",
    "healthyThreshold": 2,
    "unhealthyThreshold": 2,
    "intervalMillis": 5000,
    "timeoutMillis": 2000,
}


@dataclass
class Resilience:
    mesh: Mesh
    client: Sidecar
    port: int
    apps: dict[str, App]

    def cluster(self, node: str) -> str:
        return f"cds_egress_{MESH}_{node}_http_{self.port}"

    def stat(self, node: str, name: str) -> int:
        return self.client.stats().get(f"cluster.{self.cluster(node)}.{name}", 0)

    def host_flags(self, node: str) -> dict[str, Any]:
        [host] = cluster_hosts(self.client, self.cluster(node))
        return dict(host["health_status"])


def route(
    name: str, prefix: str, target: str, priority: int, **extra: Any
) -> tuple[str, dict[str, Any]]:
    return name, {
        "priority": priority,
        "httpRoute": {
            "match": {"prefix": prefix},
            "action": {"weightedTargets": [{"virtualNode": target, "weight": 1}]},
            **extra,
        },
    }


@pytest.fixture(scope="module")
def res(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Resilience]:
    mesh = Mesh(tmp_path_factory.mktemp("resilience"))
    try:
        api = mesh.appmesh
        port = free_port()
        api.create_mesh(meshName=MESH)
        apps = {}
        listeners = {
            "flaky": http_listener(port),
            "slow": http_listener(port),
            "ejectable": http_listener(port, outlierDetection=OUTLIER_DETECTION),
            "checked": http_listener(port, healthCheck={**HEALTH_CHECK, "port": port}),
        }
        for name, listener in listeners.items():
            apps[name] = mesh.app(name)
            workload(mesh, MESH, name, listeners=[listener], app_port=apps[name].port)
        routers = {
            "flaky": [
                route(
                    "configured",
                    "/retry",
                    "flaky",
                    0,
                    retryPolicy={
                        "maxRetries": 2,
                        "perRetryTimeout": {"unit": "s", "value": 2},
                        "httpRetryEvents": ["server-error"],
                    },
                ),
                route(
                    "disabled",
                    "/noretry",
                    "flaky",
                    1,
                    retryPolicy={
                        "maxRetries": 0,
                        "perRetryTimeout": {"unit": "s", "value": 2},
                        "httpRetryEvents": ["server-error"],
                    },
                ),
                route("default", "/", "flaky", 100),
            ],
            "slow": [
                route("cut", "/cut", "slow", 0, timeout={"perRequest": _ms(TIMEOUT_MS)}),
                route("default", "/", "slow", 100),
            ],
        }
        for router, routes in routers.items():
            api.create_virtual_router(
                meshName=MESH,
                virtualRouterName=router,
                spec={"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]},
            )
            for name, spec in routes:
                api.create_route(meshName=MESH, virtualRouterName=router, routeName=name, spec=spec)
            api.create_virtual_service(
                meshName=MESH,
                virtualServiceName=f"{router}.{MESH}.local",
                spec={"provider": {"virtualRouter": {"virtualRouterName": router}}},
            )
        for node in ("ejectable", "checked"):
            api.create_virtual_service(
                meshName=MESH,
                virtualServiceName=f"{node}.{MESH}.local",
                spec={"provider": {"virtualNode": {"virtualNodeName": node}}},
            )
        client = workload(mesh, MESH, "client", backends=[FLAKY, SLOW, EJECTABLE, CHECKED])

        def serving() -> bool:
            with httpx.Client(timeout=5) as http:
                return all(
                    outcome(call(http, client, host)) == host.split(".")[0]
                    for host in (FLAKY, SLOW, EJECTABLE, CHECKED)
                )

        mesh.wait(serving, "the client sidecar to reach every provider", timeout=30)
        yield Resilience(mesh, client, port, apps)
    finally:
        mesh.close()


def _ms(value: int) -> dict[str, Any]:
    return {"unit": "ms", "value": value}


@pytest.fixture
def flaky(res: Resilience) -> Iterator[App]:
    """The flaky app, failing every other request; healed afterwards."""
    app = res.apps["flaky"]
    app.fail_every = 2
    try:
        yield app
    finally:
        app.fail_every = 0
        app.fail_status = 503


@pytest.mark.parametrize("status", [503, 500])
def test_a_configured_retry_policy_hides_every_failure(
    res: Resilience, flaky: App, status: int
) -> None:
    flaky.fail_status = status
    retries, served = res.stat("flaky", "upstream_rq_retry"), flaky.requests
    assert counted(res.client, FLAKY, 100, "/retry") == {"flaky": 100}
    # the failures happened and were retried, not avoided
    retried = res.stat("flaky", "upstream_rq_retry") - retries
    assert retried >= 49
    assert flaky.requests - served == 100 + retried


@pytest.mark.parametrize("status", [503, 500])
def test_max_retries_zero_shows_every_failure(res: Resilience, flaky: App, status: int) -> None:
    # a configured policy replaces App Mesh's hidden default (which retries 503)
    flaky.fail_status = status
    retries = res.stat("flaky", "upstream_rq_retry")
    assert counted(res.client, FLAKY, 100, "/noretry") == {"flaky": 50, f"HTTP {status}": 50}
    assert res.stat("flaky", "upstream_rq_retry") == retries


def test_the_hidden_default_policy_retries_503_but_not_500(res: Resilience, flaky: App) -> None:
    assert counted(res.client, FLAKY, 100, "/") == {"flaky": 100}
    flaky.fail_status = 500
    assert counted(res.client, FLAKY, 100, "/") == {"flaky": 50, "HTTP 500": 50}


@pytest.fixture
def slow(res: Resilience) -> Iterator[App]:
    app = res.apps["slow"]
    app.delay = DELAY
    try:
        yield app
    finally:
        app.delay = 0.0


def test_a_per_request_timeout_cuts_a_slow_backend(res: Resilience, slow: App) -> None:
    timeouts = res.stat("slow", "upstream_rq_timeout")
    with httpx.Client(timeout=DELAY * 5) as http:
        slept = slow.slept
        response = call(http, res.client, SLOW, "/cut")
        assert response.status_code == 504
        assert response.text == "upstream request timeout"
        # cut while the backend was still busy with it: the proxy's timeout answered
        assert slow.slept == slept, "the 504 came after the backend's answer"
        assert res.stat("slow", "upstream_rq_timeout") == timeouts + 1

        # the same backend through the route without a timeout (App Mesh's 15 s): it answers,
        # once its delay is over
        response = call(http, res.client, SLOW, "/other")
        assert response.status_code == 200
        assert response.json()["path"] == "/other" and slow.slept > slept


def test_outlier_detection_ejects_a_failing_endpoint(res: Resilience) -> None:
    app = res.apps["ejectable"]
    assert counted(res.client, EJECTABLE, 5) == {"ejectable": 5}
    assert not res.host_flags("ejectable").get("failed_outlier_check")
    app.status = 500
    try:
        with httpx.Client(timeout=5) as http:
            for _ in range(10):
                call(http, res.client, EJECTABLE)
                if res.host_flags("ejectable").get("failed_outlier_check"):
                    break
        assert res.host_flags("ejectable").get("failed_outlier_check") is True
        assert res.stat("ejectable", "outlier_detection.ejections_enforced_total") == 1
        assert res.stat("ejectable", "outlier_detection.ejections_enforced_consecutive_5xx") == 1

        # the ejected endpoint gets no more requests: Envoy answers for it
        served = app.requests
        assert counted(res.client, EJECTABLE, 20) == {"HTTP 503": 20}
        assert app.requests == served
        assert res.host_flags("ejectable").get("failed_outlier_check") is True
    finally:
        app.status = None


def test_an_endpoint_failing_its_health_check_gets_no_traffic(res: Resilience) -> None:
    app, mesh = res.apps["checked"], res.mesh
    assert counted(res.client, CHECKED, 5) == {"checked": 5}
    assert not res.host_flags("checked").get("failed_active_health_check")
    app.healthy = False
    try:
        mesh.wait(
            lambda: res.host_flags("checked").get("failed_active_health_check") is True,
            "the active health check to fail the endpoint",
            timeout=60,
        )
        served = app.requests
        assert counted(res.client, CHECKED, 20) == {"HTTP 503": 20}
        assert app.requests == served
        assert res.stat("checked", "health_check.failure") >= 1
    finally:
        app.healthy = True
    mesh.wait(
        lambda: not res.host_flags("checked").get("failed_active_health_check"),
        "the endpoint to pass its health check again",
        timeout=60,
    )
    assert counted(res.client, CHECKED, 5) == {"checked": 5}
