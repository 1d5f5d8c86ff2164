"""The mesh's tracing setting in the control loop and the API service: the
``meshplane.io/tracing`` tag (or the server's default collector) is followed live, a bad value
is a BadRequestError that changes nothing.  No sockets: embedded_store -> control loop ->
snapshot cache."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from envoy.config.trace.v3 import opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from meshplane.control import ControlLoop
from meshplane.errors import BadRequestError
from meshplane.model.kinds import Kind, ResourceKey
from meshplane.model.tracing import TRACING_SAMPLING_TAG, TRACING_TAG, Collector, TracingDefaults
from meshplane.service.access import ANONYMOUS
from meshplane.service.arns import Partition
from meshplane.service.resources import Caller, ResourceService
from meshplane.store import SqlStore
from meshplane.translate.names import TRACING_CLUSTER
from meshplane.xds import SnapshotCache, types
from tests.support.control import node_spec, settle
from tests.support.xds import connection

CALLER = Caller("000000000000", ANONYMOUS)
ARN = "arn:aws:appmesh:us-east-1:000000000000:mesh/m"
WEB = "mesh/m/virtualNode/web"


def _service(store: SqlStore, tags: list[dict[str, str]] | None = None) -> ResourceService:
    service = ResourceService(store, Partition("us-east-1", "000000000000"))
    service.create(ResourceKey(Kind.MESH, "m", "m"), None, caller=CALLER, tags=tags)
    service.create(ResourceKey(Kind.VIRTUAL_NODE, "m", "web"), node_spec("10.0.0.1"), caller=CALLER)
    return service


def _tracing(loop: ControlLoop) -> tuple[bool, list[tuple[str, float]]]:
    """Whether the proxy's snapshot has the collector cluster, and (service name, sampling)
    of each traced HTTP connection manager."""
    snapshot = loop.cache.get(WEB)
    assert snapshot is not None
    traced = []
    for resource in snapshot.get(types.LISTENER).values():
        for chain in resource.message.filter_chains:  # type: ignore[attr-defined]
            manager = hcm_pb2.HttpConnectionManager()
            if chain.filters[0].typed_config.Unpack(manager) and manager.HasField("tracing"):
                config = opentelemetry_pb2.OpenTelemetryConfig()
                assert manager.tracing.provider.typed_config.Unpack(config)
                traced.append((config.service_name, manager.tracing.random_sampling.value))
    return TRACING_CLUSTER in snapshot.get(types.CLUSTER), traced


async def _loop(store: SqlStore, defaults: TracingDefaults | None = None) -> ControlLoop:
    loop = ControlLoop(store, SnapshotCache(), debounce=0.01, tracing=defaults)
    await loop.start()
    await loop.proxy_connected(connection(1, WEB))
    return loop


async def _tag(service: ResourceService, store: SqlStore, loop: ControlLoop, **tags: str) -> None:
    pairs = [{"key": k, "value": v} for k, v in tags.items()]
    await asyncio.to_thread(service.tag, ARN, pairs, caller=CALLER)
    await settle(loop, store)


async def test_the_tracing_tag_is_followed_live(embedded_store: SqlStore) -> None:
    service = _service(embedded_store)
    loop = await _loop(embedded_store)
    try:
        assert _tracing(loop) == (False, [])
        await _tag(service, embedded_store, loop, **{TRACING_TAG: "127.0.0.1:4317"})
        assert _tracing(loop) == (True, [("web", 1.0), ("web", 1.0)])  # ingress and egress
        await _tag(service, embedded_store, loop, **{TRACING_SAMPLING_TAG: "25"})
        assert _tracing(loop) == (True, [("web", 25.0), ("web", 25.0)])
        await asyncio.to_thread(service.untag, ARN, [TRACING_TAG], caller=CALLER)
        await settle(loop, embedded_store)
        assert _tracing(loop) == (False, [])
        assert not loop.problems(1)
    finally:
        await loop.stop()


async def test_the_server_default_traces_untagged_meshes(embedded_store: SqlStore) -> None:
    service = _service(embedded_store)
    loop = await _loop(embedded_store, TracingDefaults(Collector("collector", 4317), 5.0))
    try:
        assert _tracing(loop) == (True, [("web", 5.0), ("web", 5.0)])
        await _tag(service, embedded_store, loop, **{TRACING_TAG: "off"})
        assert _tracing(loop) == (False, [])
    finally:
        await loop.stop()


BAD_TAGS: list[dict[str, str]] = [
    {TRACING_TAG: "no-port"},
    {TRACING_TAG: "collector:99999"},
    {TRACING_TAG: "http://collector:4317"},
    {TRACING_TAG: "collector:4317", TRACING_SAMPLING_TAG: "150"},
    {TRACING_SAMPLING_TAG: "one percent"},
    {TRACING_SAMPLING_TAG: "nan"},
]


@pytest.mark.parametrize("tags", BAD_TAGS)
def test_bad_tracing_tags_are_refused_and_change_nothing(
    embedded_store: SqlStore, tags: dict[str, str]
) -> None:
    pairs = [{"key": k, "value": v} for k, v in tags.items()]
    service = ResourceService(embedded_store, Partition("us-east-1", "000000000000"))
    key = ResourceKey(Kind.MESH, "m", "m")
    with pytest.raises(BadRequestError, match=r"tags: meshplane\.io/tracing") as refused:
        service.create(key, None, caller=CALLER, tags=pairs)
    assert "must be" in str(refused.value)
    assert embedded_store.get(key) is None
    service.create(key, None, caller=CALLER, tags=[{"key": "team", "value": "a"}])
    revision = embedded_store.revision
    with pytest.raises(BadRequestError, match=r"tags: meshplane\.io/tracing"):
        service.tag(ARN, pairs, caller=CALLER)
    record = embedded_store.get(key)
    assert record is not None and [(t.key, t.value) for t in record.tags] == [("team", "a")]
    assert embedded_store.revision == revision


def test_tracing_tags_on_other_kinds_are_not_the_mesh_setting(embedded_store: SqlStore) -> None:
    service = _service(embedded_store)
    arn = ARN + "/virtualNode/web"
    answer: Any = service.tag(arn, [{"key": TRACING_TAG, "value": "anything"}], caller=CALLER)
    assert answer == {}
