"""Settings of ``meshplane serve``: each declared once, built into one typed tree.

:data:`SETTINGS` declares every setting once (:class:`~meshplane.server.setting.Setting`:
name, flag, environment variable, kind, default, help, section), section by section in the
modules of the sections: ``store`` (:mod:`.settings_store`), ``server``, ``auth`` and ``tls``
(:mod:`.settings_server`), ``ca`` (:mod:`.settings_ca`), ``limits`` (:mod:`.settings_limits`),
``dns`` (:mod:`.settings_dns`), ``tracing`` and ``telemetry`` (:mod:`.settings_telemetry`);
here they are put in that order.  From it follow the click options of ``meshplane serve``
(``meshplane.cli.settings_options``), the ``MESHPLANE_*`` environment lookup
(:meth:`Settings.load`; flags win; nothing reads the environment anywhere else) and the
README's configuration table (``tests/test_settings.py`` checks it).  :meth:`Settings.load`
then builds the typed tree, one section a component (the server's own sections:
:mod:`.settings_sections`), and refuses the combinations of values no single setting can
check.

Adding a setting is a one-place change: append a ``Setting(...)`` to the ``SETTINGS`` of its
section's module (its ``name`` is the ``Settings.load`` keyword and the click parameter,
``flag`` ``--like-this``, ``env`` ``MESHPLANE_LIKE_THIS``, ``section`` the README group) and
read ``values["name"]`` where :meth:`Settings.load` builds its section (add the field to that
section's dataclass).  ``meshplane serve --help`` shows it and the environment sets it from
then on; regenerate the README table with ``python -m meshplane.server.settings``.

Used by ``meshplane.server.run`` and the CLI.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshplane.api.limits import HttpLimits
from meshplane.authority import CaSettings
from meshplane.authority.server_tls import server_names
from meshplane.manifests import ManifestLimits
from meshplane.model.tracing import TracingDefaults, parse_collector
from meshplane.server import (
    settings_ca,
    settings_dns,
    settings_limits,
    settings_server,
    settings_store,
    settings_telemetry,
)
from meshplane.server.setting import Setting, markdown_table, parse_duration, resolve
from meshplane.server.settings_sections import (
    ApiSettings,
    AuthSettings,
    DnsSettings,
    StoreSettings,
    TlsSettings,
    XdsSettings,
)
from meshplane.server.settings_server import DEFAULT_ACCOUNT_ID, DEFAULT_REGION
from meshplane.telemetry.window import TelemetrySettings
from meshplane.xds.limits import XdsLimits

__all__ = ["SETTINGS", "Settings", "is_loopback", "parse_duration"]

SETTINGS: tuple[Setting, ...] = (
    *settings_store.SETTINGS,
    *settings_server.SETTINGS,
    *settings_ca.SETTINGS,
    *settings_limits.SETTINGS,
    *settings_dns.SETTINGS,
    *settings_telemetry.SETTINGS,
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
                health_check_interval=values["health_check_interval"].total_seconds(),
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
