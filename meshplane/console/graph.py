"""The console's topology graph of one mesh (pure: records, signals and proxy states in, JSON
out).

Laid out left to right by the page: gateways and consuming virtual nodes -> virtual services
-> virtual routers -> routes (with their match) -> virtual nodes.  Elements:

- nodes ``{"id", "kind", "name", "label", "state"}``: ``kind`` is ``gateway``, ``service``,
  ``router``, ``route`` or ``node``; ``state`` is ``ok``, ``nack`` (a proxy of it has its
  last configuration rejected), ``down`` (its proxies stopped reporting or disconnected) or
  ``idle`` (no proxy seen);
- edges ``{"id", "source", "target", "kind", "weight", "share", "signals", "mtls",
  "health"}``: ``kind`` is ``calls`` (a consumer -> a service it sends to: its backends, a
  gateway route's target), ``provider`` (service -> router or node), ``route`` (router ->
  route) or ``target`` (route -> node, with its weight and share); ``signals`` are the last
  window's rate, error rate and p99 (None without traffic); ``health`` follows Kiali's
  thresholds on 5xx: ``failure`` at 10 %, ``degraded`` at 0.1 %, else ``healthy``, or
  ``none`` without traffic.

Built by :mod:`meshplane.console.pages` for the JSON endpoint and the event stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshplane.model.kinds import Kind
from meshplane.store.records import Record
from meshplane.telemetry.signals import Signal

DEGRADED = 0.001
FAILURE = 0.10


def health(error_rate: float | None, rate: float | None) -> str:
    if error_rate is None or not rate:
        return "none"
    if error_rate >= FAILURE:
        return "failure"
    if error_rate >= DEGRADED:
        return "degraded"
    return "healthy"


def _match_label(spec: Mapping[str, Any]) -> str:
    for kind in ("httpRoute", "http2Route", "grpcRoute", "tcpRoute"):
        route = spec.get(kind)
        if not isinstance(route, Mapping):
            continue
        match = route.get("match")
        if not isinstance(match, Mapping):
            return kind.removesuffix("Route")
        if "prefix" in match:
            return f"prefix {match['prefix']}"
        if isinstance(match.get("path"), Mapping):
            path = match["path"]
            return f"path {path.get('exact') or path.get('regex') or ''}"
        if "serviceName" in match:
            return f"service {match['serviceName']}"
        return kind.removesuffix("Route")
    return ""


def _targets(spec: Mapping[str, Any]) -> list[tuple[str, int]]:
    for kind in ("httpRoute", "http2Route", "grpcRoute", "tcpRoute"):
        route = spec.get(kind)
        if isinstance(route, Mapping):
            action = route.get("action")
            if isinstance(action, Mapping):
                return [
                    (str(t.get("virtualNode")), int(t.get("weight", 0)))
                    for t in action.get("weightedTargets", ())
                    if isinstance(t, Mapping)
                ]
    return []


class _Sum:
    def __init__(self) -> None:
        self.requests = 0.0
        self.errors = 0.0
        self.seconds = 0.0
        self.rate = 0.0
        self.p99: float | None = None
        self.reporting = False
        self.mtls = False

    def add(self, signal: Signal) -> None:
        self.mtls = self.mtls or signal.counts.get("tls_total", 0) > 0
        if not signal.reporting:
            return
        self.reporting = True
        self.requests += signal.requests
        self.errors += signal.counts.get("rq_5xx", 0.0)
        self.rate += signal.rate() or 0.0
        p99 = signal.quantile(0.99)
        if p99 is not None:
            self.p99 = max(self.p99 or 0.0, p99)

    def json(self) -> dict[str, Any] | None:
        if not self.reporting:
            return None
        error_rate = self.errors / self.requests if self.requests else None
        return {
            "rate": round(self.rate, 3),
            "errorRate": round(error_rate, 4) if error_rate is not None else None,
            "p99": self.p99,
        }

    def health(self) -> str:
        if not self.reporting or not self.requests:
            return "none"
        return health(self.errors / self.requests, self.rate)


def build_graph(
    mesh: str,
    records: Iterable[Record],
    edges: Sequence[Signal],
    proxies: Sequence[Mapping[str, Any]],
    reporting: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The graph JSON (see the module docstring).  ``proxies``: the connected proxies' status
    JSON; ``reporting``: the telemetry store's proxy list."""
    by_kind: dict[Kind, list[Record]] = {}
    for record in records:
        by_kind.setdefault(record.kind, []).append(record)
    states = _states(proxies, reporting)
    nodes: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []

    def node(kind: str, name: str, label: str, state: str = "ok") -> str:
        element_id = f"{kind}:{name}"
        nodes.append({"id": element_id, "kind": kind, "name": name, "label": label, "state": state})
        return element_id

    def link(source: str, target: str, kind: str, **extra: Any) -> None:
        links.append(
            {
                "id": f"{source}>{target}",
                "source": source,
                "target": target,
                "kind": kind,
                "weight": None,
                "share": None,
                "signals": None,
                "mtls": False,
                "health": "none",
                **extra,
            }
        )

    for record in by_kind.get(Kind.VIRTUAL_GATEWAY, []):
        name = record.key.name
        node("gateway", name, name, states.get(("virtualGateway", name), "idle"))
    for record in by_kind.get(Kind.VIRTUAL_NODE, []):
        name = record.key.name
        node("node", name, name, states.get(("virtualNode", name), "idle"))
    for record in by_kind.get(Kind.VIRTUAL_SERVICE, []):
        name = record.key.name
        node("service", name, name)
    for record in by_kind.get(Kind.VIRTUAL_ROUTER, []):
        name = record.key.name
        ports = [
            f"{item['portMapping']['protocol']}:{item['portMapping']['port']}"
            for item in record.spec.get("listeners", ())
            if isinstance(item, Mapping) and isinstance(item.get("portMapping"), Mapping)
        ]
        node("router", name, f"{name} ({', '.join(ports)})" if ports else name)

    # per source and service: the route series; per destination node: the node edges
    calls: dict[tuple[str, str, str], _Sum] = {}
    routes: dict[tuple[str, str], _Sum] = {}
    targets: dict[str, _Sum] = {}
    tls_by_source: dict[tuple[str, str], bool] = {}
    for signal in edges:
        series = signal.series
        kind = "gateway" if signal.source_kind == "virtualGateway" else "node"
        if series.kind == "route":
            calls.setdefault((kind, signal.source, series.service), _Sum()).add(signal)
            if series.router:
                routes.setdefault((series.router, series.route), _Sum()).add(signal)
        else:
            targets.setdefault(series.node, _Sum()).add(signal)
            if signal.counts.get("tls_total", 0) > 0:
                tls_by_source[(kind, signal.source)] = True

    for record in by_kind.get(Kind.VIRTUAL_SERVICE, []):
        service = record.key.name
        provider = record.spec.get("provider") or {}
        if isinstance(provider.get("virtualRouter"), Mapping):
            link(
                f"service:{service}",
                f"router:{provider['virtualRouter']['virtualRouterName']}",
                "provider",
            )
        elif isinstance(provider.get("virtualNode"), Mapping):
            target = provider["virtualNode"]["virtualNodeName"]
            found = targets.get(target, _Sum())
            link(
                f"service:{service}",
                f"node:{target}",
                "provider",
                signals=found.json(),
                health=found.health(),
                mtls=found.mtls,
            )

    consumers: set[tuple[str, str, str]] = set()
    for record in by_kind.get(Kind.VIRTUAL_NODE, []):
        for backend in record.spec.get("backends", ()) or ():
            wanted = (backend.get("virtualService") or {}).get("virtualServiceName")
            if wanted:
                consumers.add(("node", record.key.name, str(wanted)))
    for record in by_kind.get(Kind.GATEWAY_ROUTE, []):
        for kind in ("httpRoute", "http2Route", "grpcRoute"):
            route = record.spec.get(kind)
            if isinstance(route, Mapping):
                target = ((route.get("action") or {}).get("target") or {}).get(
                    "virtualService"
                ) or {}
                if target.get("virtualServiceName"):
                    consumers.add(("gateway", record.key.parent, str(target["virtualServiceName"])))
    consumers.update(calls)
    services = {r.key.name for r in by_kind.get(Kind.VIRTUAL_SERVICE, [])}
    sources = {(n["kind"], n["name"]) for n in nodes if n["kind"] in ("gateway", "node")}
    for kind, source, service in sorted(consumers):
        if service not in services or (kind, source) not in sources:
            continue
        found = calls.get((kind, source, service), _Sum())
        link(
            f"{kind}:{source}",
            f"service:{service}",
            "calls",
            signals=found.json(),
            health=found.health(),
            mtls=tls_by_source.get((kind, source), False),
        )

    for record in by_kind.get(Kind.ROUTE, []):
        router, name = record.key.parent, record.key.name
        match = _match_label(record.spec)
        route_id = node("route", f"{router}/{name}", f"{name}\n{match}" if match else name)
        found = routes.get((router, name), _Sum())
        link(f"router:{router}", route_id, "route", signals=found.json(), health=found.health())
        weights = _targets(record.spec)
        total = sum(w for _, w in weights) or 1
        for target, weight in weights:
            reached = targets.get(target, _Sum())
            link(
                route_id,
                f"node:{target}",
                "target",
                weight=weight,
                share=round(100 * weight / total, 1),
                signals=reached.json(),
                health=reached.health(),
                mtls=reached.mtls,
            )
    known = {n["id"] for n in nodes}
    return {
        "mesh": mesh,
        "nodes": nodes,
        "edges": [e for e in links if e["source"] in known and e["target"] in known],
    }


def _states(
    proxies: Sequence[Mapping[str, Any]], reporting: Sequence[Mapping[str, Any]]
) -> dict[tuple[str, str], str]:
    """``(kind, name)`` -> ``ok``, ``nack`` (a connected proxy's last push was rejected) or
    ``down`` (it reported telemetry, and no proxy of it reports or is connected now)."""
    states: dict[tuple[str, str], str] = {}
    for proxy in reporting:
        key = (str(proxy.get("kind")), str(proxy.get("name")))
        if proxy.get("reporting"):
            states[key] = "ok"
        else:
            states.setdefault(key, "down")
    for proxy in proxies:
        key = (str(proxy.get("kind")), str(proxy.get("name")))
        nacked = any(
            isinstance(t, Mapping)
            and t.get("lastNack") is not None
            and t["lastNack"].get("version") == t.get("sentVersion")
            for t in (proxy.get("types") or {}).values()
        )
        if nacked:
            states[key] = "nack"
        elif states.get(key) != "nack":
            states[key] = "ok"
    return states
