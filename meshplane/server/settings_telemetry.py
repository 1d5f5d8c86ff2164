"""The ``tracing`` and ``telemetry`` settings of ``meshplane serve``: the default trace
collector and sampling of the meshes, and the window, resolution and bounds of the proxies'
telemetry and of traffic taps.

Declarations only (:class:`~meshplane.server.setting.Setting`), with the checks of their
values; part of :data:`meshplane.server.settings.SETTINGS`, whose ``Settings.load`` builds
the ``TracingDefaults`` and ``TelemetrySettings`` from them.
"""

from __future__ import annotations

from datetime import timedelta

from meshplane.model.tracing import DEFAULT_SAMPLING, parse_collector
from meshplane.server.setting import Kind, Setting
from meshplane.telemetry.window import TelemetrySettings

_TELEMETRY = TelemetrySettings()


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


SETTINGS: tuple[Setting, ...] = (
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
