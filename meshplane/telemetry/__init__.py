"""Telemetry from the proxies: Envoy's metrics service into a bounded window, golden signals.

- :mod:`~meshplane.telemetry.wire`: the metrics service's message types;
- :mod:`~meshplane.telemetry.stats`: Envoy stat names -> series (pure);
- :mod:`~meshplane.telemetry.window`: per-proxy windows (:class:`TelemetryStore`);
- :mod:`~meshplane.telemetry.service`: the ``StreamMetrics`` gRPC handler;
- :mod:`~meshplane.telemetry.signals`: rates, error rates, quantiles per edge and node;
- :mod:`~meshplane.telemetry.exposition`: the golden signals on ``/metrics``;
- :mod:`~meshplane.telemetry.tap`: access logs on demand (the access log service, taps);
- :mod:`~meshplane.telemetry.http`: the JSON endpoint and the tap stream for the CLI and the
  console.

Wired by :mod:`meshplane.server.run`.
"""

from meshplane.telemetry.exposition import METRIC_NAMES, TelemetryCollector
from meshplane.telemetry.http import TelemetryApi
from meshplane.telemetry.service import MetricsService, StreamLimits
from meshplane.telemetry.tap import AccessLogService, TapFilter, TapHub
from meshplane.telemetry.window import TelemetrySettings, TelemetryStore

__all__ = [
    "METRIC_NAMES",
    "AccessLogService",
    "MetricsService",
    "StreamLimits",
    "TapFilter",
    "TapHub",
    "TelemetryApi",
    "TelemetryCollector",
    "TelemetrySettings",
    "TelemetryStore",
]
