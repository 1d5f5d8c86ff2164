"""Which listeners and clusters of a proxy speak TLS, and how (App Mesh rules + mesh mTLS).

- Ingress: a listener's own ``tls`` applies; without one, the mesh's mTLS switch does
  (:func:`~meshplane.translate.tls.mesh_listener_tls`).
- Egress: the policy of a provider cluster comes from the backend that reaches it — the
  backend's ``clientPolicy`` if it has one with ``tls``, else ``backendDefaults`` — and applies
  when it is enforced (``enforce``, true by default) and ``ports`` is empty or names the
  provider listener's port.  Without an applicable policy, mesh mTLS applies when the switch is
  on and the provider listener serves the mesh identity (it has no ``tls`` of its own, or its
  certificate is the provider's SPIFFE identity over SDS): the consumer then presents its own
  identity and accepts only the provider's SPIFFE ID.  When several backends with different
  policies reach one provider listener, the first one's applies and the clash is reported.

Pure; called by :mod:`meshplane.translate.proxy` (virtual nodes) and usable by the virtual
gateway translation (``secure_ingress`` with the gateway's listeners, ``secure_egress`` with
its ``backendDefaults``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from meshplane.model.tls import ClientPolicy, ClientPolicyTls, ListenerTls
from meshplane.model.virtual_gateway import VirtualGatewayListener
from meshplane.model.virtual_node import Listener, VirtualNodeSpec
from meshplane.translate import names, tls
from meshplane.translate.context import Context, SharedContext
from meshplane.translate.plan import EgressPlan, Provider

PolicyOf = Callable[[str], ClientPolicy | None]
"""The client policy that applies to a backend virtual service (None: none)."""

_ALPN = {"http": ("h2", "http/1.1"), "http2": ("h2",), "grpc": ("h2",), "tcp": ()}
_UPSTREAM_ALPN = {"http": (), "http2": ("h2",), "grpc": ("h2",), "tcp": ()}


def secure_ingress(
    ctx: Context,
    specs: Iterable[Listener | VirtualGatewayListener],
    listeners: Sequence[listener_pb2.Listener],
) -> list[listener_pb2.Listener]:
    """``listeners`` with TLS applied to the ingress listener of each spec; a listener whose
    STRICT TLS cannot be served is left out."""
    by_name = {names.ingress_listener(ctx.options.address, s.portMapping.port): s for s in specs}
    out = []
    for listener in listeners:
        found = by_name.get(listener.name)
        effective = _listener_tls(ctx, found.tls) if found is not None else None
        if found is None or effective is None:
            out.append(listener)
            continue
        mapping = found.portMapping
        secured = tls.secure_listener(
            ctx,
            listener,
            effective,
            f"listener port {mapping.port}",
            _ALPN.get(mapping.protocol, ()),
        )
        if secured is not None:
            out.append(secured)
    return out


def node_policies(node: VirtualNodeSpec) -> PolicyOf:
    """The client policy of each backend of a virtual node (its own, else backendDefaults)."""
    own = {
        b.virtualService.virtualServiceName: b.virtualService.clientPolicy
        for b in node.backends or ()
        if b.virtualService is not None
        and b.virtualService.clientPolicy is not None
        and b.virtualService.clientPolicy.tls is not None
    }
    default = node.backendDefaults.clientPolicy if node.backendDefaults is not None else None

    def policy(service: str) -> ClientPolicy | None:
        return own.get(service, default)

    return policy


def secure_egress(
    ctx: Context,
    policy_of: PolicyOf,
    plan: EgressPlan,
    clusters: Sequence[cluster_pb2.Cluster],
) -> list[cluster_pb2.Cluster]:
    """``clusters`` with client TLS on the provider clusters that need it; a cluster whose
    policy cannot be applied is left out (its requests fail: never plain text instead)."""
    services = _services_by_cluster(plan)
    providers = {p.cluster: p for p in plan.providers}
    out = []
    for cluster in clusters:
        provider = providers.get(cluster.name)
        if provider is None:
            out.append(cluster)
            continue
        policy = _client_policy(ctx, provider, services.get(cluster.name, ()), policy_of)
        if policy is None:
            out.append(cluster)
            continue
        where = f"virtual node {provider.node!r} port {provider.port}"
        context = tls.upstream_context(
            ctx, policy, f"client TLS to {where}", _UPSTREAM_ALPN.get(provider.protocol, ())
        )
        if context is None:
            ctx.problem(f"{where}: left out, its client TLS policy cannot be applied")
            continue
        secured = cluster_pb2.Cluster()
        secured.CopyFrom(cluster)
        secured.transport_socket.CopyFrom(tls.transport_socket(context))
        out.append(secured)
    return out


def _listener_tls(ctx: Context, own: ListenerTls | None) -> ListenerTls | None:
    return own if own is not None else tls.mesh_listener_tls(ctx)


def _client_policy(
    ctx: Context, provider: Provider, services: Sequence[str], policy_of: PolicyOf
) -> ClientPolicyTls | None:
    chosen: ClientPolicyTls | None = None
    first = ""
    for service in services:
        policy = policy_of(service)
        candidate = policy.tls if policy is not None else None
        if candidate is not None and not _applies(candidate, provider.port):
            candidate = None
        if not first:
            chosen, first = candidate, service
        elif candidate != chosen:
            ctx.problem(
                f"backends {first!r} and {service!r} reach virtual node"
                f" {provider.node!r} port {provider.port} with different client TLS"
                f" policies; the one of {first!r} applies"
            )
    if chosen is not None:
        return chosen
    if ctx.security.mtls is not None and _serves_mesh_identity(ctx, provider):
        return tls.mesh_client_tls(ctx, provider.node)
    return None


def _applies(policy: ClientPolicyTls, port: int) -> bool:
    return policy.enforce and (not policy.ports or port in policy.ports)


def _serves_mesh_identity(ctx: SharedContext, provider: Provider) -> bool:
    own = provider.listener.tls
    if own is None:
        return True
    if own.mode == "DISABLED" or own.certificate.sds is None:
        return False
    return own.certificate.sds.secretName == tls.node_identity(ctx, provider.node)


def _services_by_cluster(plan: EgressPlan) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for http in plan.http:
        for rule in http.rules:
            for target in rule.targets:
                _add(found, target.cluster, http.service)
    for tcp in plan.tcp:
        for target in tcp.targets:
            _add(found, target.cluster, tcp.service)
    return {cluster: tuple(services) for cluster, services in found.items()}


def _add(found: dict[str, list[str]], cluster: str, service: str) -> None:
    services = found.setdefault(cluster, [])
    if service not in services:
        services.append(service)
