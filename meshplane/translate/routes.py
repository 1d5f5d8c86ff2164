"""Route configurations: the ingress route table of each HTTP-like listener and the egress one.

Ingress (``rds_ingress_<proto>_<port>``): one virtual host ``*`` sending everything to the
local application's cluster, with the listener's ``timeout`` (``perRequest`` -> route
timeout, 15 s by default as in App Mesh; ``idle`` -> route idle timeout).

Egress (``rds_egress_http_<egress port>``): one virtual host per HTTP-like backend service
and provider port, named after the service with the domains ``[name, name:port]`` (only
``name:port`` for a provider's further ports); a virtual node provider is one catch-all route,
a virtual router provider is its routes in priority order.  Actions are weighted clusters
(a 503 direct response when no target is left or all weights are 0).  With an ALLOW_ALL mesh
a last virtual host ``*`` sends every other Host to the dynamic forward proxy; with DROP_ALL
an unknown Host gets Envoy's 404.

App Mesh defaults, applied where the spec says nothing (see ``envoy-defaults.md``):

- timeout: ``perRequest`` 15 s; ``idle`` unset, leaving the connection manager's stream idle
  timeout of 300 s (App Mesh's documented idle default).
- retry policy (also on virtual node providers): 2 retries on ``connect-failure``,
  ``refused-stream``, ``reset`` and status 503; gRPC routes also on ``unavailable``.

Used by :mod:`meshplane.translate.proxy` (and :func:`egress_route` by the gateway routes).
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2

from meshplane.model.common import Duration, HttpTimeout
from meshplane.model.route import GrpcRetryPolicy, GrpcRoute, HttpRetryPolicy
from meshplane.model.virtual_node import Listener
from meshplane.translate import names
from meshplane.translate.context import Context, SharedContext
from meshplane.translate.matches import grpc_route_match, http_route_match, match_all
from meshplane.translate.plan import EgressPlan, HttpBackend, HttpRule, Target, service_plan_key
from meshplane.translate.protos import duration, pack, seconds, u32

DEFAULT_REQUEST_TIMEOUT_SECONDS = 15
DEFAULT_NUM_RETRIES = 2
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "reset", "retriable-status-codes")
DEFAULT_RETRIABLE_STATUS_CODES = (503,)
DEFAULT_GRPC_RETRY_ON = ("unavailable",)
_HTTP_EVENTS: dict[str, tuple[str, ...]] = {
    # App Mesh: server-error and gateway-error both include Envoy's reset policy
    # ("5xx" already does); client-error is 409; stream-error is a refused stream.
    "server-error": ("5xx",),
    "gateway-error": ("gateway-error", "reset"),
    "client-error": ("retriable-status-codes",),
    "stream-error": ("refused-stream",),
}
_TCP_EVENTS = {"connection-error": ("connect-failure",)}
_PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"


def ingress_route_config(ctx: Context, listener: Listener) -> route_pb2.RouteConfiguration:
    """The route table of one HTTP-like virtual node listener (to the local application)."""
    mapping = listener.portMapping
    cluster = names.ingress_cluster(ctx.mesh, ctx.target.name, mapping.protocol, mapping.port)
    timeout = listener.timeout
    limits = None
    if timeout is not None:
        limits = timeout.http or timeout.http2 or timeout.grpc
    action = rc.RouteAction(cluster=cluster)
    _apply_timeouts(action, limits)
    route = rc.Route(name=names.INGRESS_VIRTUAL_HOST, match=match_all(), route=action)
    return route_pb2.RouteConfiguration(
        name=names.ingress_route_config(mapping.protocol, mapping.port),
        virtual_hosts=[
            rc.VirtualHost(name=names.INGRESS_VIRTUAL_HOST, domains=["*"], routes=[route])
        ],
    )


def egress_route_config(
    ctx: SharedContext, plan: EgressPlan, egress_port: int
) -> route_pb2.RouteConfiguration:
    """The egress route table (of the listener on ``egress_port``): one virtual host per
    HTTP-like backend service port."""
    config = route_pb2.RouteConfiguration(name=names.egress_route_config(egress_port))
    taken: set[str] = set()
    vhost_names: set[str] = set()
    for backend in plan.http:
        domains = [d for d in backend.domains if d.lower() not in taken]
        if len(domains) < len(backend.domains):
            ctx.problem(
                f"virtual service {backend.service!r}: a domain of port {backend.port}"
                " is already taken by another backend"
            )
        if not domains or backend.virtual_host in vhost_names:
            continue
        taken.update(d.lower() for d in domains)
        vhost_names.add(backend.virtual_host)
        config.virtual_hosts.append(_egress_virtual_host(ctx, backend, domains))
    if ctx.mesh_spec.egressFilter.type == "ALLOW_ALL":
        config.virtual_hosts.append(
            rc.VirtualHost(
                name=names.ALLOW_ALL_VIRTUAL_HOST,
                domains=["*"],
                routes=[
                    rc.Route(
                        name=names.ALLOW_ALL_VIRTUAL_HOST,
                        match=match_all(),
                        route=rc.RouteAction(cluster=names.allow_all_cluster(ctx.mesh)),
                    )
                ],
            )
        )
    return config


def _egress_virtual_host(
    ctx: SharedContext, backend: HttpBackend, domains: list[str]
) -> rc.VirtualHost:
    """The virtual host of one backend, built once per view for every proxy whose plan holds
    this very backend (plans share them: :func:`~meshplane.translate.plan.plan_services`)."""
    key = ("egress-vhost", backend.service, backend.port, backend.virtual_host, tuple(domains))
    found: tuple[HttpBackend, rc.VirtualHost] | None = ctx.view.memo.get(key)
    if found is not None and found[0] is backend:
        return found[1]
    vhost = rc.VirtualHost(
        name=backend.virtual_host,
        domains=domains,
        routes=[egress_route(rule) for rule in backend.rules],
    )
    inputs = ctx.view.inputs_of(service_plan_key(backend.service))
    if inputs is None:  # a plan not from the memo: keep it for this view only
        ctx.view.memo[key] = (backend, vhost)
    else:  # made from what the service's plan was made from
        ctx.view.remember(key, (backend, vhost), inputs)
    return vhost


def egress_route(rule: HttpRule) -> rc.Route:
    """The Envoy route of one rule: its match, and weighted clusters with the route's (or App
    Mesh's default) timeout and retry policy; a 503 when no target weighs anything."""
    route = rule.route
    if route is None:
        match = match_all()
    elif isinstance(route, GrpcRoute):
        match = grpc_route_match(route.match)
    else:
        match = http_route_match(route.match)
    result = rc.Route(name=rule.name, match=match, stat_prefix=rule.stat_prefix)
    if sum(t.weight for t in rule.targets) <= 0:
        result.direct_response.status = 503
        return result
    action = rc.RouteAction(weighted_clusters=_weighted(rule.targets))
    _apply_timeouts(action, route.timeout if route is not None else None)
    action.retry_policy.CopyFrom(
        retry_policy(route.retryPolicy if route is not None else None, rule.protocol == "grpc")
    )
    result.route.CopyFrom(action)
    return result


