"""The ``server``, ``auth`` and ``tls`` settings of ``meshplane serve``: the address and ports
it binds, its worker processes, the region and account of its ARNs, its log level, whether
API callers and proxies must authenticate, and the certificate of its ports.

Declarations only (:class:`~meshplane.server.setting.Setting`) and the defaults of the ports,
host, region and account, which the CLI and the demo use too; part of
:data:`meshplane.server.settings.SETTINGS`, whose ``Settings.load`` builds the ``api``, ``xds``,
``auth`` and ``tls`` sections from them.
"""

from __future__ import annotations

from meshplane.server.setting import Kind, Setting

DEFAULT_API_PORT = 8765
DEFAULT_XDS_PORT = 18000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "000000000000"
LOG_LEVELS = ("debug", "info", "warning", "error")


def _account_id(value: str) -> str | None:
    if len(value) != 12 or not value.isdigit():
        return f"{value!r} is not a 12-digit account ID"
    return None


SETTINGS: tuple[Setting, ...] = (
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
)
