"""Wiring shared by every service: the grpc.aio server, health, reflection, metrics,
the error and access-log interceptor, and graceful shutdown.

A service's ``server.py`` builds a :class:`ServiceSpec` and calls :func:`run`; tests call
:func:`start` to get a running server on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram, start_http_server

from libs import telemetry
from libs.errors import ERROR_BODY_METADATA, GatewayError, InternalError
from libs.logs import request_id_var, trace_id_var

logger = logging.getLogger(__name__)

# Large prompts (images as data URLs) exceed gRPC's 4 MiB default. Over the limit the
# client would get RESOURCE_EXHAUSTED, which maps to HTTP 429 and makes SDKs retry.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

RPC_REQUESTS = Counter(
    "aigw_grpc_server_requests_total",
    "RPCs handled, by service, method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
RPC_DURATION = Histogram(
    "aigw_grpc_server_request_duration_seconds",
    "Time to handle an RPC, in seconds.",
    ["grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

Registrar = Callable[[grpc.aio.Server], None]


@dataclass(frozen=True)
class ServiceSpec:
    """The services one process serves, and how it shuts down."""

    name: str
    """Short service name for logs and metrics, such as ``router``."""
    listen: str
    """``host:port`` to bind; port 0 picks a free port."""
    registrars: Sequence[Registrar]
    """Functions that add the business servicers to the server."""
    service_names: Sequence[str]
    """Full names of the business services, for health and reflection."""
    metrics_port: int | None = None
    """Port of the Prometheus endpoint (on 127.0.0.1 unless ``<NAME>_METRICS_ADDR`` is set); None disables it."""
    drain_s: float = 5.0
    """Seconds between reporting NOT_SERVING and stopping, so load balancers and Envoy
    stop sending new calls before the listener closes."""
    grace_s: float = 10.0
    """Seconds in-flight calls get to finish once the server stops."""
    on_stop: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)
    """Coroutines run after the server stopped, to close pools and flush buffers."""


@dataclass
class RunningServer:
    """A started server and its bound port."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    spec: ServiceSpec

    async def stop(self, drain_s: float | None = None) -> None:
        """Report NOT_SERVING, wait the drain period, stop with grace, then run ``on_stop``."""
        await self.health.enter_graceful_shutdown()
        drain = self.spec.drain_s if drain_s is None else drain_s
        if drain > 0:
            await asyncio.sleep(drain)
        await self.server.stop(self.spec.grace_s)
        for close in self.spec.on_stop:
            try:
                await close()
            except Exception:
                logger.exception("shutdown step failed", extra={"grpc_service": self.spec.name})


def wrap_handler(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """Return ``handler`` with the gateway's error mapping, RPC metrics and access log around it.

    GatewayError becomes a rich status; unknown exceptions become INTERNAL with a generic
    message, and the traceback goes to the log. Wrapped once at registration, so no
    interceptor step runs per call.
    """
    service_name, _, method_name = method.rpartition("/")
    service_name = service_name.lstrip("/")
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary, service_name, method_name),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(handler.unary_stream, service_name, method_name),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


