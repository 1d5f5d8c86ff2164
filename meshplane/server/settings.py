"""Settings of ``meshplane serve``: one typed tree, each section owned by one component.

Built once at start-up from command-line flags and ``MESHPLANE_*`` environment variables
(flags win); nothing reads the environment anywhere else.  Used by ``meshplane.server.run``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from meshplane.identity import IdentitySettings
from meshplane.identity.server_tls import server_names

DEFAULT_API_PORT = 8765
DEFAULT_XDS_PORT = 18000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "000000000000"


def default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "meshplane"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a port reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class StoreSettings:
    data_dir: Path
    database_url: str | None = None


@dataclass(frozen=True, slots=True)
class ApiSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_API_PORT


@dataclass(frozen=True, slots=True)
class XdsSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_XDS_PORT
    require_proxy_auth: bool = False
    """Proxies must present a proxy token scoped to the identity they claim (always on when
    ``host`` is not a loopback address)."""


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
    (:mod:`meshplane.identity.server_tls`) for the names in ``issue``."""

    cert_file: Path
    key_file: Path
    issue: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    store: StoreSettings
    api: ApiSettings = field(default_factory=ApiSettings)
    xds: XdsSettings = field(default_factory=XdsSettings)
    auth: AuthSettings | None = None  # None: open, for in-process tests
    tls: TlsSettings | None = None
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    log_level: str = "info"
    identity: IdentitySettings = field(default_factory=IdentitySettings)

    @classmethod
    def load(
        cls,
        *,
        data_dir: Path | None = None,
        database_url: str | None = None,
        host: str | None = None,
        api_port: int | None = None,
        xds_port: int | None = None,
        region: str | None = None,
        account_id: str | None = None,
        log_level: str | None = None,
        require_proxy_auth: bool | None = None,
        trust_domain: str | None = None,
        cert_lifetime: str | None = None,
        cert_rotate_after: float | None = None,
        ca_cert: Path | None = None,
        ca_key: Path | None = None,
        ca_propagation: str | None = None,
        ca_overlap: str | None = None,
        require_auth: bool | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_issue: bool | None = None,
        tls_names: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from flags and the environment; ValueError names a bad combination."""
        environ = os.environ if env is None else env
        resolved_host = host or environ.get("MESHPLANE_HOST") or DEFAULT_HOST
        resolved_dir = data_dir or Path(
            environ.get("MESHPLANE_DATA_DIR") or default_data_dir(environ)
        )
        required = require_auth or _flag(environ.get("MESHPLANE_REQUIRE_AUTH"))
        cert = tls_cert or _path(environ.get("MESHPLANE_TLS_CERT"))
        key = tls_key or _path(environ.get("MESHPLANE_TLS_KEY"))
        if (cert is None) != (key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both or neither")
        issue = tls_issue or _truthy(environ.get("MESHPLANE_TLS_ISSUE"))
        names = tls_names or tuple(
            n.strip() for n in (environ.get("MESHPLANE_TLS_NAMES") or "").split(",") if n.strip()
        )
        if issue and cert is not None:
            raise ValueError(
                "--tls-issue makes its own certificate: give it or --tls-cert/--tls-key, not both"
            )
        if names and not issue:
            raise ValueError(
                "--tls-name names hosts for --tls-issue's certificate: add --tls-issue"
            )
        tls = TlsSettings(cert, key) if cert is not None and key is not None else None
        if issue:
            folder = resolved_dir / "tls"
            tls = TlsSettings(
                folder / "server.pem",
                folder / "server-key.pem",
                issue=server_names(resolved_host, names),
            )
        return cls(
            store=StoreSettings(
                data_dir=resolved_dir,
                database_url=database_url or environ.get("MESHPLANE_DATABASE_URL") or None,
            ),
            auth=AuthSettings(
                required=required or not is_loopback(resolved_host),
                key_file=resolved_dir / "token.key",
            ),
            tls=tls,
            api=ApiSettings(
                host=resolved_host,
                port=api_port or int(environ.get("MESHPLANE_API_PORT") or DEFAULT_API_PORT),
            ),
            xds=XdsSettings(
                host=resolved_host,
                port=xds_port or int(environ.get("MESHPLANE_XDS_PORT") or DEFAULT_XDS_PORT),
                require_proxy_auth=bool(
                    require_proxy_auth
                    or _truthy(environ.get("MESHPLANE_REQUIRE_PROXY_AUTH"))
                    or not is_loopback(resolved_host)
                ),
            ),
            region=region or environ.get("MESHPLANE_REGION") or DEFAULT_REGION,
            account_id=account_id or environ.get("MESHPLANE_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID,
            log_level=log_level or environ.get("MESHPLANE_LOG_LEVEL") or "info",
            identity=_identity_settings(
                environ,
                trust_domain=trust_domain,
                cert_lifetime=cert_lifetime,
                cert_rotate_after=cert_rotate_after,
                ca_cert=ca_cert,
                ca_key=ca_key,
                ca_propagation=ca_propagation,
                ca_overlap=ca_overlap,
            ),
        )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``24h`` or ``7d``; ValueError otherwise."""
    value = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    scale = units.get(value[-1:], 0)
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (90s, 15m, 24h, 7d)") from None
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return timedelta(seconds=seconds)


def _identity_settings(
    environ: Mapping[str, str],
    *,
    trust_domain: str | None,
    cert_lifetime: str | None,
    cert_rotate_after: float | None,
    ca_cert: Path | None,
    ca_key: Path | None,
    ca_propagation: str | None,
    ca_overlap: str | None,
) -> IdentitySettings:
    default = IdentitySettings()

    def duration(flag: str | None, variable: str) -> timedelta | None:
        text = flag or environ.get(variable)
        return parse_duration(text) if text else None

    def path(flag: Path | None, variable: str) -> Path | None:
        text = environ.get(variable)
        return flag or (Path(text) if text else None)

    rotate = cert_rotate_after or float(environ.get("MESHPLANE_CERT_ROTATE_AFTER") or 0)
    return IdentitySettings(
        trust_domain=trust_domain or environ.get("MESHPLANE_TRUST_DOMAIN") or default.trust_domain,
        cert_lifetime=duration(cert_lifetime, "MESHPLANE_CERT_LIFETIME") or default.cert_lifetime,
        rotate_after=rotate or default.rotate_after,
        ca_certificate_file=path(ca_cert, "MESHPLANE_CA_CERT"),
        ca_key_file=path(ca_key, "MESHPLANE_CA_KEY"),
        ca_propagation=duration(ca_propagation, "MESHPLANE_CA_PROPAGATION")
        or default.ca_propagation,
        ca_overlap=duration(ca_overlap, "MESHPLANE_CA_OVERLAP"),
    )
