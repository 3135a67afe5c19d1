"""Tests for the OpenAI to Anthropic translator, both directions."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.router.translators.openai_anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicStreamTranslator,
    TranslationError,
    map_stop_reason,
    merge_usage,
    to_anthropic_request,
    to_openai_completion,
    to_openai_usage,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def translate(**request: Any) -> dict[str, Any]:
    request.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return to_anthropic_request(request, model="claude-test")


def test_request_basic_fields() -> None:
    body = translate(temperature=0.3, top_p=0.9, user="user-123", stream=True, seed=7)
    assert body == {
        "model": "claude-test",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.3,
        "top_p": 0.9,
        "stream": True,
        "metadata": {"user_id": "user-123"},
    }


def test_request_max_tokens_sources() -> None:
    assert translate(max_tokens=50)["max_tokens"] == 50
    assert translate(max_completion_tokens=70, max_tokens=50)["max_tokens"] == 70
    with pytest.raises(TranslationError, match="positive integer"):
        translate(max_tokens=0)


def test_request_system_and_developer_in_order() -> None:
    body = translate(
        messages=[
            {"role": "system", "content": "Rule one."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Rule two."}]},
            {"role": "assistant", "content": "Hello"},
            {"role": "system", "content": "Rule three."},
            {"role": "user", "content": "Again"},
        ]
    )
    assert body["system"] == [
        {"type": "text", "text": "Rule one."},
        {"type": "text", "text": "Rule two."},
        {"type": "text", "text": "Rule three."},
    ]
    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Again"},
    ]


def test_request_images() -> None:
    body = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,QUJD"}},
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
    ]


def test_request_unsupported_image_type() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,QUJD"}}
    with pytest.raises(TranslationError, match="image/tiff"):
        translate(messages=[{"role": "user", "content": [image]}])


def test_request_audio_part_rejected() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "QUJD", "format": "wav"}}
    with pytest.raises(TranslationError, match="input_audio"):
        translate(messages=[{"role": "user", "content": [part]}])


def test_request_tools_and_choices() -> None:
    body = translate(tools=[WEATHER_TOOL], tool_choice="auto")
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "auto"}
    assert translate(tools=[WEATHER_TOOL], tool_choice="none")["tool_choice"] == {"type": "none"}
    assert translate(tools=[WEATHER_TOOL], tool_choice="required")["tool_choice"] == {"type": "any"}
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert translate(tools=[WEATHER_TOOL], tool_choice=named)["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
    }
    assert "tool_choice" not in translate(tools=[WEATHER_TOOL])


def test_request_parallel_tool_calls_off() -> None:
    body = translate(tools=[WEATHER_TOOL], parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_request_tool_choice_without_tools_dropped() -> None:
    assert "tool_choice" not in translate(tool_choice="required")


def test_request_tool_calls_and_results_matched() -> None:
    body = translate(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call.2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            {
                "role": "tool",
                "tool_call_id": "call.2",
                "content": [{"type": "text", "text": "21 C"}],
            },
            {"role": "user", "content": "Which is warmer?"},
        ]
    )
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18 C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": [{"type": "text", "text": "21 C"}],
                },
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]


def test_request_tool_result_without_call() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "tool", "tool_call_id": "call_9", "content": "x"},
    ]
    with pytest.raises(TranslationError, match="call_9"):
        translate(messages=messages)


def test_request_invalid_tool_arguments() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "tool_calls": [call]}]
    with pytest.raises(TranslationError, match="not valid JSON"):
        translate(messages=messages)


def test_request_stop_sequences() -> None:
    assert translate(stop="END")["stop_sequences"] == ["END"]
    assert translate(stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert "stop_sequences" not in translate(stop=None)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("n", 2, "n must be 1"),
        ("response_format", {"type": "json_object"}, "json_object"),
        ("messages", [], "non-empty"),
        ("messages", [{"role": "function", "content": "x"}], "'function' is not supported"),
    ],
)
def test_request_unsupported(field: str, value: Any, problem: str) -> None:
    with pytest.raises(TranslationError, match=problem):
        translate(**{field: value})


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, None),
    ],
)
def test_stop_reason_mapping(reason: str | None, expected: str | None) -> None:
    assert map_stop_reason(reason) == expected


def test_response_text() -> None:
    completion = to_openai_completion(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}],
            "stop_reason": "max_tokens",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4},
        }
    )
    assert completion["object"] == "chat.completion"
    assert completion["id"] == "msg_1"
    assert completion["model"] == "claude-test"
    choice = completion["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello there", "refusal": None}
    assert choice["finish_reason"] == "length"
    assert completion["usage"] == {
        "prompt_tokens": 14,
        "completion_tokens": 5,
        "total_tokens": 19,
        "prompt_tokens_details": {"cached_tokens": 4},
    }


def test_response_tool_use() -> None:
    completion = to_openai_completion(
        {
            "id": "msg_2",
            "model": "claude-test",
            "content": [
                {"type": "thinking", "thinking": "hidden"},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 3, "output_tokens": 2},
        }
    )
    message = completion["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"


def test_usage_merge_keeps_absent_values() -> None:
    usage: dict[str, Any] = {}
    merge_usage(usage, {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 4})
    merge_usage(usage, {"output_tokens": 20, "input_tokens": None})
    assert usage == {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 4}
    merge_usage(usage, {"input_tokens": 12})
    assert to_openai_usage(usage)["prompt_tokens"] == 16


STREAM_EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_s",
            "model": "claude-test",
            "content": [],
            "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 4},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "check."}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": ""},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"ci'},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": 'ty": "Pa'},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": 'ris"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 30},
    },
    {"type": "message_stop"},
]


def run_stream(
    events: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], AnthropicStreamTranslator]:
    translator = AnthropicStreamTranslator()
    chunks: list[dict[str, Any]] = []
    for event in events:
        chunks.extend(translator.translate(event))
    return chunks, translator


def test_stream_chunks_shape() -> None:
    chunks, translator = run_stream(STREAM_EVENTS)
    assert translator.finished is True
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk["id"] == "msg_s" and chunk["model"] == "claude-test" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}

    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    assert text == "Let me check."

    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [reason for reason in finishes if reason] == ["tool_calls"]


def test_stream_tool_arguments_concatenate_exactly() -> None:
    chunks, _ = run_stream(STREAM_EVENTS)
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls") or []:
                entry = calls.setdefault(call["index"], {"arguments": ""})
                if "id" in call:
                    entry["id"] = call["id"]
                    entry["name"] = call["function"]["name"]
                entry["arguments"] += call["function"].get("arguments", "")
    assert calls == {
        0: {"id": "toolu_a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "toolu_b", "name": "get_time", "arguments": "{}"},
    }
    assert orjson.loads(calls[0]["arguments"]) == {"city": "Paris"}


def test_stream_final_usage_chunk() -> None:
    chunks, _ = run_stream(STREAM_EVENTS)
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"] == {
        "prompt_tokens": 14,
        "completion_tokens": 30,
        "total_tokens": 44,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    assert all("usage" not in chunk for chunk in chunks[:-1])


def test_stream_without_message_stop_is_unfinished() -> None:
    _, translator = run_stream(STREAM_EVENTS[:-1])
    assert translator.finished is False
