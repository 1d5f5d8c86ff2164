"""TLS shapes: listener certificates and validation, and client (backend) TLS policies.

The virtual node and virtual gateway variants of these shapes are identical in the App Mesh
model, so the ``VirtualGateway*`` names are aliases of the node classes.  Used by
``virtual_node`` and ``virtual_gateway``, and by the translation of TLS transport sockets.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

from meshplane.model.common import (
    Arn,
    BooleanDefaultTrue,
    FilePath,
    ListenerTlsMode,
    PortNumber,
    SdsSecretName,
    SpecModel,
    UnicodeText,
    UnionModel,
)

SubjectAlternativeName = Annotated[str, Strict(), Field(min_length=1, max_length=254), UnicodeText]


class ListenerTlsFileCertificate(SpecModel):
    certificateChain: FilePath
    privateKey: FilePath


class ListenerTlsSdsCertificate(SpecModel):
    secretName: SdsSecretName


class ListenerTlsAcmCertificate(SpecModel):
    certificateArn: Arn


class ListenerTlsCertificate(UnionModel):
    acm: ListenerTlsAcmCertificate | None = None
    file: ListenerTlsFileCertificate | None = None
    sds: ListenerTlsSdsCertificate | None = None


class ClientTlsCertificate(UnionModel):
    file: ListenerTlsFileCertificate | None = None
    sds: ListenerTlsSdsCertificate | None = None


class SubjectAlternativeNameMatchers(SpecModel):
    exact: tuple[SubjectAlternativeName, ...]


class SubjectAlternativeNames(SpecModel):
    match: SubjectAlternativeNameMatchers


class TlsValidationContextAcmTrust(SpecModel):
    certificateAuthorityArns: Annotated[tuple[Arn, ...], Field(min_length=1, max_length=3)]


class TlsValidationContextFileTrust(SpecModel):
    certificateChain: FilePath


class TlsValidationContextSdsTrust(SpecModel):
    secretName: SdsSecretName


class TlsValidationContextTrust(UnionModel):
    acm: TlsValidationContextAcmTrust | None = None
    file: TlsValidationContextFileTrust | None = None
    sds: TlsValidationContextSdsTrust | None = None


class TlsValidationContext(SpecModel):
    subjectAlternativeNames: SubjectAlternativeNames | None = None
    trust: TlsValidationContextTrust


class ListenerTlsValidationContextTrust(UnionModel):
    """Listener (server-side) trust: no ACM option."""

    file: TlsValidationContextFileTrust | None = None
    sds: TlsValidationContextSdsTrust | None = None


class ListenerTlsValidationContext(SpecModel):
    subjectAlternativeNames: SubjectAlternativeNames | None = None
    trust: ListenerTlsValidationContextTrust


class ListenerTls(SpecModel):
    certificate: ListenerTlsCertificate
    mode: ListenerTlsMode
    validation: ListenerTlsValidationContext | None = None


class ClientPolicyTls(SpecModel):
    """``enforce`` defaults to true, as App Mesh shows it on Describe."""

    certificate: ClientTlsCertificate | None = None
    enforce: BooleanDefaultTrue = True
    ports: tuple[PortNumber, ...] | None = None
    validation: TlsValidationContext


class ClientPolicy(SpecModel):
    tls: ClientPolicyTls | None = None


class BackendDefaults(SpecModel):
    clientPolicy: ClientPolicy | None = None


VirtualGatewayListenerTlsFileCertificate = ListenerTlsFileCertificate
VirtualGatewayListenerTlsSdsCertificate = ListenerTlsSdsCertificate
VirtualGatewayListenerTlsAcmCertificate = ListenerTlsAcmCertificate
VirtualGatewayListenerTlsCertificate = ListenerTlsCertificate
VirtualGatewayClientTlsCertificate = ClientTlsCertificate
VirtualGatewayTlsValidationContextAcmTrust = TlsValidationContextAcmTrust
VirtualGatewayTlsValidationContextFileTrust = TlsValidationContextFileTrust
VirtualGatewayTlsValidationContextSdsTrust = TlsValidationContextSdsTrust
VirtualGatewayTlsValidationContextTrust = TlsValidationContextTrust
VirtualGatewayTlsValidationContext = TlsValidationContext
VirtualGatewayListenerTlsValidationContextTrust = ListenerTlsValidationContextTrust
VirtualGatewayListenerTlsValidationContext = ListenerTlsValidationContext
VirtualGatewayListenerTls = ListenerTls
VirtualGatewayClientPolicyTls = ClientPolicyTls
VirtualGatewayClientPolicy = ClientPolicy
VirtualGatewayBackendDefaults = BackendDefaults
