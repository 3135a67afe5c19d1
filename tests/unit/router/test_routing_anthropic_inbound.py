"""Translation of inbound Anthropic Messages requests, answers, streams and errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from libs.errors import InvalidRequestError, NotFoundError, ResourceExhaustedError, UnavailableError
from services.router.translators.anthropic_openai import (
    AnthropicStreamWriter,
    anthropic_error_body,
    to_anthropic_message,
    to_openai_request,
)


def test_request_with_system_tools_and_results() -> None:
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 256,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units."}],
        "temperature": 0.2,
        "top_k": 5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1", "aigw_provider": "openai"},
        "tools": [{"name": "get_weather", "description": "Weather.", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "...", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "4 C"}]},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
    }
    assert to_openai_request(body) == {
        "model": "gpt-4o-mini",
        "max_tokens": 256,
        "temperature": 0.2,
        "stop": ["END"],
        "user": "u-1",
        "metadata": {"aigw_provider": "openai"},
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}, "description": "Weather."},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "messages": [
            {"role": "system", "content": "Be brief.\n\nUse metric units."},
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "4 C"},
            {"role": "user", "content": "And tomorrow?"},
        ],
    }


def test_request_image_and_error_result() -> None:
    body = {
        "model": "m",
        "max_tokens": 10,
        "stream": True,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                    {"type": "text", "text": "What is this?"},
                    {"type": "tool_result", "tool_use_id": "t1", "content": "timeout", "is_error": True},
                ],
            }
        ],
    }
    request = to_openai_request(body)
    assert request["stream"] is True
    assert request["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "Error: timeout"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                {"type": "text", "text": "What is this?"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"max_tokens": 1, "messages": []}, "model", "model: Field required"),
        ({"model": "m", "messages": []}, "max_tokens", "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 0, "messages": []}, "max_tokens", "max_tokens: must be at least 1, got 0"),
        ({"model": "m", "max_tokens": 1}, "messages", "messages: Field required"),
        (
            {"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]},
            "messages.0.role",
            "messages.0.role: expected 'user' or 'assistant', got 'system'",
        ),
        (
            {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "messages.0.content.0.type",
            "messages.0.content.0.type: 'audio' is not supported in a user turn",
        ),
    ],
)
def test_invalid_request(body: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        to_openai_request(body)
    assert caught.value.param == param
    assert caught.value.message == message


def test_completion_to_message() -> None:
    completion = {
        "id": "chatcmpl-abc",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 30, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 10}},
    }
    assert to_anthropic_message(completion, "claude-x") == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "output_tokens": 7,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 10,
        },
    }


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"), (None, "end_turn")],
)
def test_stop_reasons(finish: str | None, stop_reason: str) -> None:
    completion = {"id": "x", "choices": [{"message": {"content": "a"}, "finish_reason": finish}]}
    assert to_anthropic_message(completion, "m")["stop_reason"] == stop_reason


def events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    parsed = []
    for block in data.decode().split("\n\n"):
        if block.strip():
            name_line, data_line = block.split("\n")
            parsed.append((name_line.removeprefix("event: "), orjson.loads(data_line.removeprefix("data: "))))
    return parsed


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-9", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_stream_text_then_tool_call() -> None:
    writer = AnthropicStreamWriter("m")
    data = writer.start("chatcmpl-9")
    data += writer.feed(chunk({"role": "assistant", "content": ""}))
    data += writer.feed(chunk({"content": "Hi"}))
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    data += writer.feed(chunk({"tool_calls": [call]}))
    data += writer.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}))
    data += writer.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}))
    data += writer.feed(chunk({}, "tool_calls"))
    data += writer.feed({"id": "chatcmpl-9", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}})
    data += writer.finish()

    assert events(data) == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_9",
                    "type": "message",
                    "role": "assistant",
                    "model": "m",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            },
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "call_1", "name": "f", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {
                    "input_tokens": 12,
                    "output_tokens": 5,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


@pytest.mark.parametrize(
    ("error", "status_type"),
    [
        (InvalidRequestError("bad", reason="INVALID_REQUEST"), "invalid_request_error"),
        (NotFoundError("missing", reason="MODEL_NOT_FOUND"), "not_found_error"),
        (ResourceExhaustedError("slow down", reason="UPSTREAM_RATE_LIMITED"), "rate_limit_error"),
        (UnavailableError("down", reason="UPSTREAM_UNAVAILABLE"), "overloaded_error"),
    ],
)
def test_error_body(error: Any, status_type: str) -> None:
    body = orjson.loads(anthropic_error_body(error))
    assert body == {"type": "error", "error": {"type": status_type, "message": error.message}}


def test_error_event() -> None:
    data = AnthropicStreamWriter.error(UnavailableError("the provider failed", reason="X"))
    assert events(data) == [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "the provider failed"}})
    ]
