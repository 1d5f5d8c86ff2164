"""The sections of the settings tree that belong to the server's own components: the store,
the API and xDS ports, the DNS server, API authentication and the ports' TLS.

Frozen dataclasses, built by :meth:`meshplane.server.settings.Settings.load` (or directly, in
tests) and read by the component each configures: :mod:`meshplane.server.run` (store, TLS,
auth), :mod:`meshplane.server.serving` (xDS), the API and DNS servers it starts.  The other
sections are the components' own classes (``CaSettings``, ``TelemetrySettings``,
``TracingDefaults``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from meshplane.api.limits import HttpLimits
from meshplane.manifests import ManifestLimits
from meshplane.server.settings_dns import DEFAULT_DNS_PORT, DEFAULT_VIP_RANGE
from meshplane.server.settings_server import DEFAULT_API_PORT, DEFAULT_HOST, DEFAULT_XDS_PORT
from meshplane.xds.limits import XdsLimits


@dataclass(frozen=True, slots=True)
class StoreSettings:
    data_dir: Path
    database_url: str | None = None
    database_wait: float = 60.0
    """How long start-up retries (with backoff) a database it cannot reach, in seconds."""
    kek_file: Path | None = None
    kek: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_API_PORT
    limits: HttpLimits = field(default_factory=HttpLimits)
    manifests: ManifestLimits = field(default_factory=ManifestLimits)


@dataclass(frozen=True, slots=True)
class XdsSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_XDS_PORT
    require_proxy_auth: bool = False
    """Proxies must present a proxy token scoped to the identity they claim (always on when
    ``host`` is not a loopback address)."""
    limits: XdsLimits = field(default_factory=XdsLimits)
    workers: int = 1
    """xDS serving processes (``--xds-workers``): 1 serves xDS in the main process; N > 1
    runs N worker processes on the one port (:mod:`meshplane.server.workers`)."""


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """The mesh DNS server (off when ``port`` is 0) and the virtual IP range.  ``upstreams``:
    where names that are not the mesh's are forwarded (``host[:port]``); None means the
    nameservers of the host's /etc/resolv.conf, an empty tuple refuses them."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_DNS_PORT
    upstreams: tuple[str, ...] | None = None
    vip_range: str = DEFAULT_VIP_RANGE
    health_check_interval: float = 30.0
    """Seconds between two checks of a Cloud Map instance with ``HealthCheckConfig``."""


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """API authentication: required unless the server binds loopback only.  Token secrets are
    sealed with the key in ``key_file`` (created, mode 0600, on first use)."""

    required: bool
    key_file: Path


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The certificate and key (PEM) of the API and xDS ports: supplied by the operator, or
    (``issue`` set) issued at start-up by meshplane's control-plane CA in ``<data dir>/tls``
    (:mod:`meshplane.authority.server_tls`) for the names in ``issue``."""

    cert_file: Path
    key_file: Path
    issue: tuple[str, ...] | None = None
