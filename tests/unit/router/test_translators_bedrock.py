"""OpenAI to Bedrock Converse translation, the event-stream decoder and stream translation."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson
import pytest

from services.router.providers.eventstream import EventStreamDecoder, EventStreamError
from services.router.translators.common import TranslationError
from services.router.translators.openai_bedrock import (
    BedrockStreamTranslator,
    map_stop_reason,
    to_converse_request,
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


def translate(**request: Any) -> dict[str, Any]:
    request.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return to_converse_request(request)


def frame(headers: dict[str, bytes | str], payload: bytes, *, value_type: int = 7) -> bytes:
    """Encode one event-stream message, as AWS does."""
    encoded = b""
    for name, value in headers.items():
        raw = value.encode() if isinstance(value, str) else value
        encoded += bytes([len(name)]) + name.encode() + bytes([value_type])
        encoded += struct.pack(">H", len(raw)) + raw
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps(payload))


def test_request_basic_fields() -> None:
    body = translate(max_completion_tokens=64, temperature=0.1, top_p=0.9, stop="END", seed=3, user="u")
    assert body == {
        "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.1, "topP": 0.9, "stopSequences": ["END"]},
    }


def test_request_system_and_developer_in_order() -> None:
    body = translate(
        messages=[
            {"role": "developer", "content": "One."},
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": [{"type": "text", "text": "Two."}]},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Again"},
            {"role": "user", "content": "And again"},
        ]
    )
    assert body["system"] == [{"text": "One."}, {"text": "Two."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Hi"}]},
        {"role": "assistant", "content": [{"text": "Hello"}]},
        {"role": "user", "content": [{"text": "Again"}, {"text": "And again"}]},
    ]


def test_request_images_and_documents() -> None:
    body = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "s3://bucket/cat.png"}},
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,BBBB", "filename": "Q3 report.pdf"},
                    },
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {"image": {"format": "jpeg", "source": {"bytes": "AAAA"}}},
        {"image": {"format": "png", "source": {"s3Location": {"uri": "s3://bucket/cat.png"}}}},
        {"document": {"format": "pdf", "name": "Q3 report", "source": {"bytes": "BBBB"}}},
    ]


def test_request_http_image_rejected() -> None:
    with pytest.raises(TranslationError, match="not http"):
        translate(
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]
        )


def test_request_tools_and_choices() -> None:
    body = translate(tools=[WEATHER])
    assert body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather for a city.",
                    "inputSchema": {"json": WEATHER["function"]["parameters"]},
                }
            }
        ]
    }
    assert translate(tools=[WEATHER], tool_choice="auto")["toolConfig"]["toolChoice"] == {"auto": {}}
    assert translate(tools=[WEATHER], tool_choice="required")["toolConfig"]["toolChoice"] == {"any": {}}
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert translate(tools=[WEATHER], tool_choice=named)["toolConfig"]["toolChoice"] == {
        "tool": {"name": "get_weather"}
    }
    assert "toolConfig" not in translate(tools=[WEATHER], tool_choice="none")


def test_request_tool_calls_and_results() -> None:
    call = {"id": "call.1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    body = translate(
        tools=[WEATHER],
        tool_choice="none",
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call.1", "content": "cold"},
            {"role": "user", "content": "Thanks"},
        ],
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [{"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}}],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "cold"}]}},
            {"text": "Thanks"},
        ],
    }
    # Converse requires toolConfig once the history has tool blocks.
    assert body["toolConfig"]["toolChoice"] == {"auto": {}}


def test_request_tool_result_without_call() -> None:
    with pytest.raises(TranslationError, match="matches no earlier"):
        translate(messages=[{"role": "user", "content": "Hi"}, {"role": "tool", "tool_call_id": "x", "content": "y"}])


@pytest.mark.parametrize("kind", ["json_object", "json_schema"])
def test_request_json_formats_rejected(kind: str) -> None:
    with pytest.raises(TranslationError, match="response_format"):
        translate(response_format={"type": kind})


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        (None, None),
    ],
)
def test_stop_reason_mapping(reason: str | None, expected: str | None) -> None:
    assert map_stop_reason(reason) == expected


def test_usage_counts_cache_in_prompt() -> None:
    assert to_openai_usage(
        {"inputTokens": 10, "outputTokens": 4, "cacheReadInputTokens": 6, "cacheWriteInputTokens": 2}
    ) == {
        "prompt_tokens": 18,
        "completion_tokens": 4,
        "total_tokens": 22,
        "prompt_tokens_details": {"cached_tokens": 6},
    }


def test_response_text_reasoning_and_tool() -> None:
    answer = to_openai_completion(
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [
                        {"reasoningContent": {"reasoningText": {"text": "Think.", "signature": "s"}}},
                        {"text": "Checking."},
                        {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Oslo"}}},
                    ],
                }
            },
            "stopReason": "tool_use",
            "usage": {"inputTokens": 3, "outputTokens": 5},
        },
        model="anthropic.claude",
    )
    message = answer["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert message["reasoning_content"] == "Think."
    assert message["tool_calls"] == [
        {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    ]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["usage"]["total_tokens"] == 8


def test_decoder_split_anywhere() -> None:
    data = event("messageStart", {"role": "assistant"}) + event("messageStop", {"stopReason": "end_turn"})
    for cut in range(1, len(data)):
        decoder = EventStreamDecoder()
        messages = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert [m.event_type for m in messages] == ["messageStart", "messageStop"]
        assert not decoder.has_pending
    assert orjson.loads(messages[1].payload) == {"stopReason": "end_turn"}
    assert messages[0].message_type == "event"


def test_decoder_header_types() -> None:
    encoded = bytes([2]) + b"ok" + bytes([0]) + bytes([1]) + b"n" + bytes([4]) + struct.pack(">i", -7)
    total = 12 + len(encoded) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + encoded
    data = body + struct.pack(">I", zlib.crc32(body))
    [message] = EventStreamDecoder().feed(data)
    assert message.headers == {"ok": True, "n": -7}
    assert message.payload == b""


def test_decoder_rejects_bad_message_crc() -> None:
    data = bytearray(event("messageStart", {"role": "assistant"}))
    data[-6] ^= 0xFF
    with pytest.raises(EventStreamError, match="message checksum"):
        EventStreamDecoder().feed(bytes(data))


def test_decoder_rejects_bad_prelude_crc() -> None:
    data = bytearray(event("messageStart", {"role": "assistant"}))
    data[9] ^= 0xFF
    with pytest.raises(EventStreamError, match="prelude checksum"):
        EventStreamDecoder().feed(bytes(data))


def test_decoder_keeps_partial_message() -> None:
    data = event("messageStart", {"role": "assistant"})
    decoder = EventStreamDecoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.has_pending


def run_stream(events: list[tuple[str, dict[str, Any]]]) -> tuple[BedrockStreamTranslator, list[dict[str, Any]]]:
    translator = BedrockStreamTranslator(model="m", completion_id="c1")
    chunks = [chunk for event_type, payload in events for chunk in translator.translate(event_type, payload)]
    return translator, chunks


def test_stream_text_and_usage_merge() -> None:
    translator, chunks = run_stream(
        [
            ("messageStart", {"role": "assistant"}),
            ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}, "p": "abc"}),
            ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
            ("contentBlockStop", {"contentBlockIndex": 0}),
            ("messageStop", {"stopReason": "max_tokens"}),
            ("metadata", {"usage": {"inputTokens": 5, "outputTokens": 2, "cacheReadInputTokens": None}}),
        ]
    )
    assert translator.finished
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Hello"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 5
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert {chunk["id"] for chunk in chunks} == {"c1"}


def test_stream_tool_arguments_concatenate_exactly() -> None:
    pieces = ['{"ci', 'ty":', ' "Oslo"}']
    events: list[tuple[str, dict[str, Any]]] = [
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me check."}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
    ]
    events += [("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": p}}}) for p in pieces]
    events += [
        ("contentBlockStop", {"contentBlockIndex": 1}),
        ("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t2", "name": "g"}}}),
        ("contentBlockStop", {"contentBlockIndex": 2}),
        ("messageStop", {"stopReason": "tool_use"}),
    ]

    translator, chunks = run_stream(events)

    calls = [call for c in chunks if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls") or []]
    first = [call for call in calls if call["index"] == 0]
    second = [call for call in calls if call["index"] == 1]
    assert first[0]["id"] == "t1"
    assert "".join(call["function"]["arguments"] for call in first) == '{"city": "Oslo"}'
    assert second[0]["id"] == "t2"
    assert "".join(call["function"]["arguments"] for call in second) == "{}"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert translator.stopped
    assert not translator.finished
