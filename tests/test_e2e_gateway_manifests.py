"""End to end: the App Mesh guide's gateway example, applied as Kubernetes manifests with
``meshplane apply``, and a gateway Envoy run by ``meshplane envoy`` from the Deployment's
``APPMESH_RESOURCE_ARN``.

The ``webapp`` fixture folder is applied verbatim.  The guide leaves ``app-service`` without a
provider, so one more manifest gives it a virtual node (``app`` in ``app-ns``, its DNS hostname
a loopback address) whose sidecar runs in front of a real app.  A request to the gateway's port
8080 then reaches that app through its sidecar, with the Host rewritten to the service name.
Two more VirtualGateways in one namespace pick their GatewayRoutes by ``gatewayRouteSelector``
labels, and the live routing follows that selection.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import Cli
from tests.support.apps import App
from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e

WEBAPP = Path(__file__).parents[1] / "examples" / "webapp"
SERVICE = "app-service.app-ns"


def provider_manifest(address: str) -> str:
    return f"""\
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata:
  name: app
  namespace: app-ns
spec:
  podSelector:
    matchLabels:
      app: app
  listeners:
    - portMapping:
        port: 8080
        protocol: http
  serviceDiscovery:
    dns:
      hostname: {address}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata:
  name: app-service
  namespace: app-ns
spec:
  provider:
    virtualNode:
      virtualNodeRef:
        name: app
"""


SELECTED = """\
apiVersion: v1
kind: Namespace
metadata:
  name: edge
  labels:
    mesh: webapp
    edge: "yes"
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualGateway
metadata:
  name: public
  namespace: edge
spec:
  namespaceSelector:
    matchLabels:
      edge: "yes"
  gatewayRouteSelector:
    matchLabels:
      tier: public
  podSelector:
    matchLabels:
      app: public-gw
  listeners:
    - portMapping:
        port: 8080
        protocol: http
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualGateway
metadata:
  name: private
  namespace: edge
spec:
  namespaceSelector:
    matchLabels:
      edge: "yes"
  gatewayRouteSelector:
    matchLabels:
      tier: private
  podSelector:
    matchLabels:
      app: private-gw
  listeners:
    - portMapping:
        port: 8080
        protocol: http
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: GatewayRoute
metadata:
  name: pub
  namespace: edge
  labels:
    tier: public
spec:
  httpRoute:
    match:
      prefix: /pub
    action:
      target:
        virtualService:
          virtualServiceRef:
            name: app-service
            namespace: app-ns
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: GatewayRoute
metadata:
  name: priv
  namespace: edge
  labels:
    tier: private
spec:
  httpRoute:
    match:
      prefix: /priv
    action:
      target:
        virtualService:
          virtualServiceRef:
            name: app-service
            namespace: app-ns
"""


class GatewayRunner:
    """``meshplane envoy`` (the real command) as a gateway replica."""

    def __init__(self, env: dict[str, str], args: list[str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "meshplane", "envoy", *args],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


@dataclass
class Webapp:
    mesh: Mesh
    cli: Cli
    app: App
    sidecar: Sidecar
    tmp: Path
    runners: list[GatewayRunner]

    def gateway(self, resource: str, *, env: dict[str, str] | None = None) -> str:
        """Run a gateway replica on a fresh address; return that address."""
        address = next_address()
        args = [
            "--xds",
            f"127.0.0.1:{self.mesh.server.xds_port}",
            "--address",
            address,
            "--admin-port",
            str(free_port()),
            "--egress-port",
            str(free_port()),
        ]
        variables = dict(env or {})
        if resource:
            args += ["--resource", resource]
        runner = GatewayRunner(variables, args, self.tmp / f"gateway-{address}.log")
        self.runners.append(runner)
        return address


@pytest.fixture(scope="module")
def webapp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webapp]:
    tmp = tmp_path_factory.mktemp("webapp")
    mesh = Mesh(tmp)
    found: Webapp | None = None
    try:
        cli = Cli(mesh.server)
        cli("apply", "-f", str(WEBAPP))
        address = next_address()
        provider = tmp / "app-provider.yaml"
        provider.write_text(provider_manifest(address))
        cli("apply", "-f", str(provider))
        app = mesh.app("app")
        sidecar = mesh.sidecar(
            "mesh/webapp/virtualNode/app_app-ns", address=address, app_port=app.port
        )
        found = Webapp(mesh, cli, app, sidecar, tmp, [])
        yield found
    finally:
        for runner in found.runners if found is not None else ():
            runner.stop()
        mesh.close()


def get(url: str, **options: object) -> httpx.Response:
    with httpx.Client(timeout=3) as http:
        return http.get(url, **options)  # type: ignore[arg-type]


def wait_ok(webapp: Webapp, url: str) -> httpx.Response:
    last: list[httpx.Response] = []

    def ok() -> bool:
        last[:] = [get(url)]
        return last[0].status_code == 200

    try:
        webapp.mesh.wait(ok, f"{url} to answer 200")
    except AssertionError as error:
        logs = "\n".join(f"--- {r.log_path.name}\n{r.log()}" for r in webapp.runners)
        raise AssertionError(f"{error}\n{logs}") from None
    return last[0]


def test_the_guides_gateway_routes_to_the_service_through_its_sidecar(webapp: Webapp) -> None:
    deployment = yaml.safe_load((WEBAPP / "08-deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["APPMESH_RESOURCE_ARN"].endswith(":mesh/webapp/virtualGateway/ingress-gw_gateway-ns")
    port = container["ports"][0]["containerPort"]
    address = webapp.gateway("", env=env)  # the resource comes from APPMESH_RESOURCE_ARN

    stat = "http.ingress.http.8080.downstream_rq_completed"
    before = webapp.sidecar.stats().get(stat, 0)
    response = wait_ok(webapp, f"http://{address}:{port}/hello?x=1")
    body = response.json()
    assert (body["app"], body["path"], body["host"]) == ("app", "/hello?x=1", SERVICE)
    assert webapp.sidecar.stats().get(stat, 0) > before
    assert get(f"http://{address}:{port}/").json()["path"] == "/"


def test_gateway_route_selectors_decide_which_gateway_serves_a_route(webapp: Webapp) -> None:
    selected = webapp.tmp / "selected.yaml"
    selected.write_text(SELECTED)
    webapp.cli("apply", "-f", str(selected))
    api = webapp.mesh.appmesh
    for gateway, route in (("public_edge", "pub_edge"), ("private_edge", "priv_edge")):
        routes = api.list_gateway_routes(meshName="webapp", virtualGatewayName=gateway)
        assert [r["gatewayRouteName"] for r in routes["gatewayRoutes"]] == [route]
    public = webapp.gateway("mesh/webapp/virtualGateway/public_edge")
    private = webapp.gateway("mesh/webapp/virtualGateway/private_edge")
    assert wait_ok(webapp, f"http://{public}:8080/pub/a").json()["path"] == "/a"
    assert wait_ok(webapp, f"http://{private}:8080/priv/b").json()["path"] == "/b"
    assert get(f"http://{public}:8080/priv/b").status_code == 404
    assert get(f"http://{private}:8080/pub/a").status_code == 404
