"""OpenAI to Cohere Chat v2 request translation, and Cohere responses and streams back."""

from __future__ import annotations

from typing import Any

import pytest

from services.router.translators.common import TranslationError
from services.router.translators.openai_cohere import (
    CohereStreamTranslator,
    map_finish_reason,
    to_cohere_request,
    to_openai_completion,
    to_openai_usage,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def translate(**request: Any) -> dict[str, Any]:
    request.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return to_cohere_request(request, model="command-a-03-2025")


def test_request_basic_fields() -> None:
    body = translate(
        temperature=0.4,
        top_p=0.8,
        seed=9,
        max_tokens=40,
        stop=["END", "STOP"],
        frequency_penalty=0.1,
        presence_penalty=0.2,
        user="u",
        logit_bias={"1": 1},
        stream=True,
    )
    assert body == {
        "model": "command-a-03-2025",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.4,
        "p": 0.8,
        "seed": 9,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "max_tokens": 40,
        "stop_sequences": ["END", "STOP"],
        "stream": True,
    }


def test_request_system_and_developer_in_order() -> None:
    body = translate(
        messages=[
            {"role": "system", "content": "One."},
            {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": "Three."},
        ]
    )
    assert body["messages"] == [
        {"role": "system", "content": "One."},
        {"role": "system", "content": "Two."},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Three."},
    ]


def test_request_images() -> None:
    body = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
    ]


def test_request_audio_part_rejected() -> None:
    with pytest.raises(TranslationError, match="not supported"):
        translate(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}])


def test_request_tools_and_choices() -> None:
    body = translate(tools=[WEATHER, TIME])
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city.",
                "parameters": WEATHER["function"]["parameters"],
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    assert "tool_choice" not in body
    assert "tool_choice" not in translate(tools=[WEATHER], tool_choice="auto")
    assert translate(tools=[WEATHER], tool_choice="required")["tool_choice"] == "REQUIRED"
    assert translate(tools=[WEATHER], tool_choice="none")["tool_choice"] == "NONE"
    named = translate(tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert named["tool_choice"] == "REQUIRED"
    assert [tool["function"]["name"] for tool in named["tools"]] == ["get_time"]


def test_request_named_tool_missing() -> None:
    with pytest.raises(TranslationError, match="not in tools"):
        translate(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "other"}})


def test_request_tool_calls_and_results() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    body = translate(
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "18"}]},
        ]
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "tool_plan": "Let me look.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    }
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "18"}


def test_request_tool_result_without_call() -> None:
    with pytest.raises(TranslationError, match="matches no earlier"):
        translate(messages=[{"role": "user", "content": "Hi"}, {"role": "tool", "tool_call_id": "x", "content": "y"}])


def test_request_invalid_tool_arguments() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
    with pytest.raises(TranslationError, match="not valid JSON"):
        translate(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "tool_calls": [call]}])


def test_request_response_format() -> None:
    assert translate(response_format={"type": "json_object"})["response_format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = translate(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert body["response_format"] == {"type": "json_object", "json_schema": schema}


def test_request_rejects_n() -> None:
    with pytest.raises(TranslationError, match="n must be 1"):
        translate(n=2)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TOOL_CALL", "tool_calls"),
        (None, None),
    ],
)
def test_finish_reason_mapping(reason: str | None, expected: str | None) -> None:
    assert map_finish_reason(reason) == expected


def test_usage_prefers_billed_units() -> None:
    usage = to_openai_usage(
        {
            "billed_units": {"input_tokens": 10, "output_tokens": 5},
            "tokens": {"input_tokens": 210, "output_tokens": 5},
            "cached_tokens": 4,
        }
    )
    assert usage == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    assert to_openai_usage({"tokens": {"input_tokens": 3, "output_tokens": 2}})["total_tokens"] == 5


def test_response_text_and_thinking() -> None:
    answer = to_openai_completion(
        {
            "id": "abc",
            "finish_reason": "COMPLETE",
            "message": {
                "role": "assistant",
                "content": [{"type": "thinking", "thinking": "Hmm."}, {"type": "text", "text": "Hello."}],
            },
            "usage": {"billed_units": {"input_tokens": 2, "output_tokens": 3}},
        },
        model="command-a",
    )
    assert answer["id"] == "abc"
    assert answer["choices"][0]["message"]["content"] == "Hello."
    assert answer["choices"][0]["message"]["reasoning_content"] == "Hmm."
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["total_tokens"] == 5


def test_response_tool_call_with_plan() -> None:
    answer = to_openai_completion(
        {
            "id": "abc",
            "finish_reason": "TOOL_CALL",
            "message": {
                "role": "assistant",
                "tool_plan": "I will check.",
                "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
            },
        },
        model="command-a",
    )
    message = answer["choices"][0]["message"]
    assert message["content"] == "I will check."
    assert message["tool_calls"] == [
        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"


def run_stream(events: list[dict[str, Any]]) -> tuple[CohereStreamTranslator, list[dict[str, Any]]]:
    translator = CohereStreamTranslator(model="command-a")
    chunks = [chunk for event in events for chunk in translator.translate(event)]
    return translator, chunks


def test_stream_text_and_usage() -> None:
    translator, chunks = run_stream(
        [
            {"type": "message-start", "id": "m1", "delta": {"message": {"role": "assistant"}}},
            {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
            {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hel"}}}},
            {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "lo"}}}},
            {"type": "content-end", "index": 0},
            {
                "type": "message-end",
                "delta": {
                    "finish_reason": "COMPLETE",
                    "usage": {"billed_units": {"input_tokens": 4, "output_tokens": 2}},
                },
            },
        ]
    )
    assert translator.finished
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Hello"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 4
    assert {chunk["id"] for chunk in chunks} == {"m1"}


def test_stream_tool_arguments_concatenate_exactly() -> None:
    pieces = ['{"ci', 'ty": "Pa', 'ris"}']
    events: list[dict[str, Any]] = [
        {"type": "message-start", "id": "m1"},
        {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "Checking."}}},
        {
            "type": "tool-call-start",
            "index": 0,
            "delta": {
                "message": {
                    "tool_calls": {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
                }
            },
        },
    ]
    events += [
        {
            "type": "tool-call-delta",
            "index": 0,
            "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}},
        }
        for piece in pieces
    ]
    events += [{"type": "tool-call-end", "index": 0}, {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL"}}]

    _, chunks = run_stream(events)

    calls = [call for c in chunks if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["id"] == "t1"
    assert calls[0]["function"]["name"] == "get_weather"
    assert {call["index"] for call in calls} == {0}
    assert "".join(call["function"]["arguments"] for call in calls) == '{"city": "Paris"}'
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Checking."
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


def test_stream_usage_merge_keeps_absent_values() -> None:
    translator = CohereStreamTranslator(model="m")
    translator.usage = {"billed_units": {"input_tokens": 9}}
    chunks = translator.translate(
        {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {"billed_units": {"output_tokens": 2}}}}
    )
    assert chunks[-1]["usage"]["prompt_tokens"] == 9
    assert chunks[-1]["usage"]["completion_tokens"] == 2


def test_stream_failed_generation() -> None:
    translator, chunks = run_stream(
        [{"type": "message-start"}, {"type": "message-end", "delta": {"finish_reason": "ERROR"}}]
    )
    assert translator.failed_reason == "ERROR"
    assert len(chunks) == 1


def test_stream_without_message_end_is_unfinished() -> None:
    translator, _ = run_stream([{"type": "message-start"}])
    assert not translator.finished
