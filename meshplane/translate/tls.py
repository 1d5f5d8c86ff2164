"""TLS transport sockets: App Mesh listener TLS and client TLS policies as Envoy contexts.

- A listener ``tls`` (:class:`~meshplane.model.tls.ListenerTls`) becomes a
  ``DownstreamTlsContext``: the certificate from ``file`` (paths on the proxy host) or ``sds``
  (a secret over ADS: meshplane's CA serves the proxy's own SPIFFE identity), and with
  ``validation`` the client must present a certificate that chains to ``trust`` (file or SDS)
  and, if given, carries one of ``subjectAlternativeNames``: mutual TLS.  STRICT serves TLS
  only; PERMISSIVE adds the ``tls_inspector`` listener filter and serves TLS on one filter chain
  (``transport_protocol: tls``) and plain text on another (``raw_buffer``); DISABLED changes
  nothing.  ACM certificates cannot be served by a self-hosted Envoy: a STRICT listener with
  one is left out (fail closed), a PERMISSIVE one serves plain text only; both are reported.
- A client policy ``tls`` (:class:`~meshplane.model.tls.ClientPolicyTls`) becomes an
  ``UpstreamTlsContext`` on the provider's egress cluster: ``validation`` checks the provider
  (trust and SANs), ``certificate`` is the client certificate for mTLS.  ACM trust cannot be
  checked here: the cluster is left out (fail closed) and reported.
- With the mesh's mTLS switch (:class:`~meshplane.translate.options.MeshSecurity`), the same
  shapes are made up on the fly: the proxy's identity secret as certificate, the mesh trust
  bundle as trust, and on the client side the provider's SPIFFE ID as the only accepted SAN.

SANs that look like URIs (``spiffe://...``) are matched as URI SANs, the others as DNS SANs.
Secret names are SPIFFE style (:mod:`meshplane.authority.spiffe`); the control loop adds the
``Secret`` resources they name.

Used by :mod:`meshplane.translate.security` (and the virtual gateway translation).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from meshplane.authority.spiffe import spiffe_id, trust_bundle_name
from meshplane.model.kinds import Kind
from meshplane.model.tls import (
    ClientPolicyTls,
    ListenerTls,
    ListenerTlsValidationContextTrust,
    SubjectAlternativeNames,
    TlsValidationContextTrust,
)
from meshplane.translate.context import Context, SharedContext
from meshplane.translate.protos import ads, pack

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
_SAN = common_pb2.SubjectAltNameMatcher


# --- names ---------------------------------------------------------------------------------


def identity_secret(ctx: Context) -> str:
    """The SDS name of this proxy's own certificate: its SPIFFE ID."""
    target = ctx.target
    return spiffe_id(ctx.security.trust_domain, target.mesh, target.kind.value, target.name)


def node_identity(ctx: SharedContext, node: str) -> str:
    """The SPIFFE ID of a virtual node of this mesh (what its certificate says)."""
    return spiffe_id(ctx.security.trust_domain, ctx.mesh, Kind.VIRTUAL_NODE.value, node)


def trust_secret(ctx: SharedContext) -> str:
    """The SDS name of the mesh trust bundle: ``spiffe://<trust domain>``."""
    return trust_bundle_name(ctx.security.trust_domain)


# --- the mesh's mTLS switch as App Mesh shapes -------------------------------------------


def mesh_listener_tls(ctx: Context) -> ListenerTls | None:
    """The TLS of a listener that has none of its own: the mesh's mTLS, if it is on."""
    mode = ctx.security.mtls
    if mode is None:
        return None
    return ListenerTls.model_validate(
        {
            "mode": mode,
            "certificate": {"sds": {"secretName": identity_secret(ctx)}},
            "validation": {"trust": {"sds": {"secretName": trust_secret(ctx)}}},
        }
    )


def mesh_client_tls(ctx: Context, provider: str) -> ClientPolicyTls:
    """The client policy of mesh mTLS towards the virtual node ``provider``."""
    return ClientPolicyTls.model_validate(
        {
            "certificate": {"sds": {"secretName": identity_secret(ctx)}},
            "validation": {
                "trust": {"sds": {"secretName": trust_secret(ctx)}},
                "subjectAlternativeNames": {"match": {"exact": [node_identity(ctx, provider)]}},
            },
        }
    )


# --- contexts ------------------------------------------------------------------------------