def _weighted(targets: tuple[Target, ...]) -> rc.WeightedCluster:
    return rc.WeightedCluster(
        clusters=[
            rc.WeightedCluster.ClusterWeight(name=t.cluster, weight=u32(t.weight)) for t in targets
        ]
    )


def _apply_timeouts(action: rc.RouteAction, timeout: HttpTimeout | None) -> None:
    per_request: Duration | None = timeout.perRequest if timeout is not None else None
    if per_request is not None:
        action.timeout.CopyFrom(duration(per_request))
    else:
        action.timeout.CopyFrom(seconds(DEFAULT_REQUEST_TIMEOUT_SECONDS))
    if timeout is not None and timeout.idle is not None:
        action.idle_timeout.CopyFrom(duration(timeout.idle))


def retry_policy(spec: HttpRetryPolicy | GrpcRetryPolicy | None, grpc: bool) -> rc.RetryPolicy:
    """An App Mesh retry policy, or App Mesh's hidden default one when ``spec`` is None."""
    policy = rc.RetryPolicy(
        retry_host_predicate=[
            rc.RetryPolicy.RetryHostPredicate(
                name=_PREVIOUS_HOSTS,
                typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=3,
    )
    if spec is None:
        retry_on = list(DEFAULT_RETRY_ON) + (list(DEFAULT_GRPC_RETRY_ON) if grpc else [])
        policy.retriable_status_codes.extend(DEFAULT_RETRIABLE_STATUS_CODES)
        policy.num_retries.CopyFrom(u32(DEFAULT_NUM_RETRIES))
    else:
        retry_on = []
        for event in spec.httpRetryEvents or ():
            retry_on.extend(_HTTP_EVENTS.get(event, ()))
        for event in spec.tcpRetryEvents or ():
            retry_on.extend(_TCP_EVENTS.get(event, ()))
        if isinstance(spec, GrpcRetryPolicy):
            retry_on.extend(spec.grpcRetryEvents or ())
        if "client-error" in (spec.httpRetryEvents or ()):
            policy.retriable_status_codes.append(409)
        policy.num_retries.CopyFrom(u32(spec.maxRetries))
        if spec.perRetryTimeout.value:
            policy.per_try_timeout.CopyFrom(duration(spec.perRetryTimeout))
    policy.retry_on = ",".join(dict.fromkeys(retry_on))
    return policy
