"""Telemetry limits are ``meshplane serve`` settings, and a real server honours a changed one.

One server runs with every telemetry limit set lower than its default (flags and a variable);
each test pushes past one limit through the real endpoints (the metrics service and the
access log service on the xDS port, the tap and telemetry endpoints on the API port).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest

from meshplane.server.settings import Settings
from meshplane.telemetry import TelemetrySettings
from meshplane.telemetry.wire import STREAM_METRICS, messages
from tests.support.server import MeshplaneServer

pytestmark = pytest.mark.timeout(120)


def test_defaults_are_the_telemetry_settings_defaults() -> None:
    loaded = Settings.load(env={"XDG_DATA_HOME": "/xdg"}).telemetry
    assert loaded == TelemetrySettings()
    assert loaded.capacity * loaded.flush_interval == 15 * 60


def test_each_telemetry_variable_sets_its_limit() -> None:
    env = {
        "MESHPLANE_TELEMETRY_WINDOW": "10m",
        "MESHPLANE_TELEMETRY_RESOLUTION": "10s",
        "MESHPLANE_TELEMETRY_STALE_AFTER": "40s",
        "MESHPLANE_TELEMETRY_MAX_PROXIES": "50",
        "MESHPLANE_TELEMETRY_MAX_SERIES": "300",
        "MESHPLANE_TELEMETRY_MAX_MESSAGE": "64KiB",
        "MESHPLANE_TELEMETRY_MIN_INTERVAL": "2s",
        "MESHPLANE_TAP_MAX_SESSIONS": "3",
        "MESHPLANE_TAP_QUEUE": "20",
    }
    loaded = Settings.load(data_dir=Path("/d"), env=env).telemetry
    assert loaded == TelemetrySettings(
        capacity=60,
        flush_interval=10.0,
        stale_after=40.0,
        max_proxies=50,
        max_series=300,
        max_message=64 * 1024,
        min_interval=2.0,
        max_taps=3,
        tap_queue=20,
    )
    # a flag wins over its variable
    flagged = Settings.load(data_dir=Path("/d"), env=env, tap_max_sessions=5).telemetry
    assert flagged.max_taps == 5
    assert Settings.load(data_dir=Path("/d"), env={}, telemetry_window=timedelta(minutes=1))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MESHPLANE_TELEMETRY_WINDOW": "forever"}, "MESHPLANE_TELEMETRY_WINDOW"),
        ({"MESHPLANE_TELEMETRY_MAX_PROXIES": "0"}, "MESHPLANE_TELEMETRY_MAX_PROXIES"),
        ({"MESHPLANE_TELEMETRY_MAX_MESSAGE": "lots"}, "MESHPLANE_TELEMETRY_MAX_MESSAGE"),
        ({"MESHPLANE_TAP_MAX_SESSIONS": "-1"}, "MESHPLANE_TAP_MAX_SESSIONS"),
        (
            {"MESHPLANE_TELEMETRY_WINDOW": "10s", "MESHPLANE_TELEMETRY_RESOLUTION": "1m"},
            "--telemetry-resolution must not be longer than --telemetry-window",
        ),
    ],
)
def test_a_bad_telemetry_limit_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings.load(data_dir=Path("/d"), env=env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshplaneServer]:
    tmp = tmp_path_factory.mktemp("telemetry-limits")
    running = MeshplaneServer(
        tmp / "data",
        env={"MESHPLANE_TAP_QUEUE": "5"},
        extra_args=[
            "--tap-max-sessions",
            "2",
            "--telemetry-max-proxies",
            "1",
            "--telemetry-max-message",
            "1KiB",
            "--telemetry-window",
            "1m",
            "--telemetry-resolution",
            "5s",
        ],
    ).start()
    try:
        with httpx.Client(timeout=10) as http:
            created = http.put(f"{running.url}/v20190125/meshes", json={"meshName": "lim"})
            assert created.status_code == 200, created.text
        yield running
    finally:
        running.stop()


def _flush(node: str, padding: int = 0) -> bytes:
    m = messages()
    message = m.StreamMetricsMessage()
    message.identifier.node.id = node
    family = message.envoy_metrics.add(name="cluster.x.upstream_rq_total" + "x" * padding)
    family.type = m.COUNTER
    family.metric.add().counter.value = 1
    return bytes(message.SerializeToString())


def _stream(server: MeshplaneServer, payloads: list[bytes]) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{server.xds_port}") as channel:
        call = channel.stream_unary(STREAM_METRICS, request_serializer=None)
        try:
            call(iter(payloads), timeout=20)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK


def test_the_tap_session_limit_is_the_setting(server: MeshplaneServer) -> None:
    url = f"{server.url}/meshplane/v1/tap"
    clients = [httpx.Client(timeout=httpx.Timeout(10, read=30)) for _ in range(3)]
    streams = []
    try:
        for http in clients[:2]:
            stream = http.stream("GET", url, params={"mesh": "lim"})
            assert stream.__enter__().status_code == 200
            streams.append(stream)
        refused = clients[2].get(url, params={"mesh": "lim"})
        assert refused.status_code == 429, refused.text
        assert "at most 2 taps" in refused.json()["message"]
    finally:
        for stream in streams:
            stream.__exit__(None, None, None)
        for http in clients:
            http.close()


def test_the_proxy_and_message_limits_are_the_settings(server: MeshplaneServer) -> None:
    # a message over --telemetry-max-message (1 KiB) ends its stream
    assert _stream(server, [_flush("mesh/lim/virtualNode/a", 2048)]) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    # one proxy fits (--telemetry-max-proxies 1) ...
    assert _stream(server, [_flush("mesh/lim/virtualNode/a")]) == grpc.StatusCode.OK
    # ... a second one does not (the first is kept for the window: it has not gone stale)
    assert _stream(server, [_flush("mesh/lim/virtualNode/b")]) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )


def test_the_window_is_the_setting(server: MeshplaneServer) -> None:
    url = f"{server.url}/meshplane/v1/telemetry"
    with httpx.Client(timeout=10) as http:
        assert http.get(url, params={"mesh": "lim", "seconds": "60"}).status_code == 200
        longer = http.get(url, params={"mesh": "lim", "seconds": "61"})
    assert longer.status_code == 400 and "between 1 and 60" in longer.json()["message"]
