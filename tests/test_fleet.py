"""A fleet: two ``meshplane serve`` replicas on one real PostgreSQL database, real Envoy
sidecars that know both replicas (``xds_more``), boto3 against either replica.

Shown here: a write through replica A reaches a sidecar connected to replica B; concurrent
updates of one route through both replicas lose no update (each loser gets ConflictException);
proxy tokens and API tokens made on A work on B; both replicas serve one mesh CA (a rotation on
A shows on B); SIGKILL of the replica a sidecar is connected to under load fails no request, the
sidecar reconnects to the other replica and a later weight change reaches it; PostgreSQL
restarted under writes loses no acknowledged write and the replicas recover without restarts;
SIGKILL of the duty lease holder moves automatic CA rotation to the other replica (a short CA
lifetime makes a rotation due every few seconds; the audit log names the replica of each).
Start-up faults: a database that is down is retried with backoff, a replica given another KEK
refuses to start and says why.
"""

from __future__ import annotations

import base64
import itertools
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.mesh import Mesh, Sidecar, next_address
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.server import MeshplaneServer
from tests.support.topology import call, http_listener, outcome

pytestmark = pytest.mark.e2e

MESH = "fleet"
COLOR = "color.fleet.local"


def route_spec(blue: int, green: int) -> dict[str, Any]:
    return {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [
                    {"virtualNode": "blue", "weight": blue},
                    {"virtualNode": "green", "weight": green},
                ]
            },
        }
    }


@dataclass
class Fleet:
    a: MeshplaneServer
    b: MeshplaneServer
    mesh: Mesh
    client: Sidecar
    """Knows both replicas (Envoy picks one)."""
    probe: Sidecar
    """Knows replica B only, and presents a proxy token made on A."""

    def home(self, sidecar: str) -> tuple[MeshplaneServer, MeshplaneServer]:
        """The replica ``sidecar`` is connected to, and the other one."""
        if sidecar in connected(self.a):
            return self.a, self.b
        assert sidecar in connected(self.b)
        return self.b, self.a


def connected(server: MeshplaneServer) -> set[str]:
    """The proxies connected to ``server`` itself (not those of the fleet it lists too)."""
    proxies = httpx.get(f"{server.url}/meshplane/v1/proxies", timeout=5).json()["proxies"]
    replica = fleet_state(server)["replica"]
    return {p["name"] for p in proxies if p["replica"] == replica}


