"""Tier 1: the make-before-break planner as a pure function of snapshot and client state."""

from __future__ import annotations

from meshplane.xds import Resource, Snapshot, types
from meshplane.xds.plan import ClientView, plan, plan_gates
from tests.support import xds as build


def chain(cluster: str) -> Snapshot:
    return build.simple_snapshot(cluster, ("127.0.0.2", 80), ("127.0.0.1", 15000))


def accepted(snapshot: Snapshot, type_url: str, *names: str) -> ClientView:
    """A client that has acked ``names`` of ``type_url`` from ``snapshot``."""
    resources = {n: snapshot.get(type_url)[n] for n in names}
    return ClientView(
        requested=True,
        wildcard=type_url in (types.CLUSTER, types.LISTENER),
        names=set(names) if type_url not in (types.CLUSTER, types.LISTENER) else set(),
        acked={n: r.version for n, r in resources.items()},
        held=resources,
    )


def synced(snapshot: Snapshot) -> dict[str, ClientView]:
    return {
        types.CLUSTER: accepted(snapshot, types.CLUSTER, *snapshot.get(types.CLUSTER)),
        types.ENDPOINT: accepted(snapshot, types.ENDPOINT, *snapshot.get(types.ENDPOINT)),
        types.LISTENER: accepted(snapshot, types.LISTENER, *snapshot.get(types.LISTENER)),
        types.ROUTE: accepted(snapshot, types.ROUTE, *snapshot.get(types.ROUTE)),
    }


def test_fresh_client_gets_clusters_first() -> None:
    s = chain("c1")
    views = {
        types.CLUSTER: ClientView(requested=True, wildcard=True),
        types.LISTENER: ClientView(requested=True, wildcard=True),
    }
    desired = plan(s, views)
    assert set(desired[types.CLUSTER]) == {"c1"}
    assert desired[types.LISTENER] == {}  # c1 is not acked and warm yet
    views[types.CLUSTER] = accepted(s, types.CLUSTER, "c1")
    views[types.ENDPOINT] = ClientView(requested=True, names={"c1"})
    assert plan(s, views)[types.LISTENER] == {}  # endpoints not acked yet
    views[types.ENDPOINT] = accepted(s, types.ENDPOINT, "c1")
    assert set(plan(s, views)[types.LISTENER]) == {"lds_ingress"}


def test_switching_clusters_keeps_the_old_one_until_routes_move() -> None:
    old, new = chain("c1"), chain("c2")
    views = synced(old)
    desired = plan(new, views)
    assert desired[types.CLUSTER] == {"c2": new.get(types.CLUSTER)["c2"], "c1": None}
    # the route change waits for c2: the client keeps its route configuration
    assert desired[types.ROUTE] == {"rds_ingress": None}
    # c2 acked and warm: routes move
    views[types.CLUSTER] = accepted(new, types.CLUSTER, "c2")
    views[types.CLUSTER].acked["c1"] = old.get(types.CLUSTER)["c1"].version
    views[types.CLUSTER].held["c1"] = old.get(types.CLUSTER)["c1"]
    views[types.ENDPOINT].names.add("c2")
    views[types.ENDPOINT].acked["c2"] = new.get(types.ENDPOINT)["c2"].version
    desired = plan(new, views)
    assert desired[types.ROUTE]["rds_ingress"] is new.get(types.ROUTE)["rds_ingress"]
    assert "c1" in desired[types.CLUSTER]  # the acked route still points at c1
    # the route change is in flight: still keep c1
    route: Resource = new.get(types.ROUTE)["rds_ingress"]
    views[types.ROUTE].in_flight = {"rds_ingress": route}
    assert "c1" in plan(new, views)[types.CLUSTER]
    # acked: c1 can go
    views[types.ROUTE] = accepted(new, types.ROUTE, "rds_ingress")
    assert set(plan(new, views)[types.CLUSTER]) == {"c2"}


def test_unknown_client_state_is_planned_ungated() -> None:
    s = chain("c1")
    views = {types.LISTENER: ClientView(requested=True, wildcard=True, unknown=True)}
    assert set(plan(s, views)[types.LISTENER]) == {"lds_ingress"}


def test_references_to_missing_clusters_do_not_stall() -> None:
    s = Snapshot(
        [
            build.http_listener("l", "127.0.0.1", 80, "routes"),
            build.route_config("routes", "nowhere"),
        ]
    )
    views = {
        types.LISTENER: ClientView(requested=True, wildcard=True),
        types.ROUTE: ClientView(requested=True, names={"routes"}),
    }
    desired = plan(s, views)
    assert set(desired[types.LISTENER]) == {"l"} and set(desired[types.ROUTE]) == {"routes"}


def test_removed_listener_and_named_resources_kept_while_subscribed() -> None:
    old = chain("c1")
    views = synced(old)
    empty = Snapshot([])
    desired = plan(empty, views)
    assert desired[types.LISTENER] == {}  # removed
    assert desired[types.ROUTE] == {"rds_ingress": None}  # kept until Envoy unsubscribes
    assert desired[types.ENDPOINT] == {"c1": None}
    assert desired[types.CLUSTER] == {"c1": None}  # the held route still uses it


def test_nothing_is_held_back_when_only_a_route_changes() -> None:
    """An update every cluster of which the client has: the gates hold nothing back, so the
    server may settle the ACK of the route configuration without planning again."""
    shared = [
        build.eds_cluster("c1"),
        build.endpoints("c1", ("127.0.0.2", 80)),
        build.eds_cluster("c2"),
        build.endpoints("c2", ("127.0.0.3", 80)),
        build.http_listener("lds_ingress", "127.0.0.1", 15000, "rds_ingress"),
    ]
    old = Snapshot([*shared, build.route_config("rds_ingress", {"c1": 70, "c2": 30})])
    new = Snapshot([*shared, build.route_config("rds_ingress", {"c1": 30, "c2": 70})])
    planned = plan_gates(new, synced(old))
    assert not planned.held_back
    assert planned.desired[types.ROUTE]["rds_ingress"] is new.get(types.ROUTE)["rds_ingress"]


def test_gates_that_wait_for_an_ack_are_held_back() -> None:
    old, new = chain("c1"), chain("c2")
    assert plan_gates(new, synced(old)).held_back  # c1 kept, the routes wait for c2
    fresh = {
        types.CLUSTER: ClientView(requested=True, wildcard=True),
        types.LISTENER: ClientView(requested=True, wildcard=True),
    }
    assert plan_gates(old, fresh).held_back  # the listener waits for c1
    unknown = {types.LISTENER: ClientView(requested=True, wildcard=True, unknown=True)}
    assert plan_gates(old, unknown).held_back  # the first ACK gates it again
