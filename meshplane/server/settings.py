"""Settings of ``meshplane serve``: each declared once, built into one typed tree.

:data:`SETTINGS` declares every setting once (:class:`~meshplane.server.setting.Setting`:
name, flag, environment variable, kind, default, help, section).  From it follow the click
options of ``meshplane serve`` (``meshplane.cli.settings_options``), the ``MESHPLANE_*``
environment lookup (:meth:`Settings.load`; flags win; nothing reads the environment anywhere
else) and the README's configuration table (``tests/test_settings.py`` checks it).
:meth:`Settings.load` then builds the typed tree, one section a component.

Adding a setting is a one-place change: append a ``Setting(...)`` to :data:`SETTINGS` (its
``name`` is the ``Settings.load`` keyword and the click parameter, ``flag`` ``--like-this``,
``env`` ``MESHPLANE_LIKE_THIS``, ``section`` the README group) and read ``values["name"]``
where :meth:`Settings.load` builds its section (add the field to that section's dataclass).
``meshplane serve --help`` shows it and the environment sets it from then on; regenerate the
README table with ``python -m meshplane.server.settings``.

Used by ``meshplane.server.run`` and the CLI.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from meshplane.api.limits import HttpLimits
from meshplane.authority import CaSettings
from meshplane.authority.server_tls import server_names
from meshplane.manifests import ManifestLimits
from meshplane.model.tracing import DEFAULT_SAMPLING, TracingDefaults, parse_collector
from meshplane.server.setting import Kind, Setting, markdown_table, parse_duration, resolve
from meshplane.telemetry.window import TelemetrySettings
from meshplane.xds.limits import XdsLimits

DEFAULT_API_PORT = 8765
DEFAULT_XDS_PORT = 18000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "000000000000"
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_DNS_PORT = 15053
DEFAULT_VIP_RANGE = "240.240.0.0/16"

__all__ = ["SETTINGS", "Settings", "is_loopback", "parse_duration"]


def _account_id(value: str) -> str | None:
    if len(value) != 12 or not value.isdigit():
        return f"{value!r} is not a 12-digit account ID"
    return None


def _dns_port(value: Any) -> str | None:
    text = str(value).strip()
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        return f"{value!r} is not a port (0-65535; 0 turns DNS off)"
    return None


def _vip_range(value: str) -> str | None:
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as error:
        return f"{value!r} is not a network in CIDR form ({error})"
    if network.num_addresses < 4:
        return f"{value!r} is too small (at least a /30)"
    return None


def _collector(value: str) -> str | None:
    try:
        parse_collector(value, "the collector")
    except ValueError as error:
        return str(error)
    return None


def _percent(value: str) -> str | None:
    try:
        number = float(value)
    except ValueError:
        return f"{value!r} is not a percentage from 0 to 100"
    return None if 0 <= number <= 100 else f"{value!r} is not a percentage from 0 to 100"


def _upstreams(value: tuple[str, ...]) -> str | None:
    if "off" in value and len(value) > 1:
        return "'off' turns forwarding off: give it alone"
    return None


_IDENTITY = CaSettings()
_HTTP = HttpLimits()
_XDS = XdsLimits()
_MANIFESTS = ManifestLimits()
_TELEMETRY = TelemetrySettings()

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir",
        "--data-dir",
        "MESHPLANE_DATA_DIR",
        Kind.PATH,
        "Where the embedded SQLite database, the CAs and the keys live "
        "(`scripts/run`: `.meshplane/data`).",
        "store",
        default_text="`~/.local/share/meshplane`",
    ),
    Setting(
        "database_url",
        "--database-url",
        "MESHPLANE_DATABASE_URL",
        Kind.TEXT,
        "A SQLAlchemy database URL instead of the embedded SQLite store: "
        "`postgresql://user:password@host/db` for several replicas sharing one database.",
        "store",
        metavar="URL",
    ),
    Setting(
        "database_wait",
        "--database-wait",
        "MESHPLANE_DATABASE_WAIT",
        Kind.DURATION,
        "How long start-up retries (with backoff) a database it cannot reach before it gives up.",
        "store",
        default=parse_duration("60s"),
        default_text="`60s`",
    ),
    Setting(
        "kek_file",
        "--kek-file",
        "MESHPLANE_KEK_FILE",
        Kind.FILE,
        "The key-encryption key (64 hex digits; `openssl rand -hex 32`, mode 0600) that seals "
        "the mesh CAs and token keys in the database; every replica gets the same one. "
        "Needed with a PostgreSQL `--database-url`.",
        "store",
    ),
    Setting(
        "kek",
        "--kek",
        "MESHPLANE_KEK",
        Kind.TEXT,
        "The key-encryption key itself instead of --kek-file (set the variable: a flag "
        "shows in the process list).",
        "store",
        metavar="KEY",
    ),
    Setting(
        "host",
        "--host",
        "MESHPLANE_HOST",
        Kind.TEXT,
        "Address the API and xDS ports bind.",
        "server",
        default=DEFAULT_HOST,
    ),
    Setting(
        "api_port",
        "--api-port",
        "MESHPLANE_API_PORT",
        Kind.PORT,
        "REST API port.",
        "server",
        default=DEFAULT_API_PORT,
    ),
    Setting(
        "xds_port",
        "--xds-port",
        "MESHPLANE_XDS_PORT",
        Kind.PORT,
        "xDS (gRPC ADS) port.",
        "server",
        default=DEFAULT_XDS_PORT,
    ),
    Setting(
        "xds_workers",
        "--xds-workers",
        "MESHPLANE_XDS_WORKERS",
        Kind.COUNT,
        "xDS serving processes sharing the xDS port (SO_REUSEPORT), each following the store "
        "and translating for the proxies connected to it; the API stays in the main process. "
        "1: one process serves both.",
        "server",
        default=1,
        metavar="N",
        check=lambda n: None if n <= 64 else f"{n} is more than 64",
    ),
    Setting(
        "region",
        "--region",
        "MESHPLANE_REGION",
        Kind.TEXT,
        "Region in ARNs.",
        "server",
        default=DEFAULT_REGION,
    ),
    Setting(
        "account_id",
        "--account-id",
        "MESHPLANE_ACCOUNT_ID",
        Kind.TEXT,
        "Account ID in ARNs, `meshOwner` and `resourceOwner`.",
        "server",
        default=DEFAULT_ACCOUNT_ID,
        check=_account_id,
    ),
    Setting(
        "log_level",
        "--log-level",
        "MESHPLANE_LOG_LEVEL",
        Kind.CHOICE,
        "Log level.",
        "server",
        default="info",
        choices=LOG_LEVELS,
    ),
    Setting(
        "strict_manifests",
        "--strict-manifests",
        "MESHPLANE_STRICT_MANIFESTS",
        Kind.BOOL,
        "Refuse applied manifests with fields the App Mesh CRDs do not name, for every caller "
        "(`apply --strict` refuses them per call).",
        "server",
        default=False,
        default_text="off: such fields are ignored with a warning, as App Mesh did",
    ),
    Setting(
        "require_auth",
        "--require-auth",
        "MESHPLANE_REQUIRE_AUTH",
        Kind.BOOL,
        "Require API credentials even on loopback (always required when --host is not a "
        "loopback address).",
        "auth",
        default=False,
        default_text="off on loopback, always on otherwise",
    ),
    Setting(
        "require_proxy_auth",
        "--require-proxy-auth",
        "MESHPLANE_REQUIRE_PROXY_AUTH",
        Kind.BOOL,
        "Proxies must present a proxy token ('meshplane proxy-token create') even on "
        "loopback (always required when --host is not a loopback address).",
        "auth",
        default=False,
        default_text="off on loopback, always on otherwise",
    ),
    Setting(
        "tls_cert",
        "--tls-cert",
        "MESHPLANE_TLS_CERT",
        Kind.PATH,
        "PEM certificate (chain) for the API and xDS ports (default: plain HTTP and gRPC).",
        "tls",
    ),
    Setting(
        "tls_key",
        "--tls-key",
        "MESHPLANE_TLS_KEY",
        Kind.PATH,
        "PEM private key of --tls-cert.",
        "tls",
    ),
    Setting(
        "tls_issue",
        "--tls-issue",
        "MESHPLANE_TLS_ISSUE",
        Kind.BOOL,
        "TLS on the API and xDS ports with a certificate issued by meshplane's own "
        "control-plane CA (kept in <data dir>/tls; clients trust <data dir>/tls/ca.pem).",
        "tls",
        default=False,
    ),
    Setting(
        "tls_names",
        "--tls-name",
        "MESHPLANE_TLS_NAMES",
        Kind.NAMES,
        "Another DNS name or IP address for --tls-issue's certificate (repeatable; in the "
        "variable comma-separated; localhost, 127.0.0.1 and the --host address are always in it).",
        "tls",
        default=(),
        metavar="NAME",
    ),
    Setting(
        "trust_domain",
        "--trust-domain",
        "MESHPLANE_TRUST_DOMAIN",
        Kind.TEXT,
        "SPIFFE trust domain of proxy identities.",
        "ca",
        default=_IDENTITY.trust_domain,
    ),
    Setting(
        "cert_lifetime",
        "--cert-lifetime",
        "MESHPLANE_CERT_LIFETIME",
        Kind.DURATION,
        "Lifetime of proxy certificates, e.g. 24h, 90m.",
        "ca",
        default=_IDENTITY.cert_lifetime,
        metavar="DURATION",
    ),
    Setting(
        "cert_rotate_after",
        "--cert-rotate-after",
        "MESHPLANE_CERT_ROTATE_AFTER",
        Kind.FRACTION,
        "Fraction of its lifetime after which a proxy certificate is replaced.",
        "ca",
        default=_IDENTITY.rotate_after,
    ),
    Setting(
        "ca_cert",
        "--ca-cert",
        "MESHPLANE_CA_CERT",
        Kind.FILE,
        "An operator CA certificate (PEM) that signs proxy certificates of every mesh, "
        "instead of one generated CA per mesh.",
        "ca",
    ),
    Setting(
        "ca_key",
        "--ca-key",
        "MESHPLANE_CA_KEY",
        Kind.FILE,
        "The EC private key (PEM) of --ca-cert.",
        "ca",
    ),
    Setting(
        "ca_propagation",
        "--ca-propagation",
        "MESHPLANE_CA_PROPAGATION",
        Kind.DURATION,
        "After 'meshplane ca rotate', how long the new root is only trusted before it signs.",
        "ca",
        default=_IDENTITY.ca_propagation,
        metavar="DURATION",
    ),
    Setting(
        "ca_overlap",
        "--ca-overlap",
        "MESHPLANE_CA_OVERLAP",
        Kind.DURATION,
        "How long the old root stays trusted once the new one signs.",
        "ca",
        default_text="the `--cert-lifetime`",
        metavar="DURATION",
    ),
    Setting(
        "ca_lifetime",
        "--ca-lifetime",
        "MESHPLANE_CA_LIFETIME",
        Kind.DURATION,
        "Lifetime of a generated mesh CA root.",
        "ca",
        default=_IDENTITY.ca_lifetime,
        metavar="DURATION",
    ),
    Setting(
        "ca_rotate_before",
        "--ca-rotate-before",
        "MESHPLANE_CA_ROTATE_BEFORE",
        Kind.DURATION,
        "A generated mesh CA root this close to its expiry is rotated on its own (by the "
        "replica that holds the fleet's duty lease).",
        "ca",
        default=_IDENTITY.ca_rotate_before,
        metavar="DURATION",
    ),
    Setting(
        "max_request_body",
        "--max-request-body",
        "MESHPLANE_MAX_REQUEST_BODY",
        Kind.SIZE,
        "Largest API request body (an apply's manifests included); larger ones get 400.",
        "limits",
        default=_HTTP.max_body,
        metavar="SIZE",
    ),
    Setting(
        "max_json_depth",
        "--max-json-depth",
        "MESHPLANE_MAX_JSON_DEPTH",
        Kind.COUNT,
        "Deepest nesting of objects and arrays in a JSON request body.",
        "limits",
        default=_HTTP.max_json_depth,
        metavar="N",
    ),
    Setting(
        "max_connections",
        "--max-connections",
        "MESHPLANE_MAX_CONNECTIONS",
        Kind.COUNT,
        "Open API connections; one more is answered 503 and closed.",
        "limits",
        default=_HTTP.max_connections,
        metavar="N",
    ),
    Setting(
        "header_timeout",
        "--header-timeout",
        "MESHPLANE_HEADER_TIMEOUT",
        Kind.DURATION,
        "Time an API connection has to send a request's head (then 408 and closed).",
        "limits",
        default=timedelta(seconds=_HTTP.header_timeout),
        metavar="DURATION",
    ),
    Setting(
        "body_timeout",
        "--body-timeout",
        "MESHPLANE_BODY_TIMEOUT",
        Kind.DURATION,
        "Time an API request has to send its whole body (then 408 and closed).",
        "limits",
        default=timedelta(seconds=_HTTP.body_timeout),
        metavar="DURATION",
    ),
    Setting(
        "keep_alive_timeout",
        "--keep-alive-timeout",
        "MESHPLANE_KEEP_ALIVE_TIMEOUT",
        Kind.DURATION,
        "Time an idle keep-alive API connection stays open.",
        "limits",
        default=timedelta(seconds=_HTTP.keep_alive_timeout),
        metavar="DURATION",
    ),
    Setting(
        "max_manifest_documents",
        "--max-manifest-documents",
        "MESHPLANE_MAX_MANIFEST_DOCUMENTS",
        Kind.COUNT,
        "Documents in one apply (empty ones between `---` count).",
        "limits",
        default=_MANIFESTS.max_documents,
        metavar="N",
    ),
    Setting(
        "max_manifest_object",
        "--max-manifest-object",
        "MESHPLANE_MAX_MANIFEST_OBJECT",
        Kind.SIZE,
        "Largest manifest object as JSON with YAML aliases expanded (what is stored).",
        "limits",
        default=_MANIFESTS.max_object_size,
        metavar="SIZE",
    ),
    Setting(
        "max_yaml_aliases",
        "--max-yaml-aliases",
        "MESHPLANE_MAX_YAML_ALIASES",
        Kind.COUNT,
        "YAML alias uses (`*name`) in one manifest stream.",
        "limits",
        default=_MANIFESTS.max_aliases,
        metavar="N",
    ),
    Setting(
        "xds_max_message",
        "--xds-max-message",
        "MESHPLANE_XDS_MAX_MESSAGE",
        Kind.SIZE,
        "Largest xDS request message; a larger one ends its stream (RESOURCE_EXHAUSTED).",
        "limits",
        default=_XDS.max_message,
        metavar="SIZE",
    ),
    Setting(
        "xds_max_node_metadata",
        "--xds-max-node-metadata",
        "MESHPLANE_XDS_MAX_NODE_METADATA",
        Kind.SIZE,
        "Largest `node.metadata` a proxy may send (INVALID_ARGUMENT past it).",
        "limits",
        default=_XDS.max_node_metadata,
        metavar="SIZE",
    ),
    Setting(
        "xds_streams_per_connection",
        "--xds-streams-per-connection",
        "MESHPLANE_XDS_STREAMS_PER_CONNECTION",
        Kind.COUNT,
        "Concurrent xDS streams on one HTTP/2 connection (Envoy opens one).",
        "limits",
        default=_XDS.streams_per_connection,
        metavar="N",
    ),
    Setting(
        "xds_streams_per_peer",
        "--xds-streams-per-peer",
        "MESHPLANE_XDS_STREAMS_PER_PEER",
        Kind.COUNT,
        "Open xDS streams from one peer address (RESOURCE_EXHAUSTED past it).",
        "limits",
        default=_XDS.streams_per_peer,
        metavar="N",
    ),
    Setting(
        "xds_first_request_timeout",
        "--xds-first-request-timeout",
        "MESHPLANE_XDS_FIRST_REQUEST_TIMEOUT",
        Kind.DURATION,
        "Time a new xDS stream has to send its first request.",
        "limits",
        default=timedelta(seconds=_XDS.first_request_timeout),
        metavar="DURATION",
    ),
    Setting(
        "xds_keepalive",
        "--xds-keepalive",
        "MESHPLANE_XDS_KEEPALIVE",
        Kind.DURATION,
        "Interval of keepalive pings on an idle xDS connection (a peer that does not answer "
        "within 20s is dropped).",
        "limits",
        default=timedelta(seconds=_XDS.keepalive_time),
        metavar="DURATION",
    ),
    Setting(
        "xds_idle_timeout",
        "--xds-idle-timeout",
        "MESHPLANE_XDS_IDLE_TIMEOUT",
        Kind.DURATION,
        "Time an xDS connection without any stream stays open.",
        "limits",
        default=timedelta(seconds=_XDS.max_connection_idle),
        metavar="DURATION",
    ),
    Setting(
        "dns_port",
        "--dns-port",
        "MESHPLANE_DNS_PORT",
        Kind.TEXT,
        "Port of the mesh DNS server (UDP and TCP); 0 turns it off.",
        "dns",
        default=str(DEFAULT_DNS_PORT),
        metavar="PORT",
        check=_dns_port,
    ),
    Setting(
        "dns_host",
        "--dns-host",
        "MESHPLANE_DNS_HOST",
        Kind.TEXT,
        "Address the mesh DNS server binds.",
        "dns",
        default_text="the `--host`",
    ),
    Setting(
        "dns_upstreams",
        "--dns-upstream",
        "MESHPLANE_DNS_UPSTREAM",
        Kind.NAMES,
        "Resolver (`HOST[:PORT]`) for the names that are not the mesh's, repeatable; `off` "
        "answers them REFUSED.",
        "dns",
        default=(),
        default_text="the nameservers of `/etc/resolv.conf`",
        metavar="HOST[:PORT]",
        check=_upstreams,
    ),
    Setting(
        "vip_range",
        "--vip-range",
        "MESHPLANE_VIP_RANGE",
        Kind.TEXT,
        "Range of the stable virtual IPs given to virtual services (kept in the store).",
        "dns",
        default=DEFAULT_VIP_RANGE,
        metavar="CIDR",
        check=_vip_range,
    ),
    Setting(
        "tracing_collector",
        "--tracing-collector",
        "MESHPLANE_TRACING_COLLECTOR",
        Kind.TEXT,
        "OTLP/gRPC collector (`HOST:PORT`) every proxy of a mesh without a "
        "`meshplane.io/tracing` tag sends its spans to (Envoy's OpenTelemetry tracer); "
        "unset: only tagged meshes are traced.",
        "tracing",
        metavar="HOST:PORT",
        check=_collector,
    ),
    Setting(
        "tracing_sampling",
        "--tracing-sampling",
        "MESHPLANE_TRACING_SAMPLING",
        Kind.TEXT,
        "Percent of requests a proxy starts a trace for (0-100) in a traced mesh without a "
        "`meshplane.io/tracing-sampling` tag.",
        "tracing",
        default=str(DEFAULT_SAMPLING),
        default_text=f"`{DEFAULT_SAMPLING:g}`",
        metavar="PERCENT",
        check=_percent,
    ),
    Setting(
        "telemetry_window",
        "--telemetry-window",
        "MESHPLANE_TELEMETRY_WINDOW",
        Kind.DURATION,
        "How long the proxies' reported stats are kept in memory (`stat`, `top`, the console).",
        "telemetry",
        default=timedelta(seconds=_TELEMETRY.capacity * _TELEMETRY.flush_interval),
        default_text="`15m`",
    ),
    Setting(
        "telemetry_resolution",
        "--telemetry-resolution",
        "MESHPLANE_TELEMETRY_RESOLUTION",
        Kind.DURATION,
        "The proxies' stats flush interval the window is kept at (`meshplane envoy`'s "
        "`--stats-flush-interval`); window / resolution flushes are kept per proxy.",
        "telemetry",
        default=timedelta(seconds=_TELEMETRY.flush_interval),
        default_text="`5s`",
    ),
    Setting(
        "telemetry_stale_after",
        "--telemetry-stale-after",
        "MESHPLANE_TELEMETRY_STALE_AFTER",
        Kind.DURATION,
        "A proxy silent this long is shown as not reporting (never as zero traffic).",
        "telemetry",
        default=timedelta(seconds=_TELEMETRY.stale_after),
        default_text="`15s`",
    ),
    Setting(
        "telemetry_max_proxies",
        "--telemetry-max-proxies",
        "MESHPLANE_TELEMETRY_MAX_PROXIES",
        Kind.COUNT,
        "Reporting proxy instances kept; a further one's metrics stream is refused "
        "(RESOURCE_EXHAUSTED).",
        "telemetry",
        default=_TELEMETRY.max_proxies,
        metavar="N",
    ),
    Setting(
        "telemetry_max_series",
        "--telemetry-max-series",
        "MESHPLANE_TELEMETRY_MAX_SERIES",
        Kind.COUNT,
        "Series read from one flush of one proxy; the rest are counted as dropped.",
        "telemetry",
        default=_TELEMETRY.max_series,
        metavar="N",
    ),
    Setting(
        "telemetry_max_message",
        "--telemetry-max-message",
        "MESHPLANE_TELEMETRY_MAX_MESSAGE",
        Kind.SIZE,
        "Largest metrics or access log message; a larger one ends its stream "
        "(RESOURCE_EXHAUSTED). Also bounded by `--xds-max-message`.",
        "telemetry",
        default=_TELEMETRY.max_message,
        metavar="SIZE",
    ),
    Setting(
        "telemetry_min_interval",
        "--telemetry-min-interval",
        "MESHPLANE_TELEMETRY_MIN_INTERVAL",
        Kind.DURATION,
        "Flushes of one proxy closer together than this are dropped unread (a flood costs no "
        "parsing).",
        "telemetry",
        default=timedelta(seconds=_TELEMETRY.min_interval),
        default_text="`0.5s`",
    ),
    Setting(
        "tap_max_sessions",
        "--tap-max-sessions",
        "MESHPLANE_TAP_MAX_SESSIONS",
        Kind.COUNT,
        "`meshplane tap` sessions open at once; a further one gets 429.",
        "telemetry",
        default=_TELEMETRY.max_taps,
        metavar="N",
    ),
    Setting(
        "tap_queue",
        "--tap-queue",
        "MESHPLANE_TAP_QUEUE",
        Kind.COUNT,
        "Access log entries buffered per tap for a slow reader; past it entries are dropped "
        "(counted).",
        "telemetry",
        default=_TELEMETRY.tap_queue,
        metavar="N",
    ),
)


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
    ca: CaSettings = field(default_factory=CaSettings)
    strict_manifests: bool = False
    """Unknown fields in applied manifests are errors for every caller (not warnings)."""
    dns: DnsSettings = field(default_factory=DnsSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    tracing: TracingDefaults = field(default_factory=TracingDefaults)

    @classmethod
    def load(cls, *, env: Mapping[str, str] | None = None, **given: Any) -> Settings:
        """Settings from flags (keywords named as in :data:`SETTINGS`; None or empty: not
        given) and the environment; ValueError names a bad value or combination."""
        environ = os.environ if env is None else env
        values = resolve(SETTINGS, given, environ)
        host: str = values["host"]
        data_dir: Path = values["data_dir"] or default_data_dir(environ)
        return cls(
            store=StoreSettings(
                data_dir=data_dir,
                database_url=values["database_url"],
                database_wait=values["database_wait"].total_seconds(),
                kek_file=values["kek_file"],
                kek=values["kek"],
            ),
            auth=AuthSettings(
                required=values["require_auth"] or not is_loopback(host),
                key_file=data_dir / "token.key",
            ),
            tls=_tls_settings(values, data_dir),
            api=ApiSettings(
                host=host,
                port=values["api_port"],
                limits=HttpLimits(
                    max_body=values["max_request_body"],
                    max_json_depth=values["max_json_depth"],
                    header_timeout=values["header_timeout"].total_seconds(),
                    body_timeout=values["body_timeout"].total_seconds(),
                    keep_alive_timeout=values["keep_alive_timeout"].total_seconds(),
                    max_connections=values["max_connections"],
                ),
                manifests=ManifestLimits(
                    max_documents=values["max_manifest_documents"],
                    max_object_size=values["max_manifest_object"],
                    max_aliases=values["max_yaml_aliases"],
                ),
            ),
            xds=XdsSettings(
                host=host,
                port=values["xds_port"],
                require_proxy_auth=values["require_proxy_auth"] or not is_loopback(host),
                limits=XdsLimits(
                    max_message=values["xds_max_message"],
                    max_node_metadata=values["xds_max_node_metadata"],
                    streams_per_connection=values["xds_streams_per_connection"],
                    streams_per_peer=values["xds_streams_per_peer"],
                    first_request_timeout=values["xds_first_request_timeout"].total_seconds(),
                    keepalive_time=values["xds_keepalive"].total_seconds(),
                    max_connection_idle=values["xds_idle_timeout"].total_seconds(),
                ),
                workers=values["xds_workers"],
            ),
            region=values["region"],
            account_id=values["account_id"],
            log_level=values["log_level"],
            strict_manifests=values["strict_manifests"],
            telemetry=_telemetry_settings(values),
            dns=DnsSettings(
                host=values["dns_host"] or host,
                port=int(values["dns_port"]),
                upstreams=_dns_upstreams(values["dns_upstreams"]),
                vip_range=values["vip_range"].strip(),
            ),
            tracing=TracingDefaults(
                collector=parse_collector(values["tracing_collector"], "--tracing-collector")
                if values["tracing_collector"]
                else None,
                sampling=float(values["tracing_sampling"]),
            ),
            ca=CaSettings(
                trust_domain=values["trust_domain"],
                cert_lifetime=values["cert_lifetime"],
                rotate_after=values["cert_rotate_after"],
                ca_certificate_file=values["ca_cert"],
                ca_key_file=values["ca_key"],
                ca_propagation=values["ca_propagation"],
                ca_overlap=values["ca_overlap"],
                ca_lifetime=values["ca_lifetime"],
                ca_rotate_before=values["ca_rotate_before"],
            ),
        )


def _telemetry_settings(values: Mapping[str, Any]) -> TelemetrySettings:
    window = values["telemetry_window"].total_seconds()
    resolution = values["telemetry_resolution"].total_seconds()
    if resolution > window:
        raise ValueError(
            "--telemetry-resolution must not be longer than --telemetry-window"
            f" ({resolution:g}s > {window:g}s)"
        )
    return TelemetrySettings.of(
        window,
        resolution,
        stale_after=values["telemetry_stale_after"].total_seconds(),
        max_proxies=values["telemetry_max_proxies"],
        max_series=values["telemetry_max_series"],
        max_message=values["telemetry_max_message"],
        min_interval=values["telemetry_min_interval"].total_seconds(),
        max_taps=values["tap_max_sessions"],
        tap_queue=values["tap_queue"],
    )


def _dns_upstreams(names: tuple[str, ...]) -> tuple[str, ...] | None:
    if names == ("off",):
        return ()
    return names or None


def _tls_settings(values: Mapping[str, Any], data_dir: Path) -> TlsSettings | None:
    cert: Path | None = values["tls_cert"]
    key: Path | None = values["tls_key"]
    issue: bool = values["tls_issue"]
    names: tuple[str, ...] = values["tls_names"]
    if (cert is None) != (key is None):
        raise ValueError("--tls-cert and --tls-key go together: give both or neither")
    if issue and cert is not None:
        raise ValueError(
            "--tls-issue makes its own certificate: give it or --tls-cert/--tls-key, not both"
        )
    if names and not issue:
        raise ValueError("--tls-name names hosts for --tls-issue's certificate: add --tls-issue")
    if issue:
        folder = data_dir / "tls"
        return TlsSettings(
            folder / "server.pem",
            folder / "server-key.pem",
            issue=server_names(values["host"], names),
        )
    if cert is not None and key is not None:
        return TlsSettings(cert, key)
    return None


def readme_table() -> str:
    """The configuration table of the README, generated from :data:`SETTINGS`."""
    return markdown_table(SETTINGS)


if __name__ == "__main__":
    print(readme_table(), end="")