def sds(name: str) -> secret_pb2.SdsSecretConfig:
    """A secret fetched over the proxy's ADS stream."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads())


def transport_socket(
    context: tls_pb2.DownstreamTlsContext | tls_pb2.UpstreamTlsContext,
) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def downstream_context(
    ctx: SharedContext, tls: ListenerTls, where: str, alpn: Sequence[str] = ()
) -> tls_pb2.DownstreamTlsContext | None:
    """The server side of a listener's TLS; None (and a problem) when it cannot be served."""
    context = tls_pb2.DownstreamTlsContext()
    common = context.common_tls_context
    common.alpn_protocols.extend(alpn)
    certificate = tls.certificate
    if certificate.file is not None:
        common.tls_certificates.append(
            _file_certificate(certificate.file.certificateChain, certificate.file.privateKey)
        )
    elif certificate.sds is not None:
        common.tls_certificate_sds_secret_configs.append(sds(certificate.sds.secretName))
    else:
        ctx.problem(
            f"{where}: ACM certificates are not supported by meshplane"
            " (use a file or sds certificate)"
        )
        return None
    validation = tls.validation
    if validation is not None:
        if not _validation(
            ctx, common, validation.trust, validation.subjectAlternativeNames, where
        ):
            return None
        context.require_client_certificate.value = True
    return context


def upstream_context(
    ctx: SharedContext, policy: ClientPolicyTls, where: str, alpn: Sequence[str] = ()
) -> tls_pb2.UpstreamTlsContext | None:
    """The client side of a TLS policy; None (and a problem) when it cannot be applied."""
    common = tls_pb2.CommonTlsContext(alpn_protocols=list(alpn))
    certificate = policy.certificate
    if certificate is not None and certificate.file is not None:
        common.tls_certificates.append(
            _file_certificate(certificate.file.certificateChain, certificate.file.privateKey)
        )
    elif certificate is not None and certificate.sds is not None:
        common.tls_certificate_sds_secret_configs.append(sds(certificate.sds.secretName))
    validation = policy.validation
    if not _validation(ctx, common, validation.trust, validation.subjectAlternativeNames, where):
        return None
    return tls_pb2.UpstreamTlsContext(common_tls_context=common)


def _file_certificate(chain: str, key: str) -> common_pb2.TlsCertificate:
    return common_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(filename=chain),
        private_key=base_pb2.DataSource(filename=key),
    )


def _validation(
    ctx: SharedContext,
    common: tls_pb2.CommonTlsContext,
    trust: TlsValidationContextTrust | ListenerTlsValidationContextTrust,
    names: SubjectAlternativeNames | None,
    where: str,
) -> bool:
    matchers = san_matchers(names)
    if trust.file is not None:
        common.validation_context.CopyFrom(
            common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(filename=trust.file.certificateChain),
                match_typed_subject_alt_names=matchers,
            )
        )
    elif trust.sds is not None:
        if matchers:
            common.combined_validation_context.CopyFrom(
                tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                    default_validation_context=common_pb2.CertificateValidationContext(
                        match_typed_subject_alt_names=matchers
                    ),
                    validation_context_sds_secret_config=sds(trust.sds.secretName),
                )
            )
        else:
            common.validation_context_sds_secret_config.CopyFrom(sds(trust.sds.secretName))
    else:
        ctx.problem(
            f"{where}: ACM certificate authorities are not supported by meshplane"
            " (use a file or sds trust)"
        )
        return False
    return True


def san_matchers(names: SubjectAlternativeNames | None) -> list[common_pb2.SubjectAltNameMatcher]:
    """Exact SAN matchers: URI for values with a scheme (SPIFFE IDs), DNS for the others."""
    if names is None:
        return []
    return [
        _SAN(
            san_type=_SAN.URI if "://" in value else _SAN.DNS,
            matcher=string_pb2.StringMatcher(exact=value),
        )
        for value in names.match.exact
    ]


# --- listeners ---------------------------------------------------------------------------


def secure_listener(
    ctx: SharedContext,
    listener: listener_pb2.Listener,
    tls: ListenerTls,
    where: str,
    alpn: Sequence[str] = (),
) -> listener_pb2.Listener | None:
    """``listener`` (one plain filter chain) serving ``tls``; None when it must be left out."""
    if tls.mode == "DISABLED":
        return listener
    context = downstream_context(ctx, tls, where, alpn)
    if context is None:
        if tls.mode == "STRICT":
            ctx.problem(f"{where}: left out, its STRICT TLS cannot be served")
            return None
        ctx.problem(f"{where}: PERMISSIVE TLS cannot be served, plain text only")
        return listener
    secured = listener_pb2.Listener()
    secured.CopyFrom(listener)
    (chain,) = listener.filter_chains
    encrypted = listener_components_pb2.FilterChain()
    encrypted.CopyFrom(chain)
    encrypted.transport_socket.CopyFrom(transport_socket(context))
    del secured.filter_chains[:]
    if tls.mode == "STRICT":
        secured.filter_chains.append(encrypted)
        return secured
    plain = listener_components_pb2.FilterChain()
    plain.CopyFrom(chain)
    encrypted.name = "tls"
    encrypted.filter_chain_match.transport_protocol = "tls"
    plain.name = "plaintext"
    plain.filter_chain_match.transport_protocol = "raw_buffer"
    secured.filter_chains.extend([encrypted, plain])
    secured.listener_filters.append(
        listener_components_pb2.ListenerFilter(
            name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
        )
    )
    return secured
