"""OpenTelemetry tracing for the services, and the address of their Prometheus endpoint.

Tracing is off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set. Off, nothing from OpenTelemetry is
imported, :func:`server_interceptors` and :func:`client_interceptors` return empty lists
and :func:`current_trace_id` returns an empty string, so a request pays nothing for it.

On, :func:`configure_tracing` installs an SDK tracer provider that batches spans to the
OTLP/gRPC endpoint. The gRPC server and client interceptors and the aiohttp client
instrumentation then create spans and carry W3C ``traceparent`` between processes, so one
request through Envoy, the router, security, cache, metering and the provider call forms
one trace. ``OTEL_SERVICE_NAME`` replaces the service's name, and the other standard
``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_INSECURE``, ``OTEL_TRACES_SAMPLER``, ...) apply
as the SDK defines them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

# The standard health and reflection services are polled by probes and tools: tracing
# them would bury the request traces.
_UNTRACED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")

_provider: Any = None


def metrics_address(service: str, environ: Mapping[str, str] | None = None) -> str:
    """Return the address the Prometheus endpoint binds, from ``<SERVICE>_METRICS_ADDR``.

    The default, 127.0.0.1, suits one machine. In Kubernetes the pod's IP must be
    reachable by Prometheus, so the manifests set 0.0.0.0 and a NetworkPolicy limits
    who may connect.
    """
    environ = os.environ if environ is None else environ
    return environ.get(f"{service.upper()}_METRICS_ADDR") or "127.0.0.1"


def tracing_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """Return the configured OTLP endpoint, or None when tracing is off."""
    environ = os.environ if environ is None else environ
    for name in ENDPOINT_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def tracing_enabled() -> bool:
    """Return whether :func:`configure_tracing` installed a tracer provider."""
    return _provider is not None


def configure_tracing(service: str, version: str = "", environ: Mapping[str, str] | None = None) -> bool:
    """Install the tracer provider and the aiohttp instrumentation when an endpoint is set.

    Call it once at startup, before any gRPC channel or aiohttp session is created,
    because the instrumentation applies to those created afterwards. Returns whether
    tracing is on. ``service`` becomes ``service.name`` unless ``OTEL_SERVICE_NAME`` is set.
    """
    global _provider

    endpoint = tracing_endpoint(environ)
    if endpoint is None or _provider is not None:
        return _provider is not None

    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.namespace": "aigateway"}
    if version:
        attributes["service.version"] = version
    # Resource.create adds OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, but the
    # attributes given here win over them, so service.name is set only as the default.
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = service
    provider = TracerProvider(resource=Resource.create(attributes))
    # The exporter reads the endpoint, headers, TLS and timeout from the OTEL_* variables.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider

    try:
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    except ImportError:
        # Only the router's image carries aiohttp and its instrumentation.
        pass
    else:
        AioHttpClientInstrumentor().instrument(tracer_provider=provider)

    logger.info("tracing on", extra={"otlp_endpoint": endpoint, "service_name": service})
    return True


def shutdown_tracing() -> None:
    """Export the spans still buffered and stop the tracer provider; a no-op when off."""
    global _provider

    if _provider is None:
        return
    try:
        _provider.shutdown()
    except Exception:
        logger.warning("could not flush the last spans", exc_info=True)
    _provider = None


def _traced(details: Any) -> bool:
    method = getattr(details, "method", "") or ""
    if isinstance(method, bytes):
        method = method.decode("ascii", "replace")
    return not method.startswith(_UNTRACED_PREFIXES)


def server_interceptors() -> list[Any]:
    """Return the grpc.aio server interceptors that trace incoming RPCs; empty when off."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_provider, filter_=_traced)]


def client_interceptors() -> list[Any]:
    """Return the grpc.aio client interceptors that trace outgoing RPCs; empty when off.

    They start a client span per call and send its context as ``traceparent`` metadata.
    """
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=_provider, filter_=_traced))


def current_trace_id() -> str:
    """Return the active span's trace id as 32 hex digits, or "" without a recording span."""
    if _provider is None:
        return ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return format(context.trace_id, "032x")
