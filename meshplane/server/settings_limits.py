"""The ``limits`` settings of ``meshplane serve``: what one client can make the server do,
over HTTP (request bodies, JSON depth, connections, timeouts), in applied manifests (documents,
object size, YAML aliases) and over xDS (message sizes, streams, timeouts).

Declarations only (:class:`~meshplane.server.setting.Setting`), their defaults those of
:class:`~meshplane.api.limits.HttpLimits`, :class:`~meshplane.manifests.ManifestLimits` and
:class:`~meshplane.xds.limits.XdsLimits`; part of :data:`meshplane.server.settings.SETTINGS`,
whose ``Settings.load`` builds those limits from them.
"""

from __future__ import annotations

from datetime import timedelta

from meshplane.api.limits import HttpLimits
from meshplane.manifests import ManifestLimits
from meshplane.server.setting import Kind, Setting
from meshplane.xds.limits import XdsLimits

_HTTP = HttpLimits()
_XDS = XdsLimits()
_MANIFESTS = ManifestLimits()

SETTINGS: tuple[Setting, ...] = (
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
)
