"""App Mesh's tracing switches in ``meshplane envoy``: ``ENABLE_ENVOY_JAEGER_TRACING`` and
``ENABLE_ENVOY_DATADOG_TRACING`` become the bootstrap's collector cluster and the node
metadata's tracer; ``ENABLE_ENVOY_XRAY_TRACING`` (AWS only) is a warning; bad values and two
drivers at once are refused naming the variable.  The real CLI prints the bootstrap and the
warning (``--print-bootstrap``); the real Envoy validates the bootstrap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshplane.model.proxy import NodeMetadata, ProxyTracer
from meshplane.proxy import BootstrapError, BootstrapOptions, build_bootstrap
from meshplane.proxy.bootstrap import XRAY_WARNING
from tests.support.translate import envoy_validate

WEB = {"APPMESH_RESOURCE_ARN": "mesh/shop/virtualNode/web"}


def _tracer(env: dict[str, str]) -> tuple[ProxyTracer, str, int]:
    tracer = BootstrapOptions.from_env({**WEB, **env}).tracer
    assert tracer is not None
    return tracer.tracer, tracer.host, tracer.port


def test_jaeger_is_envoys_zipkin_tracer_with_app_meshs_defaults() -> None:
    assert _tracer({"ENABLE_ENVOY_JAEGER_TRACING": "1"}) == (
        ProxyTracer("zipkin", "jaeger"),
        "127.0.0.1",
        9411,
    )
    assert _tracer(
        {
            "ENABLE_ENVOY_JAEGER_TRACING": "1",
            "JAEGER_TRACER_ADDRESS": "jaeger.observability",
            "JAEGER_TRACER_PORT": "19411",
            "JAEGER_TRACER_VERSION": "json",
        }
    ) == (ProxyTracer("zipkin", "jaeger", zipkin_json=True), "jaeger.observability", 19411)


def test_datadog_with_app_meshs_defaults() -> None:
    assert _tracer({"ENABLE_ENVOY_DATADOG_TRACING": "1"}) == (
        ProxyTracer("datadog", "datadog_agent", service_name="envoy-shop/web"),
        "127.0.0.1",
        8126,
    )
    assert _tracer(
        {
            "ENABLE_ENVOY_DATADOG_TRACING": "1",
            "DATADOG_TRACER_ADDRESS": "::1",
            "DATADOG_TRACER_PORT": "18126",
            "DD_SERVICE": "cart",
        }
    ) == (ProxyTracer("datadog", "datadog_agent", service_name="cart"), "::1", 18126)


def test_no_switch_no_tracer_and_xray_is_a_warning() -> None:
    assert BootstrapOptions.from_env(WEB).tracer is None
    options = BootstrapOptions.from_env({**WEB, "ENABLE_ENVOY_XRAY_TRACING": "1"})
    assert options.tracer is None
    assert options.warnings == (XRAY_WARNING,)
    assert "AWS" in XRAY_WARNING and "meshplane.io/tracing" in XRAY_WARNING


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"ENABLE_ENVOY_JAEGER_TRACING": "1", "ENABLE_ENVOY_DATADOG_TRACING": "1"},
            "only one tracer",
        ),
        ({"ENABLE_ENVOY_JAEGER_TRACING": "1", "JAEGER_TRACER_PORT": "0"}, "JAEGER_TRACER"),
        ({"ENABLE_ENVOY_JAEGER_TRACING": "1", "JAEGER_TRACER_PORT": "x"}, "JAEGER_TRACER"),
        ({"ENABLE_ENVOY_JAEGER_TRACING": "1", "JAEGER_TRACER_ADDRESS": "a b"}, "JAEGER_TRACER"),
        ({"ENABLE_ENVOY_JAEGER_TRACING": "1", "JAEGER_TRACER_VERSION": "XML"}, "JAEGER_TRACER"),
        (
            {"ENABLE_ENVOY_DATADOG_TRACING": "1", "DATADOG_TRACER_ADDRESS": "http://dd"},
            "DATADOG_TRACER",
        ),
        ({"ENABLE_ENVOY_DATADOG_TRACING": "1", "DATADOG_TRACER_PORT": "70000"}, "DATADOG_TRACER"),
    ],
)
def test_bad_switch_values_are_refused_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(BootstrapError, match=named):
        BootstrapOptions.from_env({**WEB, **env})


def test_the_bootstrap_has_the_cluster_and_the_metadata_and_envoy_accepts_it(
    tmp_path: Path,
) -> None:
    for driver, env in (
        ("zipkin", {"ENABLE_ENVOY_JAEGER_TRACING": "1", "JAEGER_TRACER_ADDRESS": "jaeger"}),
        ("datadog", {"ENABLE_ENVOY_DATADOG_TRACING": "1"}),
    ):
        bootstrap = build_bootstrap(BootstrapOptions.from_env({**WEB, **env}))
        names = [c["name"] for c in bootstrap["static_resources"]["clusters"]]
        cluster = "jaeger" if driver == "zipkin" else "datadog_agent"
        assert names == ["xds_cluster", cluster]
        metadata = NodeMetadata.from_node_metadata(bootstrap["node"]["metadata"])
        assert metadata is not None and metadata.tracer is not None
        assert (metadata.tracer.driver, metadata.tracer.cluster) == (driver, cluster)
        workdir = tmp_path / driver
        workdir.mkdir()
        result = envoy_validate(bootstrap, workdir)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_cli_prints_the_warning_and_refuses_two_drivers() -> None:
    command = [sys.executable, "-m", "meshplane", "envoy", "--print-bootstrap"]
    env = {**os.environ, **WEB, "ENABLE_ENVOY_XRAY_TRACING": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr and "ENABLE_ENVOY_XRAY_TRACING is ignored" in done.stderr
    assert "tracer" not in json.loads(done.stdout)["node"]["metadata"]["meshplane"]
    env = {**env, "ENABLE_ENVOY_JAEGER_TRACING": "1", "ENABLE_ENVOY_DATADOG_TRACING": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "only one tracer" in done.stderr and "Traceback" not in done.stderr
