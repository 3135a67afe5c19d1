"""OpenAI to Mistral request translation and Mistral answer normalization."""

from __future__ import annotations

import pytest

from services.router.translators.common import TranslationError
from services.router.translators.openai_mistral import (
    mistral_tool_id,
    normalize_chunk,
    normalize_completion,
    to_mistral_request,
)


def test_request_renames_limit_and_seed() -> None:
    body = to_mistral_request(
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "max_completion_tokens": 10,
            "max_tokens": 99,
            "seed": 3,
            "temperature": 0.2,
        },
        model="mistral-large-latest",
        stream=False,
    )
    assert body["max_tokens"] == 10
    assert body["random_seed"] == 3
    assert body["temperature"] == 0.2
    assert "seed" not in body
    assert "max_completion_tokens" not in body
    assert "stream" not in body


def test_request_drops_fields_mistral_rejects() -> None:
    body = to_mistral_request(
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "user": "u",
            "metadata": {"a": "b"},
            "logit_bias": {"1": 2},
            "stream_options": {"include_usage": True},
            "store": True,
        },
        model="m",
        stream=True,
    )
    assert set(body) == {"model", "messages", "stream"}


def test_request_tool_choice_required_is_any() -> None:
    request = {"messages": [{"role": "user", "content": "Hi"}], "tool_choice": "required"}
    assert to_mistral_request(request, model="m", stream=False)["tool_choice"] == "any"
    named = {"type": "function", "function": {"name": "f"}}
    request["tool_choice"] = named
    assert to_mistral_request(request, model="m", stream=False)["tool_choice"] == named


def test_request_system_and_developer_in_order() -> None:
    body = to_mistral_request(
        {
            "messages": [
                {"role": "system", "content": "One."},
                {"role": "user", "content": "Hi"},
                {"role": "developer", "content": "Two."},
            ]
        },
        model="m",
        stream=False,
    )
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("system", "One."),
        ("user", "Hi"),
        ("system", "Two."),
    ]


def test_tool_ids_rewritten_consistently() -> None:
    call = {"id": "call_0123456789", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = to_mistral_request(
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_0123456789", "content": "ok"},
            ]
        },
        model="m",
        stream=False,
    )
    new_id = body["messages"][1]["tool_calls"][0]["id"]
    assert new_id == mistral_tool_id("call_0123456789")
    assert body["messages"][2]["tool_call_id"] == new_id
    assert len(new_id) == 9
    assert new_id.isalnum()
    assert mistral_tool_id("abcDEF123") == "abcDEF123"
    assert call["id"] == "call_0123456789"


def test_request_images_pass_through() -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = to_mistral_request(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "What?"}, part]}]},
        model="m",
        stream=False,
    )
    assert body["messages"][0]["content"][1] == part


def test_request_rejects_audio() -> None:
    with pytest.raises(TranslationError, match="audio"):
        to_mistral_request(
            {"messages": [{"role": "user", "content": "Hi"}], "modalities": ["text", "audio"]},
            model="m",
            stream=False,
        )


def test_completion_thinking_and_finish() -> None:
    answer = normalize_completion(
        {
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "model_length",
                    "message": {
                        "role": "assistant",
                        "content": [
                            {"type": "thinking", "thinking": [{"type": "text", "text": "Hmm."}]},
                            {"type": "text", "text": "Answer."},
                        ],
                    },
                }
            ]
        }
    )
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == "Answer."
    assert choice["message"]["reasoning_content"] == "Hmm."


def test_chunk_usage_split_off() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    chunks = normalize_chunk(
        {
            "id": "x",
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}],
            "usage": usage,
        }
    )
    assert len(chunks) == 2
    assert chunks[0]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in chunks[0]
    assert chunks[1]["choices"] == []
    assert chunks[1]["usage"] == usage
