"""One request through the whole mesh with tracing on forms one OpenTelemetry trace.

The test runs an OTLP/gRPC trace receiver on 127.0.0.1. It starts the gateway (Envoy,
the four services, Cerbos, PostgreSQL, the provider simulator) with the receiver as the
OTLP endpoint and sends one chat completion with a known ``traceparent``. Then it checks
the spans that arrive: every process contributed, all share the trace id, and every
span's parent is another span of the same trace.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

import tools.stack
from tools.envoy_config import render_envoy_config
from tools.stack import Ports, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver got it, with the service.name of its resource."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector that keeps every span it receives in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []

    def Export(  # noqa: N802 - the OTLP service defines the name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _attribute_value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """Return the spans received so far that belong to ``trace_id``."""
        with self._lock:
            return [span for span in self._spans if span.trace_id == trace_id]


def _attribute_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[TraceReceiver, int]]:
    servicer = TraceReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def traced_stack(receiver: tuple[TraceReceiver, int]) -> Iterator[Stack]:
    _, port = receiver
    endpoint = f"http://127.0.0.1:{port}"
    root = Path(tempfile.mkdtemp(prefix="aigw-test-tracing-", dir="/var/tmp"))
    root.chmod(0o755)
    environ = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        # Export every 100 ms instead of every 5 s, so the test does not wait long.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        # The access line per RPC, with its trace_id, is logged at DEBUG.
        "ROUTER_LOG_LEVEL": "DEBUG",
    }
    stack = Stack(ports=Ports.free(), data_dir=root, redis_url=os.environ.get("AIGW_REDIS_URL"), environ=environ)
    # The launcher renders Envoy's configuration without tracing; this stack's Envoy
    # exports to the receiver too.
    original = tools.stack.render_envoy_config
    tools.stack.render_envoy_config = functools.partial(render_envoy_config, otlp_endpoint=endpoint)
    try:
        stack.start()
        yield stack
    finally:
        tools.stack.render_envoy_config = original
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def _chat(stack: Stack, trace_id: str) -> dict[str, Any]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Trace me {uuid.uuid4().hex}"}]}
    request = urllib.request.Request(
        f"{stack.base_url}/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {stack.api_key}",
            "Content-Type": "application/json",
            # Sampled, with a parent span id of our own: Envoy continues this trace.
            "traceparent": f"00-{trace_id}-{'1' * 16}-01",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def _wait_for_services(receiver: TraceReceiver, trace_id: str, services: set[str]) -> list[ReceivedSpan]:
    deadline = time.monotonic() + 20
    spans = receiver.trace(trace_id)
    while time.monotonic() < deadline:
        spans = receiver.trace(trace_id)
        if services <= {span.service for span in spans}:
            break
        time.sleep(0.2)
    return spans


def test_request_spans_form_one_trace(receiver: tuple[TraceReceiver, int], traced_stack: Stack) -> None:
    spans_receiver, _ = receiver
    trace_id = uuid.uuid4().hex
    expected_services = {"edge", "router", "security", "cache", "metering"}

    answer = _chat(traced_stack, trace_id)
    spans = _wait_for_services(spans_receiver, trace_id, expected_services)

    assert answer["object"] == "chat.completion"
    assert expected_services <= {span.service for span in spans}, sorted({(s.service, s.name) for s in spans})
    span_ids = {span.span_id for span in spans}
    orphans = [(s.service, s.name) for s in spans if s.parent_span_id not in span_ids | {"1" * 16}]
    assert orphans == []
    roots = [s for s in spans if s.parent_span_id == "1" * 16]
    assert [s.service for s in roots] == ["edge"]


def test_router_calls_are_child_spans(receiver: tuple[TraceReceiver, int], traced_stack: Stack) -> None:
    spans_receiver, _ = receiver
    trace_id = uuid.uuid4().hex

    _chat(traced_stack, trace_id)
    spans = _wait_for_services(spans_receiver, trace_id, {"edge", "router", "security", "cache", "metering"})
    by_id = {span.span_id: span for span in spans}

    # security serves Envoy's ext_authz check, which screens this clean prompt too. So
    # the router does not call security here, but it calls cache and metering.
    for callee, caller in (("security", "edge"), ("cache", "router"), ("metering", "router")):
        servers = [s for s in spans if s.service == callee and s.kind == SPAN_KIND_SERVER]
        parents = {by_id[s.parent_span_id].service for s in servers if s.parent_span_id in by_id}
        assert servers, f"no server span from {callee}"
        assert caller in parents, f"{callee}'s server spans have parents from {parents}"
    # The aiohttp instrumentation names the method attribute after the semantic
    # conventions in force: http.method by default, http.request.method in the stable ones.
    method_keys = {"http.method", "http.request.method"}
    provider_calls = [
        s for s in spans if s.service == "router" and s.kind == SPAN_KIND_CLIENT and method_keys & set(s.attributes)
    ]
    assert provider_calls, [(s.name, s.kind, sorted(s.attributes)) for s in spans if s.service == "router"]
    method = provider_calls[0].attributes.get("http.request.method") or provider_calls[0].attributes.get("http.method")
    assert method == "POST"


def test_router_logs_trace_id(receiver: tuple[TraceReceiver, int], traced_stack: Stack) -> None:
    spans_receiver, _ = receiver
    trace_id = uuid.uuid4().hex

    _chat(traced_stack, trace_id)
    _wait_for_services(spans_receiver, trace_id, {"router"})
    log_text = (traced_stack.log_dir / "router.log").read_text()
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]

    request_lines = [line for line in lines if line.get("trace_id") == trace_id]
    assert request_lines, "no router log line carries the request's trace_id"
    assert all(line.get("request_id") for line in request_lines)
