"""The mesh's tracing setting: where every proxy of a mesh sends its spans, and how many.

Two mesh tags set it (defaults from ``meshplane serve --tracing-collector`` and
``--tracing-sampling``):

- ``meshplane.io/tracing``: the OTLP/gRPC collector, ``host:port`` (a DNS name, an IPv4
  address or a bracketed IPv6 address; port 1-65535), or ``off`` to keep a mesh untraced
  when the server has a default collector;
- ``meshplane.io/tracing-sampling``: the percentage of requests a proxy starts a trace for,
  a number from 0 to 100 (``1``, ``0.5``, ``100``); default :data:`DEFAULT_SAMPLING`.

:func:`tracing_from_tags` reads them (ValueError naming the tag and the rule);
:func:`check_tracing_tags` is what the API runs on a mesh's tags before it stores them, so a
bad value is a BadRequestException and never reaches the data plane.

Pure; used by ``meshplane.service`` (the check), ``meshplane.translate`` (the tracer) and the
control loop and server settings (the defaults).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

TRACING_TAG = "meshplane.io/tracing"
TRACING_SAMPLING_TAG = "meshplane.io/tracing-sampling"
TRACING_OFF = "off"
DEFAULT_SAMPLING = 1.0
"""Percent of requests traced when nothing says otherwise (Istio's default too): cheap
enough for production; set the tag to 100 to trace every request."""

_DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$")


@dataclass(frozen=True, slots=True)
class Collector:
    """An OTLP/gRPC collector's address."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class MeshTracing:
    """A mesh's tracing: spans to ``collector`` (OTLP/gRPC) for ``sampling`` percent of the
    requests a proxy of the mesh starts a trace for."""

    collector: Collector
    sampling: float = DEFAULT_SAMPLING


@dataclass(frozen=True, slots=True)
class TracingDefaults:
    """The server's tracing for meshes without a ``meshplane.io/tracing`` tag
    (``meshplane serve --tracing-collector/--tracing-sampling``); no collector: untraced."""

    collector: Collector | None = None
    sampling: float = DEFAULT_SAMPLING

    def for_mesh(self, tags: Mapping[str, str]) -> tuple[MeshTracing | None, str | None]:
        """The tracing of a mesh with ``tags``, and a problem when a tag is bad (stored
        before the API checked it: tracing is then off for the mesh)."""
        try:
            return tracing_from_tags(tags, self.collector, self.sampling), None
        except ValueError as error:
            return None, f"{error}; tracing is off"


def parse_collector(value: str, where: str = TRACING_TAG) -> Collector:
    """``host:port`` as a :class:`Collector`; ValueError naming ``where`` and the rule."""
    rule = f"{where}: {value!r} must be host:port (a DNS name, IPv4 or [IPv6]; port 1-65535)"
    text = value.strip()
    host, colon, port = text.rpartition(":")
    if not colon or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(rule)
    if host.startswith("[") and host.endswith("]"):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise ValueError(rule) from None
    elif not host.isascii() or not _DNS_NAME.match(host):
        raise ValueError(rule)
    return Collector(host, int(port))


def parse_sampling(value: str, where: str = TRACING_SAMPLING_TAG) -> float:
    """A percentage from 0 to 100; ValueError naming ``where`` and the rule."""
    rule = f"{where}: {value!r} must be a percentage from 0 to 100 (like 1, 0.5 or 100)"
    text = value.strip()
    if not text or len(text) > 32 or not text.isascii():
        raise ValueError(rule)
    try:
        number = float(text)
    except ValueError:
        raise ValueError(rule) from None
    if not math.isfinite(number) or not 0 <= number <= 100:
        raise ValueError(rule)
    return number


def tracing_from_tags(
    tags: Mapping[str, str],
    default_collector: Collector | None = None,
    default_sampling: float = DEFAULT_SAMPLING,
) -> MeshTracing | None:
    """The tracing of a mesh with ``tags`` (None: untraced), given the server's defaults;
    ValueError naming the tag and the rule when a tag's value is bad."""
    sampling = default_sampling
    if TRACING_SAMPLING_TAG in tags:
        sampling = parse_sampling(tags[TRACING_SAMPLING_TAG])
    value = tags.get(TRACING_TAG)
    if value is not None and value.strip().lower() == TRACING_OFF:
        return None
    collector = parse_collector(value) if value is not None else default_collector
    return None if collector is None else MeshTracing(collector, sampling)


def check_tracing_tags(tags: Mapping[str, str]) -> None:
    """ValueError (naming the tag and the rule) when a mesh's tracing tags are bad."""
    tracing_from_tags(tags)
