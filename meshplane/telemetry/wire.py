"""The wire types of Envoy's metrics service, declared here because ``xds-protos`` lacks them.

Envoy's ``envoy.stat_sinks.metrics_service`` streams ``StreamMetricsMessage`` (package
``envoy.service.metrics.v3``) whose ``envoy_metrics`` are Prometheus client ``MetricFamily``
messages (package ``io.prometheus.client``).  ``xds-protos`` ships neither (the Prometheus
protos are an external dependency of Envoy's API), so this module builds their descriptors
with ``google.protobuf`` at first use, field numbers as Envoy and Prometheus define them, and
makes message classes from them.  ``node`` is the real ``envoy.config.core.v3.Node`` from
``xds-protos``.

:data:`STREAM_METRICS` is the gRPC method path; :func:`messages` gives the classes.  Used by
:mod:`meshplane.telemetry.service` and the tests' fake proxies.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import base_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

STREAM_METRICS = "/envoy.service.metrics.v3.MetricsService/StreamMetrics"

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL = _F.LABEL_OPTIONAL
_REPEATED = _F.LABEL_REPEATED


@dataclass(frozen=True, slots=True)
class Messages:
    """The message classes of the metrics service."""

    StreamMetricsMessage: Any
    StreamMetricsResponse: Any
    MetricFamily: Any
    # MetricType enum values
    COUNTER: int = 0
    GAUGE: int = 1
    SUMMARY: int = 2
    UNTYPED: int = 3
    HISTOGRAM: int = 4


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    label: int = _OPTIONAL,
    type_name: str = "",
) -> None:
    field = message.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name


def _prometheus_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="meshplane/io/prometheus/client/metrics.proto",
        package="io.prometheus.client",
        syntax="proto2",
    )
    metric_type = file.enum_type.add(name="MetricType")
    for number, name in enumerate(
        ("COUNTER", "GAUGE", "SUMMARY", "UNTYPED", "HISTOGRAM", "GAUGE_HISTOGRAM")
    ):
        metric_type.value.add(name=name, number=number)
    pkg = ".io.prometheus.client."
    label_pair = file.message_type.add(name="LabelPair")
    _field(label_pair, "name", 1, _F.TYPE_STRING)
    _field(label_pair, "value", 2, _F.TYPE_STRING)
    gauge = file.message_type.add(name="Gauge")
    _field(gauge, "value", 1, _F.TYPE_DOUBLE)
    counter = file.message_type.add(name="Counter")
    _field(counter, "value", 1, _F.TYPE_DOUBLE)
    quantile = file.message_type.add(name="Quantile")
    _field(quantile, "quantile", 1, _F.TYPE_DOUBLE)
    _field(quantile, "value", 2, _F.TYPE_DOUBLE)
    summary = file.message_type.add(name="Summary")
    _field(summary, "sample_count", 1, _F.TYPE_UINT64)
    _field(summary, "sample_sum", 2, _F.TYPE_DOUBLE)
    _field(summary, "quantile", 3, _F.TYPE_MESSAGE, _REPEATED, pkg + "Quantile")
    untyped = file.message_type.add(name="Untyped")
    _field(untyped, "value", 1, _F.TYPE_DOUBLE)
    bucket = file.message_type.add(name="Bucket")
    _field(bucket, "cumulative_count", 1, _F.TYPE_UINT64)
    _field(bucket, "upper_bound", 2, _F.TYPE_DOUBLE)
    histogram = file.message_type.add(name="Histogram")
    _field(histogram, "sample_count", 1, _F.TYPE_UINT64)
    _field(histogram, "sample_sum", 2, _F.TYPE_DOUBLE)
    _field(histogram, "bucket", 3, _F.TYPE_MESSAGE, _REPEATED, pkg + "Bucket")
    metric = file.message_type.add(name="Metric")
    _field(metric, "label", 1, _F.TYPE_MESSAGE, _REPEATED, pkg + "LabelPair")
    _field(metric, "gauge", 2, _F.TYPE_MESSAGE, type_name=pkg + "Gauge")
    _field(metric, "counter", 3, _F.TYPE_MESSAGE, type_name=pkg + "Counter")
    _field(metric, "summary", 4, _F.TYPE_MESSAGE, type_name=pkg + "Summary")
    _field(metric, "untyped", 5, _F.TYPE_MESSAGE, type_name=pkg + "Untyped")
    _field(metric, "timestamp_ms", 6, _F.TYPE_INT64)
    _field(metric, "histogram", 7, _F.TYPE_MESSAGE, type_name=pkg + "Histogram")
    family = file.message_type.add(name="MetricFamily")
    _field(family, "name", 1, _F.TYPE_STRING)
    _field(family, "help", 2, _F.TYPE_STRING)
    _field(family, "type", 3, _F.TYPE_ENUM, type_name=pkg + "MetricType")
    _field(family, "metric", 4, _F.TYPE_MESSAGE, _REPEATED, pkg + "Metric")
    return file


def _service_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="meshplane/envoy/service/metrics/v3/metrics_service.proto",
        package="envoy.service.metrics.v3",
        syntax="proto3",
        dependency=[
            "meshplane/io/prometheus/client/metrics.proto",
            base_pb2.DESCRIPTOR.name,
        ],
    )
    file.message_type.add(name="StreamMetricsResponse")
    message = file.message_type.add(name="StreamMetricsMessage")
    identifier = message.nested_type.add(name="Identifier")
    _field(identifier, "node", 1, _F.TYPE_MESSAGE, type_name=".envoy.config.core.v3.Node")
    _field(
        message,
        "identifier",
        1,
        _F.TYPE_MESSAGE,
        type_name=".envoy.service.metrics.v3.StreamMetricsMessage.Identifier",
    )
    _field(
        message,
        "envoy_metrics",
        2,
        _F.TYPE_MESSAGE,
        _REPEATED,
        ".io.prometheus.client.MetricFamily",
    )
    return file


@functools.cache
def messages() -> Messages:
    """The message classes (built once, in a pool of their own)."""
    pool = descriptor_pool.DescriptorPool()
    core = descriptor_pb2.FileDescriptorProto()
    # the Node message and everything it depends on, from xds-protos' own descriptors
    seen: set[str] = set()

    def add(file: Any) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        file.CopyToProto(core)
        pool.Add(core)
        core.Clear()

    add(base_pb2.DESCRIPTOR)
    pool.Add(_prometheus_file())
    pool.Add(_service_file())
    get = message_factory.GetMessageClass
    return Messages(
        StreamMetricsMessage=get(
            pool.FindMessageTypeByName("envoy.service.metrics.v3.StreamMetricsMessage")
        ),
        StreamMetricsResponse=get(
            pool.FindMessageTypeByName("envoy.service.metrics.v3.StreamMetricsResponse")
        ),
        MetricFamily=get(pool.FindMessageTypeByName("io.prometheus.client.MetricFamily")),
    )
