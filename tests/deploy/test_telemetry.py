"""libs/telemetry.py switches, and Envoy's tracer in the rendered edge configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from libs import telemetry
from tests.deploy.kube import ROOT
from tools.envoy_config import render_envoy_config

OFF_SCRIPT = """
import sys
from libs import grpcserver, telemetry
assert telemetry.configure_tracing("router") is False
assert telemetry.server_interceptors() == []
assert telemetry.client_interceptors() == []
assert telemetry.current_trace_id() == ""
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""


def _python(script: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'libs' / 'gen'}", **environ}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_tracing_off_imports_nothing() -> None:
    result = _python(OFF_SCRIPT)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_tracing_on_with_endpoint() -> None:
    script = (
        "from libs import telemetry\n"
        "assert telemetry.configure_tracing('cache', '1.2.3') is True\n"
        "assert len(telemetry.server_interceptors()) == 1\n"
        "assert len(telemetry.client_interceptors()) == 4\n"
        "from opentelemetry import trace\n"
        "print(trace.get_tracer_provider().resource.attributes['service.name'])\n"
        "telemetry.shutdown_tracing()\n"
    )
    # Nothing listens on the port; no span is recorded, so nothing is sent.
    result = _python(script, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_SERVICE_NAME="cache-eu")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cache-eu"


def test_tracing_endpoint_variables() -> None:
    assert telemetry.tracing_endpoint({}) is None
    assert telemetry.tracing_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}) is None
    assert telemetry.tracing_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}) == "http://c:4317"
    assert (
        telemetry.tracing_endpoint(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4317"}
        )
        == "http://t:4317"
    )


def test_metrics_address() -> None:
    assert telemetry.metrics_address("router", {}) == "127.0.0.1"
    assert telemetry.metrics_address("router", {"ROUTER_METRICS_ADDR": "0.0.0.0"}) == "0.0.0.0"
    assert telemetry.metrics_address("cache", {"ROUTER_METRICS_ADDR": "0.0.0.0"}) == "127.0.0.1"


def _render(**kwargs: str) -> dict:
    return dict(
        yaml.safe_load(
            render_envoy_config(
                router_address="router:50051", security_address="security:50052", descriptor_path="/d.binpb", **kwargs
            )
        )
    )


def _connection_manager(config: dict) -> dict:
    return dict(config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"])


def test_edge_without_endpoint_has_no_tracing() -> None:
    config = _render()

    assert "tracing" not in _connection_manager(config)
    assert [c["name"] for c in config["static_resources"]["clusters"]] == ["router", "security"]


def test_edge_tracing_exports_to_collector(tmp_path: Path) -> None:
    from tools import protos

    config = _render(otlp_endpoint="http://otel-collector:4317")
    tracing = _connection_manager(config)["tracing"]
    collector = config["static_resources"]["clusters"][-1]
    protos.sync_third_party()
    descriptor = protos.build_descriptor(tmp_path / "aigateway.binpb")
    path = tmp_path / "envoy.yaml"
    path.write_text(
        render_envoy_config(
            router_address="router:50051",
            security_address="security:50052",
            descriptor_path=descriptor,
            otlp_endpoint="otel-collector:4317",
        )
    )
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "envoy"), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert tracing["provider"]["name"] == "envoy.tracers.opentelemetry"
    assert tracing["provider"]["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "otel_collector"
    assert tracing["provider"]["typed_config"]["service_name"] == "edge"
    assert collector["name"] == "otel_collector"
    address = collector["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "otel-collector", "port_value": 4317}
    assert result.returncode == 0, result.stdout + result.stderr