class _WrappedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose method handlers are wrapped once, on their first call."""

    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self.inner = inner
        self.wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method not in self.wrapped:
            handler = self.inner.service(handler_call_details)
            self.wrapped[method] = wrap_handler(method, handler) if handler is not None else None
        return self.wrapped[method]


class _WrappingServer:
    """The server as the generated ``add_*_to_server`` functions see it: every method
    handler they register is wrapped by ``wrap_handler``."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.server.add_generic_rpc_handlers(tuple(_WrappedGenericHandler(handler) for handler in handlers))

    def add_registered_method_handlers(self, service_name: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.server.add_registered_method_handlers(
            service_name,
            {name: wrap_handler(f"/{service_name}/{name}", handler) for name, handler in handlers.items()},
        )


# The call's metadata as the wrapper read it: gRPC decodes it anew on every
# invocation_metadata() call (about 8 µs for 19 entries of 40 bytes, on a 2-core Xeon).
_metadata_var: contextvars.ContextVar[tuple[tuple[str, str | bytes], ...] | None] = contextvars.ContextVar(
    "invocation_metadata", default=None
)


def invocation_metadata(context: grpc.aio.ServicerContext) -> tuple[tuple[str, str | bytes], ...]:
    """Return the call's metadata, read once per call by the handler wrapper."""
    metadata = _metadata_var.get()
    if metadata is None:
        metadata = tuple(context.invocation_metadata() or ())
    return metadata


def _bind_ids(context: grpc.aio.ServicerContext) -> None:
    entries = tuple(context.invocation_metadata() or ())
    _metadata_var.set(entries)
    metadata = dict(entries)
    request_id = metadata.get("x-request-id") or uuid.uuid4().hex
    request_id_var.set(str(request_id))
    # With tracing on, the server span is active here and carries the caller's trace id.
    trace_id = telemetry.current_trace_id()
    if not trace_id:
        parts = str(metadata.get("traceparent", "")).split("-")
        trace_id = parts[1] if len(parts) == 4 else ""
    trace_id_var.set(trace_id)


async def _abort(context: grpc.aio.ServicerContext, error: GatewayError) -> None:
    status = error.to_status()
    await context.abort(
        error.grpc_code,
        error.message,
        trailing_metadata=(
            ("grpc-status-details-bin", status.SerializeToString()),
            (ERROR_BODY_METADATA, error.openai_body().decode("ascii")),
            # Lets a client quote the id of a failed request, as it can for a good one.
            ("x-request-id", request_id_var.get()),
        ),
    )


def _finish(service: str, method: str, code: grpc.StatusCode, started: float, error: BaseException | None) -> None:
    elapsed = time.perf_counter() - started
    _observe(service, method, code, elapsed)
    if error is None and code != grpc.StatusCode.CANCELLED and not logger.isEnabledFor(logging.DEBUG):
        return  # a call without an error logs its access line only at debug level
    expected = error is None or isinstance(error, GatewayError) and code != grpc.StatusCode.INTERNAL
    extra = {
        "grpc_service": service,
        "grpc_method": method,
        "grpc_code": code.name,
        "duration_ms": round(elapsed * 1000, 3),
    }
    if code == grpc.StatusCode.CANCELLED:
        # The caller went away or its deadline passed: normal for streams, not a fault here.
        logger.info("rpc cancelled", extra=extra)
    elif expected:
        if isinstance(error, GatewayError):
            extra["reason"] = error.reason
        logger.info("rpc finished", extra=extra)
    else:
        logger.error("rpc failed", extra=extra, exc_info=error)


# The metric children of each (service, method, code), looked up once.
_children: dict[tuple[str, str, grpc.StatusCode], tuple[Any, Any]] = {}


def _observe(service: str, method: str, code: grpc.StatusCode, elapsed_s: float) -> None:
    key = (service, method, code)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (
            RPC_REQUESTS.labels(service, method, code.name),
            RPC_DURATION.labels(service, method),
        )
    children[0].inc()
    children[1].observe(elapsed_s)


def _classify(exc: BaseException) -> tuple[GatewayError | None, grpc.StatusCode]:
    if isinstance(exc, GatewayError):
        return exc, exc.grpc_code
    if isinstance(exc, asyncio.CancelledError):
        return None, grpc.StatusCode.CANCELLED
    return InternalError("internal error; see the gateway logs", reason="INTERNAL"), grpc.StatusCode.INTERNAL


def _wrap_unary(behavior: Any, service: str, method: str) -> Any:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        _bind_ids(context)
        started = time.perf_counter()
        try:
            response = await behavior(request, context)
        except grpc.aio.AbortError:
            _finish(service, method, context.code() or grpc.StatusCode.UNKNOWN, started, None)
            raise
        except BaseException as exc:
            error, code = _classify(exc)
            _finish(service, method, code, started, exc)
            if error is None:
                raise
            await _abort(context, error)
            raise
        _finish(service, method, grpc.StatusCode.OK, started, None)
        return response

    return wrapper


def _wrap_stream(behavior: Any, service: str, method: str) -> Any:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        _bind_ids(context)
        started = time.perf_counter()
        try:
            async for item in behavior(request, context):
                yield item
        except grpc.aio.AbortError:
            _finish(service, method, context.code() or grpc.StatusCode.UNKNOWN, started, None)
            raise
        except BaseException as exc:
            error, code = _classify(exc)
            _finish(service, method, code, started, exc)
            if error is None:
                raise
            await _abort(context, error)
            raise
        _finish(service, method, grpc.StatusCode.OK, started, None)

    return wrapper


SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
    # Clients reconnect, and so re-resolve DNS and find new replicas, at least this often.
    # The grace lets a long LLM stream on the old connection finish.
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.max_connection_age_grace_ms", 600_000),
)

