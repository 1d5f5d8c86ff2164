"""Access logs: App Mesh ``logging.accessLog.file`` as Envoy's file access logger, and the
control plane's tap (Envoy's gRPC access log service) while someone taps the proxy.

``{path, format}`` becomes ``envoy.access_loggers.file``: a ``text`` format is the log line
template (a newline is added when missing, as Envoy writes lines verbatim), a ``json``
format is a ``json_format`` struct of key -> command.  Without a format the line is Envoy's
default format, which is what App Mesh writes too.  The same loggers go on the ingress and
egress HTTP connection managers and TCP proxies of a proxy.

Used by :mod:`meshplane.translate.listeners`.
"""

from __future__ import annotations

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.core.v3 import substitution_format_string_pb2 as formats
from envoy.config.core.v3.base_pb2 import DataSource
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from google.protobuf import struct_pb2

from meshplane.model.common import Logging
from meshplane.translate.options import Observability
from meshplane.translate.protos import pack, seconds

FILE_ACCESS_LOGGER = "envoy.access_loggers.file"
GRPC_ACCESS_LOGGER = "envoy.access_loggers.http_grpc"
TAP_HEADER = "x-meshplane-tap"


def access_logs(logging: Logging | None) -> list[accesslog_pb2.AccessLog]:
    """The access loggers of a proxy whose resource has ``logging`` (empty if none)."""
    if logging is None or logging.accessLog is None or logging.accessLog.file is None:
        return []
    file = logging.accessLog.file
    config = file_pb2.FileAccessLog(path=file.path)
    fmt = file.format
    if fmt is not None and fmt.text is not None:
        text = fmt.text if fmt.text.endswith("\n") else fmt.text + "\n"
        config.log_format.CopyFrom(
            formats.SubstitutionFormatString(text_format_source=DataSource(inline_string=text))
        )
    elif fmt is not None and fmt.json_ is not None:
        struct = struct_pb2.Struct()
        for pair in fmt.json_:
            struct.fields[pair.key].string_value = pair.value
        config.log_format.CopyFrom(formats.SubstitutionFormatString(json_format=struct))
    return [accesslog_pb2.AccessLog(name=FILE_ACCESS_LOGGER, typed_config=pack(config))]


def tap_logs(observability: Observability) -> list[accesslog_pb2.AccessLog]:
    """The gRPC access logger of a tapped proxy (``envoy.access_loggers.http_grpc`` to the
    control plane, flushed every 100 ms), or none.  HTTP connection managers only."""
    stream = observability.access_log
    if stream is None:
        return []
    service = grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=stream.cluster),
        initial_metadata=[base_pb2.HeaderValue(key=TAP_HEADER, value=stream.secret)],
    )
    config = als_pb2.HttpGrpcAccessLogConfig(
        common_config=als_pb2.CommonGrpcAccessLogConfig(
            log_name=stream.log_name,
            grpc_service=service,
            transport_api_version=config_source_pb2.ApiVersion.V3,
        )
    )
    config.common_config.buffer_flush_interval.CopyFrom(seconds(0.1))
    return [accesslog_pb2.AccessLog(name=GRPC_ACCESS_LOGGER, typed_config=pack(config))]
