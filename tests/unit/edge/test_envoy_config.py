"""The rendered Envoy edge configuration, read as YAML (no Envoy started)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tools.envoy_config import LUA_SOURCE, MIB, render_envoy_config, split_address


def _render(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "router_address": "127.0.0.1:50051",
        "security_address": "127.0.0.1:50052",
        "descriptor_path": "/srv/aigateway.binpb",
    }
    arguments.update(overrides)
    return yaml.safe_load(render_envoy_config(**arguments))


def _manager(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def _filters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f["typed_config"] for f in _manager(config)["http_filters"]}


def _cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in config["static_resources"]["clusters"] if c["name"] == name)


def test_defaults_listen_on_loopback() -> None:
    config = _render()

    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    admin = config["admin"]["address"]["socket_address"]
    assert listener == {"address": "127.0.0.1", "port_value": 8080}
    assert admin == {"address": "127.0.0.1", "port_value": 9901}


def test_placeholders_are_all_filled() -> None:
    text = render_envoy_config(
        router_address="r:1", security_address="s:2", descriptor_path="/d.binpb"
    )

    unfilled = [
        line for line in text.splitlines() if "${" in line and not line.lstrip().startswith("#")
    ]
    assert unfilled == []


def test_filter_order() -> None:
    names = [f["name"] for f in _manager(_render())["http_filters"]]

    assert names == [
        "envoy.filters.http.lua",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.router",
    ]


def test_lua_source_is_inlined() -> None:
    lua = _filters(_render())["envoy.filters.http.lua"]

    assert lua["default_source_code"]["inline_string"] == LUA_SOURCE.read_text()


def test_ext_authz_fails_closed() -> None:
    authz = _filters(_render(authz_timeout_s=1.5))["envoy.filters.http.ext_authz"]

    assert authz["failure_mode_allow"] is False
    assert authz["transport_api_version"] == "V3"
    assert authz["status_on_error"] == {"code": "ServiceUnavailable"}
    assert authz["grpc_service"]["envoy_grpc"]["cluster_name"] == "security"
    assert authz["grpc_service"]["timeout"] == "1.5s"
    assert {"exact": "authorization"} in authz["allowed_headers"]["patterns"]


def test_transcoder_options() -> None:
    transcoder = _filters(_render(max_body_bytes=8 * MIB, descriptor_path="/x/d.binpb"))[
        "envoy.filters.http.grpc_json_transcoder"
    ]

    assert transcoder["proto_descriptor"] == "/x/d.binpb"
    assert transcoder["services"] == [
        "aigateway.router.v1.RouterService",
        "aigateway.chat.v1.ChatService",
    ]
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["ignore_unknown_query_parameters"] is True
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert transcoder["max_request_body_size"] == 8 * MIB
    assert transcoder["max_response_body_size"] == 8 * MIB


def test_buffer_limit_exceeds_body_limit() -> None:
    config = _render(max_body_bytes=8 * MIB)

    listener = config["static_resources"]["listeners"][0]
    assert listener["per_connection_buffer_limit_bytes"] > 8 * MIB
    assert _cluster(config, "router")["per_connection_buffer_limit_bytes"] > 8 * MIB


def test_routes_have_no_overall_timeout() -> None:
    config = _render(stream_idle_timeout_s=900)

    routes = _manager(config)["route_config"]["virtual_hosts"][0]["routes"]
    forwarded = [route["route"] for route in routes if "route" in route]
    assert len(forwarded) == 2
    for route in forwarded:
        assert route["cluster"] == "router"
        assert route["timeout"] == "0s"
        assert route["idle_timeout"] == "900s"
    assert _manager(config)["stream_idle_timeout"] == "900s"


def test_clusters_take_dns_names() -> None:
    config = _render(
        router_address="router.aigw.svc.cluster.local:50051",
        security_address="security.aigw.svc.cluster.local:50052",
    )

    for name, host, port in [
        ("router", "router.aigw.svc.cluster.local", 50051),
        ("security", "security.aigw.svc.cluster.local", 50052),
    ]:
        cluster = _cluster(config, name)
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert cluster["type"] == "STRICT_DNS"
        assert endpoint["address"]["socket_address"] == {"address": host, "port_value": port}
        options = cluster["typed_extension_protocol_options"]
        http_options = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        assert "http2_protocol_options" in http_options["explicit_http_config"]


def test_local_replies_leave_grpc_and_denials_alone() -> None:
    mappers = _manager(_render())["local_reply_config"]["mappers"]

    assert mappers[0] == {
        "filter": {
            "metadata_filter": {
                "matcher": {
                    "filter": "aigw.edge",
                    "path": [{"key": "grpc_client"}],
                    "value": {"bool_match": True},
                },
                "match_if_key_not_found": False,
            }
        }
    }
    assert mappers[2] == {"filter": {"response_flag_filter": {"flags": ["UAEX"]}}}


def test_local_replies_use_openai_shape() -> None:
    mappers = _manager(_render(max_body_bytes=16 * MIB))["local_reply_config"]["mappers"]

    shaped = [m["body_format_override"] for m in mappers if "body_format_override" in m]
    too_large = next(
        f["json_format"]["error"]
        for f in shaped
        if f["json_format"]["error"]["code"] == "request_too_large"
    )
    assert all(f["content_type"] == "application/json" for f in shaped)
    assert all(
        set(f["json_format"]["error"]) == {"message", "type", "param", "code"} for f in shaped
    )
    assert too_large["message"] == "The request body exceeds the gateway's limit of 16 MiB."


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("router.ns.svc:50051", ("router.ns.svc", 50051))],
)
def test_split_address_valid(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize(
    "address", ["localhost", ":8080", "host:", "host:0", "host:70000", "host:http"]
)
def test_split_address_invalid(address: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        split_address(address)


def test_downstream_connections_are_capped() -> None:
    config = _render(max_connections=1234)

    monitor = config["overload_manager"]["resource_monitors"][0]
    assert monitor["name"] == "envoy.resource_monitors.global_downstream_max_connections"
    assert monitor["typed_config"]["max_active_downstream_connections"] == 1234
