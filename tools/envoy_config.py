"""Render the Envoy edge configuration from ``deploy/envoy/``.

Both the local launcher (``tools/stack.py``) and deployment tooling call
:func:`render_envoy_config`; the second passes cluster DNS names instead of 127.0.0.1.

Usage: ``python -m tools.envoy_config --router HOST:PORT --security HOST:PORT
--descriptor PATH [--listen HOST:PORT] [--admin HOST:PORT] [--otlp-endpoint HOST:PORT]
> envoy.yaml``
"""

from __future__ import annotations

import argparse
import json
import string
from pathlib import Path
from typing import Any

ENVOY_DIR = Path(__file__).resolve().parent.parent / "deploy" / "envoy"
TEMPLATE = ENVOY_DIR / "envoy.yaml.tmpl"
LUA_SOURCE = ENVOY_DIR / "edge.lua"

MIB = 1024 * 1024
# Request and response bodies the edge buffers: prompts with base64 images run to
# tens of MiB. The router's gRPC max_receive_message_length must be at least as large.
DEFAULT_MAX_BODY_BYTES = 32 * MIB
# Matches the OpenAI Python SDK's default client timeout of 600 s, so the edge does not
# cut a slow response the client is still waiting for.
DEFAULT_STREAM_IDLE_TIMEOUT_S = 600.0
DEFAULT_AUTHZ_TIMEOUT_S = 3.0
DEFAULT_MAX_CONNECTIONS = 50_000


