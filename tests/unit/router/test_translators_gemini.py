"""OpenAI to Gemini request translation, and Gemini responses and streams back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.router.translators.common import TranslationError
from services.router.translators.openai_gemini import (
    GeminiStreamTranslator,
    map_finish_reason,
    to_gemini_request,
    to_openai_completion,
    to_openai_usage,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def translate(**request: Any) -> dict[str, Any]:
    request.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return to_gemini_request(request)


def test_request_generation_config() -> None:
    body = translate(
        temperature=0.3,
        top_p=0.9,
        max_tokens=99,
        max_completion_tokens=50,
        stop="END",
        seed=5,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        n=2,
        user="u-1",
    )
    assert body["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "seed": 5,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
        "candidateCount": 2,
    }
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    assert "user" not in body


def test_request_system_and_developer_in_order() -> None:
    body = translate(
        messages=[
            {"role": "system", "content": "First."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Second."}]},
            {"role": "assistant", "content": "Hello"},
            {"role": "system", "content": "Third."},
            {"role": "user", "content": "Bye"},
        ]
    )
    assert body["systemInstruction"] == {"parts": [{"text": "First."}, {"text": "Second."}, {"text": "Third."}]}
    assert [content["role"] for content in body["contents"]] == ["user", "model", "user"]


def test_request_consecutive_roles_merge() -> None:
    body = translate(messages=[{"role": "user", "content": "One"}, {"role": "user", "content": "Two"}])
    assert body["contents"] == [{"role": "user", "parts": [{"text": "One"}, {"text": "Two"}]}]


def test_request_images() -> None:
    body = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
                    {"type": "input_audio", "input_audio": {"data": "BBBB", "format": "wav"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,CCCC"}},
                ],
            }
        ]
    )
    assert body["contents"][0]["parts"] == [
        {"text": "Compare"},
        {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "BBBB"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "CCCC"}},
    ]


def test_request_image_url_not_base64() -> None:
    with pytest.raises(TranslationError, match="base64"):
        translate(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xyz"}}],
                }
            ]
        )


def test_request_tools_and_choices() -> None:
    body = translate(tools=[WEATHER], tool_choice="auto")
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city.",
                    "parameters": WEATHER["function"]["parameters"],
                }
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert translate(tools=[WEATHER], tool_choice="none")["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    assert translate(tools=[WEATHER], tool_choice="required")["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY"}
    }
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert translate(tools=[WEATHER], tool_choice=named)["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert "toolConfig" not in translate(tools=[WEATHER])


def test_request_json_schema_outside_subset() -> None:
    strict = {
        "type": "object",
        "properties": {"city": {"type": ["string", "null"]}},
        "additionalProperties": False,
    }
    tool = {"type": "function", "function": {"name": "f", "parameters": strict}}
    body = translate(tools=[tool])
    assert body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == strict


def test_request_response_format() -> None:
    assert translate(response_format={"type": "json_object"})["generationConfig"] == {
        "responseMimeType": "application/json"
    }
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    config = translate(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})[
        "generationConfig"
    ]
    assert config == {"responseMimeType": "application/json", "responseSchema": schema}
    loose = {**schema, "additionalProperties": False}
    config = translate(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": loose}})[
        "generationConfig"
    ]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": loose}


def test_request_tool_calls_and_results_matched() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        "extra_content": {"google": {"thought_signature": "c2ln"}},
    }
    body = translate(
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'},
        ],
    )
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {"text": "Checking."},
            {
                "functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "c2ln",
            },
        ],
    }
    assert body["contents"][2] == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "id": "call_1",
                    "name": "get_weather",
                    "response": {"result": "18 degrees"},
                }
            },
            {"functionResponse": {"id": "call_1", "name": "get_weather", "response": {"temp": 18}}},
        ],
    }


def test_request_tool_result_without_call() -> None:
    with pytest.raises(TranslationError, match="matches no earlier assistant tool call"):
        translate(
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "tool", "tool_call_id": "nope", "content": "x"},
            ]
        )


def test_request_reasoning_effort() -> None:
    assert translate(reasoning_effort="low")["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 1024}}


@pytest.mark.parametrize(
    ("reason", "called", "expected"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("OTHER", False, "stop"),
        (None, False, None),
    ],
)
def test_finish_reason_mapping(reason: str | None, called: bool, expected: str | None) -> None:
    assert map_finish_reason(reason, called_function=called) == expected


def test_usage_mapping() -> None:
    usage = to_openai_usage(
        {
            "promptTokenCount": 100,
            "candidatesTokenCount": 20,
            "cachedContentTokenCount": 40,
            "thoughtsTokenCount": 7,
            "totalTokenCount": 127,
        }
    )
    assert usage == {
        "prompt_tokens": 100,
        "completion_tokens": 27,
        "total_tokens": 127,
        "prompt_tokens_details": {"cached_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 7},
    }


def test_response_text_thoughts_and_tool_call() -> None:
    answer = to_openai_completion(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "Thinking…", "thought": True},
                            {"text": "Let me check."},
                            {
                                "functionCall": {"name": "get_weather", "args": {"city": "Rome"}},
                                "thoughtSignature": "c2ln",
                            },
                        ],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "resp-1",
        },
        model="fallback",
    )
    choice = answer["choices"][0]
    assert answer["id"] == "resp-1"
    assert answer["model"] == "gemini-2.5-flash"
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["reasoning_content"] == "Thinking…"
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Rome"}'}
    assert call["extra_content"] == {"google": {"thought_signature": "c2ln"}}
    assert answer["usage"]["total_tokens"] == 7


def test_response_blocked_prompt() -> None:
    answer = to_openai_completion(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}},
        model="m",
    )
    assert answer["choices"][0]["finish_reason"] == "content_filter"
    assert answer["usage"]["prompt_tokens"] == 5


def test_response_two_candidates() -> None:
    answer = to_openai_completion(
        {
            "candidates": [
                {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP", "index": 0},
                {"content": {"parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS", "index": 1},
            ]
        },
        model="m",
    )
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in answer["choices"]] == [
        (0, "A", "stop"),
        (1, "B", "length"),
    ]


def event(parts: list[dict[str, Any]], finish: str | None = None, **usage: int) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "responseId": "r1"}


def test_stream_text_chunks_and_usage_merge() -> None:
    translator = GeminiStreamTranslator(model="gemini-2.5-flash")
    chunks = translator.translate(event([{"text": "Hel"}], promptTokenCount=4, totalTokenCount=4))
    chunks += translator.translate(event([{"text": "lo"}], promptTokenCount=4))
    assert not translator.finished
    chunks += translator.translate(event([{"text": "!"}], "STOP", candidatesTokenCount=3, thoughtsTokenCount=2))
    assert translator.finished
    chunks.append(translator.finish())

    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello!"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    # The last event has no promptTokenCount, so the earlier value is kept.
    assert chunks[-1]["usage"]["prompt_tokens"] == 4
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2}
    assert {c["id"] for c in chunks} == {"r1"}


def test_stream_tool_calls_whole_and_indexed() -> None:
    translator = GeminiStreamTranslator(model="m")
    chunks = translator.translate(
        event(
            [
                {"functionCall": {"id": "a", "name": "f", "args": {"x": 1}}},
                {"functionCall": {"id": "b", "name": "g", "args": {}}},
            ],
            "STOP",
        )
    )
    calls = [call for chunk in chunks for call in chunk["choices"][0]["delta"].get("tool_calls") or []]
    assert [(c["index"], c["id"], c["function"]["name"]) for c in calls] == [(0, "a", "f"), (1, "b", "g")]
    assert [orjson.loads(c["function"]["arguments"]) for c in calls] == [{"x": 1}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_without_finish_is_unfinished() -> None:
    translator = GeminiStreamTranslator(model="m")
    translator.translate(event([{"text": "partial"}]))
    assert not translator.finished