CLIENT_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 1),
    # With a `dns:///` target naming a headless Service, spread calls over every replica
    # instead of pinning the channel's one HTTP/2 connection to a single pod.
    ("grpc.lb_policy_name", "round_robin"),
)


class StartError(Exception):
    """A failure to start that the operator must fix. The message names the fix."""


class BindError(StartError, OSError):
    """A port the service must listen on could not be bound."""


async def start(spec: ServiceSpec) -> RunningServer:
    """Build, bind and start the server; return it with its port."""
    # The tracing interceptor runs around the wrapped handlers, so its span is active in them.
    server = grpc.aio.server(interceptors=telemetry.server_interceptors(), options=SERVER_OPTIONS)
    for register in spec.registrars:
        register(_WrappingServer(server))  # type: ignore[arg-type]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*spec.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        port = server.add_insecure_port(spec.listen)
    except RuntimeError:
        port = 0
    if port == 0:
        raise BindError(
            f"could not listen on {spec.listen}: the port is in use or the address is invalid; "
            f"set {spec.name.upper()}_LISTEN to a free address"
        )
    await server.start()
    for name in ("", *spec.service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, port=port, health=health_servicer, spec=spec)


async def run(spec: ServiceSpec, *, version: str, config_summary: dict[str, Any]) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    # Handlers first, so that a SIGTERM right after start still shuts down gracefully.
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    if spec.metrics_port is not None:
        address = telemetry.metrics_address(spec.name)
        try:
            start_http_server(spec.metrics_port, addr=address)
        except OSError as exc:
            raise BindError(
                f"could not serve metrics on {address}:{spec.metrics_port}: {exc.strerror}; "
                f"set {spec.name.upper()}_METRICS_PORT to a free port"
            ) from None
    running = await start(spec)
    logger.info(
        "serving",
        extra={
            "version": version,
            "address": spec.listen.rpartition(":")[0],
            "port": running.port,
            "metrics_port": spec.metrics_port,
            "config": config_summary,
        },
    )
    await stop_event.wait()
    logger.info("stopping", extra={"drain_s": spec.drain_s, "grace_s": spec.grace_s})
    await running.stop()
    logger.info("stopped")


def insecure_channel(address: str) -> grpc.aio.Channel:
    """Open a channel to another gateway service with the shared client options."""
    return grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS, interceptors=telemetry.client_interceptors())


def _reserve_ports(service: str, listen: str, metrics_port: int | None) -> list[socket.socket]:
    """Bind the service's ports while start-up opens client connections.

    Linux takes the source ports of outgoing connections from a range (32768 to 60999 by
    default) that contains the default ports, and skips ports that are bound. Without this, a
    database connection opened during start-up can take the port the server is about to
    listen on. Ports that cannot be bound are left to fail, with their own error, at start.
    """
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    addresses = [(host, int(port_text))] if port_text.isdigit() else []
    if metrics_port:
        addresses.append((telemetry.metrics_address(service), metrics_port))
    reserved = []
    for address, port in addresses:
        if port == 0:
            continue
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            sock.close()
            continue
        reserved.append(sock)
    return reserved


def main(
    name: str,
    load_config: Callable[[], Any],
    build: Callable[[Any], Awaitable[ServiceSpec]],
    summarize: Callable[[Any], dict[str, Any]],
    *,
    version: str,
) -> int:
    """Entry point of a service process: read config, configure logs, serve until signalled.

    Returns the exit code: 2 when the configuration is invalid, 1 when a port cannot be
    bound, 0 after a clean stop.
    """
    from libs import logs
    from libs.config import ConfigError

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    logs.configure(name, getattr(config, "log_level", "INFO"))
    # Before build, so that the clients it creates are traced too.
    telemetry.configure_tracing(name, version)

    async def serve() -> None:
        reserved = _reserve_ports(name, getattr(config, "listen", ""), getattr(config, "metrics_port", None))
        try:
            spec = await build(config)
        finally:
            for sock in reserved:
                sock.close()
        try:
            await run(spec, version=version, config_summary=summarize(config))
        finally:
            telemetry.shutdown_tracing()

    try:
        import uvloop
    except ImportError:
        runner: Callable[[Awaitable[None]], None] = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve())
    except StartError as exc:
        # A port in use, a refused address, a directory another process holds: one line
        # that names the setting, no traceback.
        logger.error("could not start", extra={"error": str(exc)})
        return 1
    return 0