def split_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` into its parts; raise ValueError naming the value when invalid."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid address {address!r}: expected HOST:PORT")
    return host, int(port)


def _status_filter(status: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": status, "runtime_key": f"aigw.local_reply.{status}"},
            }
        }
    }


def _status_at_least(status: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "GE",
                "value": {"default_value": status, "runtime_key": f"aigw.local_reply.ge{status}"},
            }
        }
    }


# gRPC clients get Envoy's own replies as grpc-status and grpc-message: leave them alone.
# edge.lua marks their requests, because the request's content-type cannot tell: the
# transcoder rewrites it to application/grpc on REST requests as well.
_GRPC_CLIENT = {
    "metadata_filter": {
        "matcher": {
            "filter": "aigw.edge",
            "path": [{"key": "grpc_client"}],
            "value": {"bool_match": True},
        },
        "match_if_key_not_found": False,
    }
}
_EXT_AUTHZ = {"response_flag_filter": {"flags": ["UAEX"]}}


def _openai_body(message: str, error_type: str, code: str | None) -> dict[str, Any]:
    return {
        "json_format": {
            "error": {"message": message, "type": error_type, "param": None, "code": code}
        },
        "content_type": "application/json",
        "formatters": [
            {
                "name": "envoy.formatter.req_without_query",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.formatter"
                    ".req_without_query.v3.ReqWithoutQuery"
                },
            }
        ],
    }


def _mapper(
    conditions: list[dict[str, Any]], message: str, error_type: str, code: str | None
) -> dict[str, Any]:
    return {
        "filter": conditions[0]
        if len(conditions) == 1
        else {"and_filter": {"filters": conditions}},
        "body_format_override": _openai_body(message, error_type, code),
    }


def local_reply_mappers(
    max_body_bytes: int, stream_idle_timeout_s: float = DEFAULT_STREAM_IDLE_TIMEOUT_S
) -> list[dict[str, Any]]:
    """Return the ``local_reply_config`` mappers that give Envoy's own replies OpenAI's shape.

    The first matching mapper applies, and one without a body format changes nothing:
    replies to gRPC clients and ext_authz denials (whose body the security service
    wrote) keep their body.
    """
    limit_mib = max_body_bytes / MIB
    return [
        {"filter": _GRPC_CLIENT},
        _mapper(
            [_EXT_AUTHZ, _status_filter(503)],
            "The authorization service is unavailable. Retry the request later.",
            "server_error",
            "service_unavailable",
        ),
        {"filter": _EXT_AUTHZ},
        _mapper(
            [_status_filter(404)],
            "Invalid URL (%REQ(:METHOD)% %REQ_WITHOUT_QUERY(:PATH)%)",
            "invalid_request_error",
            None,
        ),
        _mapper(
            [_status_filter(413)],
            f"The request body exceeds the gateway's limit of {limit_mib:g} MiB.",
            "invalid_request_error",
            "request_too_large",
        ),
        _mapper(
            [_status_filter(408)],
            "The request timed out before the gateway received it whole.",
            "invalid_request_error",
            "timeout",
        ),
        _mapper(
            [_status_filter(503)],
            "The gateway could not reach the model router. Retry the request later.",
            "server_error",
            "service_unavailable",
        ),
        _mapper(
            [_status_filter(504)],
            "The model router sent no data for longer than the gateway's idle timeout"
            f" of {stream_idle_timeout_s:g} s.",
            "server_error",
            "timeout",
        ),
        _mapper(
            [_status_at_least(500)],
            "%LOCAL_REPLY_BODY%",
            "server_error",
            "internal_error",
        ),
        _mapper(
            [_status_at_least(400)],
            "%LOCAL_REPLY_BODY%",
            "invalid_request_error",
            "invalid_request",
        ),
    ]


def tracing_config(otlp_endpoint: str, service_name: str, sampling_percent: float) -> dict[str, Any]:
    """Return the connection manager's ``tracing`` block for Envoy's OpenTelemetry tracer.

    Envoy starts a span per request, exports it over OTLP/gRPC to the ``otel_collector``
    cluster and sends W3C ``traceparent`` upstream, to the router and to ext_authz.
    """
    split_address(otlp_endpoint)
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": "otel_collector"}, "timeout": "1s"},
                "service_name": service_name,
            },
        },
        "random_sampling": {"value": sampling_percent},
        "spawn_upstream_span": True,
    }


def tracing_cluster(otlp_endpoint: str) -> dict[str, Any]:
    """Return the cluster of the OTLP/gRPC collector at ``otlp_endpoint`` (``host:port``)."""
    host, port = split_address(otlp_endpoint)
    return {
        "name": "otel_collector",
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": "otel_collector",
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}
            ],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }


def _otlp_host_port(endpoint: str) -> str:
    # OTEL_EXPORTER_OTLP_ENDPOINT is a URL (http://collector:4317); Envoy needs host:port.
    return endpoint.split("://", 1)[-1].rstrip("/")


def _duration(seconds: float) -> str:
    return json.dumps(f"{seconds:g}s")


def render_envoy_config(
    *,
    router_address: str,
    security_address: str,
    descriptor_path: str | Path,
    listen_address: str = "127.0.0.1:8080",
    admin_address: str = "127.0.0.1:9901",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    stream_idle_timeout_s: float = DEFAULT_STREAM_IDLE_TIMEOUT_S,
    authz_timeout_s: float = DEFAULT_AUTHZ_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    otlp_endpoint: str | None = None,
    tracing_service_name: str = "edge",
    trace_sampling_percent: float = 100.0,
) -> str:
    """Return the edge's Envoy configuration as YAML text.

    ``router_address`` and ``security_address`` are ``host:port`` of the gRPC services
    (an IP address or a DNS name). ``descriptor_path`` is the descriptor set written by
    ``python -m tools.protos descriptor``, as a path Envoy can read at startup.
    ``otlp_endpoint`` (``host:port`` or an ``http://host:port`` URL of an OTLP/gRPC
    collector) turns tracing on; without it the configuration has no tracing at all.
    """
    listen_host, listen_port = split_address(listen_address)
    admin_host, admin_port = split_address(admin_address)
    router_host, router_port = split_address(router_address)
    security_host, security_port = split_address(security_address)

    values = {
        "listen_address": json.dumps(listen_host),
        "listen_port": listen_port,
        "admin_address": json.dumps(admin_host),
        "admin_port": admin_port,
        "router_host": json.dumps(router_host),
        "router_port": router_port,
        "security_host": json.dumps(security_host),
        "security_port": security_port,
        "descriptor_path": json.dumps(str(descriptor_path)),
        # The connection buffer must hold a whole request body plus its headers.
        "buffer_limit_bytes": max_body_bytes + MIB,
        "max_body_bytes": max_body_bytes,
        "stream_idle_timeout": _duration(stream_idle_timeout_s),
        "authz_timeout": _duration(authz_timeout_s),
        "max_connections": max_connections,
        # JSON is valid YAML, so lists and the Lua source go in as JSON flow values.
        "local_reply_mappers": json.dumps(
            local_reply_mappers(max_body_bytes, stream_idle_timeout_s)
        ),
        "lua_source": json.dumps(LUA_SOURCE.read_text()),
        "tracing": "",
        "tracing_cluster": "",
    }
    if otlp_endpoint:
        endpoint = _otlp_host_port(otlp_endpoint)
        tracing = tracing_config(endpoint, tracing_service_name, trace_sampling_percent)
        values["tracing"] = "          tracing: " + json.dumps(tracing)
        values["tracing_cluster"] = "  - " + json.dumps(tracing_cluster(endpoint))
    return string.Template(TEMPLATE.read_text()).substitute(values)


def main() -> int:
    parser = argparse.ArgumentParser(description="Print the Envoy edge configuration.")
    parser.add_argument("--router", required=True, help="router gRPC address, HOST:PORT")
    parser.add_argument("--security", required=True, help="security gRPC address, HOST:PORT")
    parser.add_argument("--descriptor", required=True, help="path of the descriptor set (.binpb)")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="public listener, HOST:PORT")
    parser.add_argument("--admin", default="127.0.0.1:9901", help="admin listener, HOST:PORT")
    parser.add_argument(
        "--max-body-mib",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES // MIB,
        help="maximum request or response body the edge buffers, in MiB (default 32)",
    )
    parser.add_argument(
        "--otlp-endpoint",
        default=None,
        help="OTLP/gRPC collector, HOST:PORT or http://HOST:PORT; turns tracing on (default off)",
    )
    args = parser.parse_args()

    print(
        render_envoy_config(
            router_address=args.router,
            security_address=args.security,
            descriptor_path=args.descriptor,
            listen_address=args.listen,
            admin_address=args.admin,
            max_body_bytes=args.max_body_mib * MIB,
            otlp_endpoint=args.otlp_endpoint,
        ),
        end="",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