def green_weight(client: Sidecar) -> int:
    for config in client.config_dump()["configs"]:
        for route_config in config.get("dynamic_route_configs", []):
            for vhost in route_config["route_config"].get("virtual_hosts", []):
                if COLOR not in vhost.get("domains", []):
                    continue
                for route in vhost.get("routes", []):
                    clusters = route.get("route", {}).get("weighted_clusters", {}).get("clusters")
                    for cluster in clusters or ():
                        if "_green_" in cluster["name"]:
                            return int(cluster.get("weight", 0))
    return -1


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[Fleet]:
    url = postgres.create_database()
    tmp = tmp_path_factory.mktemp("fleet")
    a = MeshplaneServer(tmp / "a", database_url=url).start()
    b = MeshplaneServer(tmp / "b", database_url=url)
    mesh: Mesh | None = None
    try:
        b.start()
        mesh = Mesh(tmp, server=a)
        api = a.boto3()
        port = free_port()
        api.create_mesh(meshName=MESH)
        for color in ("blue", "green"):
            app = mesh.app(color)
            address = next_address()
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName=color,
                spec={
                    "listeners": [http_listener(port)],
                    "serviceDiscovery": {"dns": {"hostname": address}},
                },
            )
            mesh.sidecar(
                f"mesh/{MESH}/virtualNode/{color}",
                address=address,
                app_port=app.port,
                xds_ports=[a.xds_port, b.xds_port],
            )
        api.create_virtual_router(
            meshName=MESH,
            virtualRouterName="color",
            spec={"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]},
        )
        api.create_route(
            meshName=MESH, virtualRouterName="color", routeName="split", spec=route_spec(100, 0)
        )
        api.create_virtual_service(
            meshName=MESH,
            virtualServiceName=COLOR,
            spec={"provider": {"virtualRouter": {"virtualRouterName": "color"}}},
        )
        for name in ("client", "probe"):
            api.create_virtual_node(
                meshName=MESH,
                virtualNodeName=name,
                spec={"backends": [{"virtualService": {"virtualServiceName": COLOR}}]},
            )
        client = mesh.sidecar(f"mesh/{MESH}/virtualNode/client", xds_ports=[a.xds_port, b.xds_port])
        # Its proxy token is made on A (mesh.server); it may only connect to B.
        probe = mesh.sidecar(f"mesh/{MESH}/virtualNode/probe", xds_ports=[b.xds_port])

        def serving() -> bool:
            with httpx.Client(timeout=2) as http:
                return all(outcome(call(http, s, COLOR)) == "blue" for s in (client, probe))

        mesh.wait(serving, "the client and the probe to route color", timeout=40)
        yield Fleet(a, b, mesh, client, probe)
    finally:
        if mesh is not None:
            mesh.close()
        a.stop()
        b.stop()


def test_a_write_through_a_reaches_a_sidecar_connected_to_b(fleet: Fleet) -> None:
    assert "probe" in connected(fleet.b)  # with a proxy token made on A
    assert "probe" not in connected(fleet.a)
    fleet.a.boto3().update_route(
        meshName=MESH, virtualRouterName="color", routeName="split", spec=route_spec(50, 50)
    )
    fleet.mesh.wait(lambda: green_weight(fleet.probe) == 50, "A's write in B's sidecar")
    described = fleet.b.boto3().describe_route(
        meshName=MESH, virtualRouterName="color", routeName="split"
    )["route"]
    assert described["spec"]["httpRoute"]["action"]["weightedTargets"][1]["weight"] == 50


def test_proxy_status_through_any_replica_shows_the_fleet(fleet: Fleet) -> None:
    def proxies(server: MeshplaneServer) -> dict[str, str]:
        listed = httpx.get(f"{server.url}/meshplane/v1/proxies", timeout=5).json()["proxies"]
        return {p["name"]: p["replica"] for p in listed}

    b_id = fleet_state(fleet.b)["replica"]
    everyone = {"blue", "green", "client", "probe"}
    for server in (fleet.a, fleet.b):  # heartbeats every 2 s: each sees the other's proxies
        fleet.mesh.wait(lambda s=server: set(proxies(s)) == everyone, "every proxy of the fleet")
        assert proxies(server)["probe"] == b_id  # the probe only knows replica B


def test_quiet_proxies_are_not_rewritten_only_the_replica_heartbeats(fleet: Fleet) -> None:
    url = fleet.a.database_url
    assert url is not None

    def rows() -> tuple[dict[str, tuple[float, str]], dict[str, float]]:
        with psycopg.connect(url) as conn:
            written = conn.execute("SELECT name, heartbeat_at, status FROM proxies").fetchall()
            beats = conn.execute("SELECT replica, heartbeat_at FROM replicas").fetchall()
        return {name: (at, status) for name, at, status in written}, dict(beats)

    everyone = {"blue", "green", "client", "probe"}
    fleet.mesh.wait(lambda: set(rows()[0]) == everyone, "every proxy's row")
    proxies_before, beats_before = rows()
    assert set(beats_before) == {fleet_state(s)["replica"] for s in (fleet.a, fleet.b)}
    fleet.mesh.wait(
        lambda: all(rows()[1][r] > t + 2 for r, t in beats_before.items()),
        "two more heartbeats of each replica",
    )
    proxies_after = rows()[0]
    rewritten = {n for n in everyone if proxies_after[n][0] != proxies_before[n][0]}
    # a row is written again only with a changed status (an xDS push, ACK or NACK) ...
    for name in rewritten:
        assert proxies_after[name][1] != proxies_before[name][1], name
    # ... and the quiet ones (providers nobody changed) were not written at all
    assert everyone - rewritten, (proxies_before, proxies_after)


def test_concurrent_updates_through_both_replicas_lose_no_update(fleet: Fleet) -> None:
    clients = {"a": fleet.a.boto3(), "b": fleet.b.boto3()}
    start = clients["a"].describe_route(
        meshName=MESH, virtualRouterName="color", routeName="split"
    )["route"]["metadata"]["version"]
    won: list[tuple[int, int]] = []  # (version, green weight) of each acknowledged update
    lost: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def racer(replica: str, index: int) -> None:
        server: MeshplaneServer = getattr(fleet, replica)
        api = server.boto3(config=_no_retries())
        barrier.wait()
        for round_ in range(5):
            green = (index * 5 + round_) % 100 + 1
            try:
                route = api.update_route(
                    meshName=MESH,
                    virtualRouterName="color",
                    routeName="split",
                    spec=route_spec(100 - green, green),
                )["route"]
            except ClientError as error:
                with lock:
                    lost[error.response["Error"]["Code"]] += 1
                continue
            with lock:
                won.append((route["metadata"]["version"], green))

    threads = [
        threading.Thread(target=racer, args=(replica, i))
        for i, replica in enumerate(["a", "b"] * 4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"concurrent updates: {len(won)} acknowledged, {dict(lost)}")
    assert set(lost) <= {"ConflictException"}, lost
    assert len(won) + sum(lost.values()) == 40
    versions = sorted(v for v, _ in won)
    # every acknowledged update is one version: none overwrote another unseen
    assert versions == list(range(start + 1, start + 1 + len(won)))
    last_green = max(won)[1]
    for api in clients.values():  # each replica follows the feed: it gets there soon

        def describe(api: Any = api) -> dict[str, Any]:
            route = api.describe_route(meshName=MESH, virtualRouterName="color", routeName="split")
            return dict(route["route"])

        fleet.mesh.wait(
            lambda d=describe: d()["metadata"]["version"] == start + len(won), "the last version"
        )
        targets = describe()["spec"]["httpRoute"]["action"]["weightedTargets"]
        assert targets[1]["weight"] == last_green
    for sidecar in (fleet.client, fleet.probe):
        fleet.mesh.wait(lambda s=sidecar: green_weight(s) == last_green, "the last update")


def test_an_api_token_made_on_a_works_on_b(fleet: Fleet) -> None:
    made = httpx.post(
        f"{fleet.a.url}/meshplane/v1/tokens",
        json={"mesh": MESH, "role": "viewer", "description": "fleet"},
        timeout=10,
    )
    assert made.status_code == 200, made.text
    token = made.json()
    key_id, secret = token["id"], token["secret"]

    # B unseals the secret with the API-token key both replicas share and checks the SigV4
    # signature: the caller is that viewer (an unknown key would be the anonymous admin here).
    def known_on_b() -> bool:
        listed = httpx.get(f"{fleet.b.url}/meshplane/v1/tokens", timeout=5).json()
        return key_id in {t["id"] for t in listed["tokens"]}

    fleet.mesh.wait(known_on_b, "replica B to follow the new token")
    viewer = fleet.b.boto3(key_id, secret)
    assert viewer.describe_mesh(meshName=MESH)["mesh"]["meshName"] == MESH
    with pytest.raises(ClientError) as refused:
        viewer.create_mesh(meshName="not-allowed")
    assert refused.value.response["Error"]["Code"] == "ForbiddenException"


def identity_certificate(sidecar: Sidecar) -> x509.Certificate | None:
    """The sidecar's own SDS certificate (its config dump; the key is redacted there)."""
    for config in sidecar.config_dump()["configs"]:
        for secret in config.get("dynamic_active_secrets", []):
            chain = secret.get("secret", {}).get("tls_certificate", {}).get("certificate_chain")
            if chain:
                return x509.load_pem_x509_certificate(base64.b64decode(chain["inline_bytes"]))
    return None


def test_both_replicas_issue_certificates_from_one_mesh_ca(fleet: Fleet) -> None:
    """Mesh mTLS on: the probe's certificate comes from replica B, an anchor's (a sidecar
    that knows only replica A) from A, and the client's from whichever replica Envoy picked;
    each is signed by the one mesh CA, and traffic crosses."""
    api = fleet.a.boto3()
    api.create_virtual_node(
        meshName=MESH,
        virtualNodeName="anchor",
        spec={"backends": [{"virtualService": {"virtualServiceName": COLOR}}]},
    )
    anchor = fleet.mesh.sidecar(f"mesh/{MESH}/virtualNode/anchor", xds_ports=[fleet.a.xds_port])
    fleet.mesh.wait(lambda: "anchor" in connected(fleet.a), "the anchor on replica A")
    assert fleet.home("probe")[0] is fleet.b
    arn = api.describe_mesh(meshName=MESH)["mesh"]["metadata"]["arn"]
    api.tag_resource(resourceArn=arn, tags=[{"key": "meshplane.io/mtls", "value": "STRICT"}])
    try:
        sidecars = {"anchor": anchor, "client": fleet.client, "probe": fleet.probe}
        fleet.mesh.wait(
            lambda: all(identity_certificate(s) is not None for s in sidecars.values()),
            "each sidecar's certificate over SDS",
        )
        with httpx.Client(timeout=5) as http:
            fleet.mesh.wait(
                lambda: all(outcome(call(http, s, COLOR)) == "blue" for s in sidecars.values()),
                "mTLS traffic from all three",
            )
        ca = httpx.get(f"{fleet.b.url}/meshplane/v1/meshes/{MESH}/ca", timeout=10).json()
        roots = x509.load_pem_x509_certificates(ca["trustBundle"].encode())
        for name, sidecar in sidecars.items():
            leaf = identity_certificate(sidecar)
            assert leaf is not None
            [issuer] = [r for r in roots if r.subject == leaf.issuer]
            issuer.public_key().verify(
                leaf.signature,
                leaf.tbs_certificate_bytes,
                ec.ECDSA(leaf.signature_hash_algorithm),
            )
            uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert f"/virtualNode/{name}" in str(uris.value), (name, uris)
    finally:
        anchor.stop()  # the fleet's other tests count exactly its four proxies
        api.delete_virtual_node(meshName=MESH, virtualNodeName="anchor")
        api.untag_resource(resourceArn=arn, tagKeys=["meshplane.io/mtls"])
        with httpx.Client(timeout=5) as http:
            fleet.mesh.wait(
                lambda: outcome(call(http, fleet.client, COLOR)) == "blue", "plain text again"
            )


def test_both_replicas_serve_one_mesh_ca_and_a_rotation_on_a_shows_on_b(fleet: Fleet) -> None:
    def ca(server: MeshplaneServer) -> dict[str, Any]:
        response = httpx.get(f"{server.url}/meshplane/v1/meshes/{MESH}/ca", timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    before = ca(fleet.a)
    assert ca(fleet.b) == before
    rotated = httpx.post(f"{fleet.a.url}/meshplane/v1/meshes/{MESH}/ca/rotate", timeout=10)
    assert rotated.status_code == 200, rotated.text
    after = ca(fleet.a)
    assert after != before
    fleet.mesh.wait(lambda: ca(fleet.b) == after, "A's CA rotation on replica B")


def test_sigkill_of_the_clients_replica_fails_no_request(fleet: Fleet) -> None:
    results: Counter[str] = Counter()
    after: Counter[str] = Counter()  # the requests sent once the change was in the client
    lock = threading.Lock()
    stop = threading.Event()
    changed = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                sent_after = changed.is_set()
                try:
                    result = outcome(call(http, fleet.client, COLOR))
                except httpx.HTTPError as error:
                    result = f"error {type(error).__name__}"
                with lock:
                    results[result] += 1
                    if sent_after:
                        after[result] += 1

    def total() -> int:
        with lock:
            return sum(results.values())

    fleet.a.boto3().update_route(
        meshName=MESH, virtualRouterName="color", routeName="split", spec=route_spec(100, 0)
    )
    fleet.mesh.wait(lambda: green_weight(fleet.client) == 0, "all traffic to blue")
    home, other = fleet.home("client")
    worker = threading.Thread(target=load)
    worker.start()
    try:
        fleet.mesh.wait(lambda: total() >= 50, "load to start")
        home.kill()
        fleet.mesh.wait(
            lambda: "client" in connected(other),
            "the client to reconnect to the other replica",
            timeout=60,
        )
        other.boto3().update_route(
            meshName=MESH, virtualRouterName="color", routeName="split", spec=route_spec(0, 100)
        )
        fleet.mesh.wait(lambda: green_weight(fleet.client) == 100, "the change through it")
        # counted from here: a request sent earlier may be answered (and counted) later
        changed.set()

        def sent_after() -> int:
            with lock:
                return sum(after.values())

        fleet.mesh.wait(lambda: sent_after() >= 100, "traffic after it")
    finally:
        stop.set()
        worker.join()
        home.start()  # on the same ports: the rest of the module has two replicas again
    failures = {k: v for k, v in results.items() if k not in ("blue", "green")}
    assert failures == {}, results
    assert results["blue"] > 0 and results["green"] > 0, results
    assert set(after) == {"green"}, after


def test_postgresql_restarted_under_writes_loses_no_acknowledged_write(
    fleet: Fleet, postgres: PostgresServer
) -> None:
    acknowledged: list[str] = []
    refused: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    pids = (fleet.a.process and fleet.a.process.pid, fleet.b.process and fleet.b.process.pid)

    def writer(server: MeshplaneServer, prefix: str) -> None:
        api = server.boto3(config=_no_retries())
        n = 0
        while not stop.is_set():
            name = f"{prefix}-{n}"
            n += 1
            try:
                api.create_virtual_node(meshName=MESH, virtualNodeName=name, spec={})
            except ClientError as error:
                with lock:
                    refused[error.response["Error"]["Code"]] += 1
                time.sleep(0.05)
                continue
            with lock:
                acknowledged.append(name)

    workers = [
        threading.Thread(target=writer, args=(server, f"w{replica}"))
        for replica, server in (("a", fleet.a), ("b", fleet.b))
    ]
    for worker in workers:
        worker.start()
    try:
        fleet.mesh.wait(lambda: len(acknowledged) >= 20, "writes to start")
        postgres.restart(down_for=1.0)
        with lock:
            at_restart = len(acknowledged)
        fleet.mesh.wait(lambda: len(acknowledged) >= at_restart + 20, "writes to resume", 60)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    # while the database was away: a 503-class App Mesh error, never a 500
    assert set(refused) <= {"ServiceUnavailableException"}, refused
    assert refused["ServiceUnavailableException"] > 0
    for server in (fleet.a, fleet.b):
        fleet.mesh.wait(
            lambda server=server: not (set(acknowledged) - _names(server)),
            "every acknowledged write on both replicas",
        )
    assert (fleet.a.process and fleet.a.process.pid, fleet.b.process and fleet.b.process.pid) == (
        pids
    )


def _names(server: MeshplaneServer) -> set[str]:
    names: set[str] = set()
    for page in server.boto3().get_paginator("list_virtual_nodes").paginate(meshName=MESH):
        names |= {n["virtualNodeName"] for n in page["virtualNodes"]}
    return names


def _no_retries() -> Any:
    from botocore.config import Config

    return Config(retries={"max_attempts": 1, "mode": "standard"})


def fleet_state(server: MeshplaneServer) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/meshplane/v1/fleet", timeout=5).json())


def test_one_replica_holds_the_duty_lease_and_it_moves_when_the_holder_dies(
    fleet: Fleet,
) -> None:
    def holders() -> list[str]:
        states = [fleet_state(s) for s in (fleet.a, fleet.b)]
        held = [s["replica"] for s in states if s["dutyLease"]["held"]]
        agreed = {s["dutyLease"]["holder"] for s in states}
        return held if len(held) == 1 and agreed == set(held) else []

    fleet.mesh.wait(lambda: bool(holders()), "exactly one holder both replicas agree on")
    [holder] = holders()
    dying, other = (
        (fleet.a, fleet.b) if holder.endswith(f":{fleet.a.api_port}") else (fleet.b, fleet.a)
    )
    for server in (fleet.a, fleet.b):
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
    status = subprocess.run(
        [sys.executable, "-m", "meshplane", "--server", other.url, "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert status.returncode == 0, status.stderr
    assert "follower" in status.stdout and holder in status.stdout and "postgresql" in status.stdout
    assert "meshplane-test" not in status.stdout  # the database password is never shown
    dying.kill()
    try:
        # the registry's lease sweeper and automatic CA rotation move with the lease
        fleet.mesh.wait(
            lambda: fleet_state(other)["dutyLease"]["held"], "the other replica to take the lease"
        )
        assert fleet_state(other)["dutyLease"]["holder"] == fleet_state(other)["replica"]
    finally:
        dying.start()
    assert fleet_state(dying)["dutyLease"]["held"] is False


# start-up faults ----------------------------------------------------------------------


def test_a_replica_with_another_kek_refuses_to_start(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.create_database()
    first = MeshplaneServer(tmp_path / "a", database_url=url).start()
    try:
        other = MeshplaneServer(tmp_path / "b", database_url=url, env={"MESHPLANE_KEK": "7c" * 32})
        with pytest.raises(RuntimeError, match="exited early") as refused:
            other.start()
        text = str(refused.value)
        assert "sealed under key-encryption key" in text
        assert "give every replica the same --kek-file" in text
        assert "Traceback" not in text
    finally:
        first.stop()


def test_postgresql_without_a_kek_refuses_to_start(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    server = MeshplaneServer(
        tmp_path / "a", database_url=postgres.create_database(), env={"MESHPLANE_KEK": ""}
    )
    with pytest.raises(RuntimeError, match="exited early") as refused:
        server.start()
    assert "--kek-file FILE or MESHPLANE_KEK" in str(refused.value)
    assert "Traceback" not in str(refused.value)


def test_a_database_down_at_start_up_is_retried_then_given_up(tmp_path: Path) -> None:
    closed = free_port()
    server = MeshplaneServer(
        tmp_path / "a",
        database_url=f"postgresql://meshplane:pw@127.0.0.1:{closed}/meshplane",
        extra_args=["--database-wait", "3s"],
    )
    with pytest.raises(RuntimeError, match="exited early") as refused:
        server.start()
    text = str(refused.value)
    assert text.count("retrying in") >= 2  # with backoff
    assert "could not be reached for 3 s" in text
    assert "pw@" not in text  # the password is never printed
    assert "Traceback" not in text


def test_a_database_that_comes_up_late_is_waited_for(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.create_database()
    postgres.stop()
    server = MeshplaneServer(tmp_path / "a", database_url=url)
    started: list[BaseException | None] = []

    def start() -> None:
        try:
            server.start(timeout=60)
            started.append(None)
        except BaseException as error:
            started.append(error)

    thread = threading.Thread(target=start)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while "retrying in" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        postgres.start()
        thread.join()
        assert started == [None], started
        assert server.boto3().create_mesh(meshName="late")["mesh"]["meshName"] == "late"
    finally:
        if postgres.process is None:
            postgres.start()
        thread.join()
        server.stop()


# the CA rotation duty moves with the lease ---------------------------------------------

SHORT_CA = ["--ca-lifetime", "20s", "--ca-rotate-before", "16s"]
SHORT_CA += ["--ca-propagation", "1s", "--ca-overlap", "1s"]
"""A mesh CA due for rotation 4 s after it is made (and after each rotation, 1 s + 1 s later)."""


def rotations(server: MeshplaneServer, mesh: str) -> list[dict[str, Any]]:
    """The ``RotateMeshCa`` entries of the audit log of ``mesh``, oldest first."""
    entries = httpx.get(
        f"{server.url}/meshplane/v1/audit", params={"mesh": mesh, "limit": "1000"}, timeout=5
    ).json()["entries"]
    return [e for e in entries if e["operation"] == "RotateMeshCa"]


def test_sigkill_of_the_lease_holder_moves_ca_rotation_to_the_other_replica(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.create_database()
    replicas = [
        MeshplaneServer(tmp_path / name, database_url=url, extra_args=SHORT_CA)
        for name in ("a", "b")
    ]
    mesh = Mesh(tmp_path, server=replicas[0])
    try:
        for replica in replicas:
            replica.start()
        replicas[0].boto3().create_mesh(meshName="rot")
        made = httpx.get(f"{replicas[0].url}/meshplane/v1/meshes/rot/ca", timeout=10)
        assert made.status_code == 200, made.text  # the mesh's CA, made on first use

        def holder() -> MeshplaneServer | None:
            held = [r for r in replicas if fleet_state(r)["dutyLease"]["held"]]
            return held[0] if len(held) == 1 else None

        mesh.wait(lambda: holder() is not None, "one holder of the duty lease")
        dying = holder()
        assert dying is not None
        [survivor] = [r for r in replicas if r is not dying]
        ids = {r.api_port: fleet_state(r)["replica"] for r in replicas}
        by = {
            r.api_port: f"meshplane@ca-rotation/{ids[r.api_port]}" for r in replicas
        }  # who audits a rotation
        mesh.wait(lambda: len(rotations(survivor, "rot")) >= 1, "a rotation by the holder", 40)
        before_kill = rotations(survivor, "rot")
        assert {e["principal"] for e in before_kill} == {by[dying.api_port]}
        dying.kill()
        mesh.wait(
            lambda: any(
                e["principal"] == by[survivor.api_port] for e in rotations(survivor, "rot")
            ),
            "a rotation by the replica that took the lease over",
            60,
        )
        assert fleet_state(survivor)["dutyLease"]["held"]
        dying.start()  # back as a follower: it sees the CA the survivor rotated
        assert fleet_state(dying)["dutyLease"]["held"] is False

        def ca(server: MeshplaneServer) -> dict[str, Any]:
            return dict(httpx.get(f"{server.url}/meshplane/v1/meshes/rot/ca", timeout=10).json())

        mesh.wait(lambda: ca(dying) == ca(survivor), "one CA on both replicas")
        entries = rotations(dying, "rot")
        assert entries == rotations(survivor, "rot")[: len(entries)]
        print("CA rotations:", [(e["principal"], e["resource"]) for e in entries])
        # each rotation starts from the root the one before made: never two from one root
        chain = [e["resource"].rsplit("/", 1)[1].split("->") for e in entries]
        for (_, made_by_previous), (rotated_from, _) in itertools.pairwise(chain):
            assert rotated_from == made_by_previous, chain
        assert len({old for old, _ in chain}) == len(chain)
        # the holder's rotations, then (after the kill) only the survivor's
        principals = [e["principal"] for e in entries]
        switch = principals.index(by[survivor.api_port])
        assert set(principals[:switch]) == {by[dying.api_port]}
        assert set(principals[switch:]) == {by[survivor.api_port]}
    finally:
        mesh.close()
        for replica in replicas:
            replica.stop()
