"""Validation of OpenAI Chat Completions requests names the offending field."""

from typing import Any

import pytest

from libs.errors import InvalidRequestError
from libs.openai_chat import parse_body, validate
from libs.screening import CONTENT, TOOL_CALL, iter_prompt_texts
from services.router.openai_request import replace_prompt_texts


def _request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    request.update(overrides)
    return request


def test_valid_request_passes() -> None:
    validate(
        _request(
            temperature=0.2,
            max_tokens=10,
            stop=["\n"],
            stream=True,
            tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        )
    )


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"model": None}, "model"),
        ({"model": 42}, "model"),
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}, "messages[0].content[0].text"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"n": True}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [1]}, "stop[0]"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"metadata": {"team": 7}}, "metadata.team"),
    ],
)
def test_invalid_field_is_named(overrides: dict[str, Any], param: str) -> None:
    request = _request(**overrides)
    if overrides.get("model", "") is None:
        del request["model"]
    with pytest.raises(InvalidRequestError) as caught:
        validate(request)
    assert caught.value.param == param
    assert param.split("[")[0].split(".")[0] in caught.value.message


def test_assistant_with_tool_calls_needs_no_content() -> None:
    validate(
        _request(
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ]
        )
    )


@pytest.mark.parametrize("body", [b"", b"{not json", b"[1, 2]", b'"text"'])
def test_parse_body_rejects_non_objects(body: bytes) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_body(body)
    assert caught.value.reason == "INVALID_JSON"
    assert caught.value.http_status == 400


def test_prompt_texts_round_trip() -> None:
    request = _request(
        messages=[
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Mail ana@example.org"},
                    {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}},
                    {"type": "text", "text": "and bo@example.org"},
                ],
            },
        ]
    )
    located = list(iter_prompt_texts(request))
    assert [text for _, text in located] == ["Be brief.", "Mail ana@example.org", "and bo@example.org"]

    replaced = replace_prompt_texts(
        request, [slot for slot, _ in located], ["Be brief.", "Mail [EMAIL_1]", "and [EMAIL_2]"]
    )

    assert replaced["messages"][1]["content"][0]["text"] == "Mail [EMAIL_1]"
    assert replaced["messages"][1]["content"][2]["text"] == "and [EMAIL_2]"
    assert replaced["messages"][1]["content"][1]["type"] == "image_url"
    assert request["messages"][1]["content"][0]["text"] == "Mail ana@example.org"


def test_unknown_content_part_type_is_rejected() -> None:
    request = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": [{"type": "input_text", "text": "Name three rivers."}]}],
    }

    with pytest.raises(InvalidRequestError) as caught:
        validate(request)

    assert caught.value.param == "messages[0].content[0].type"
    assert "input_text" in caught.value.message


def test_tool_call_arguments_are_prompt_texts() -> None:
    arguments = '{"to": "ana@example.org"}'
    request = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "user", "content": "Send it."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "send", "arguments": arguments}}
                ],
            },
        ],
    }
    located = list(iter_prompt_texts(request))
    assert located == [((0, CONTENT, 0), "Send it."), ((1, TOOL_CALL, 0), arguments)]

    replaced = replace_prompt_texts(request, [slot for slot, _ in located], ["Send it.", '{"to": "[EMAIL_1]"}'])

    call = replaced["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "send", "arguments": '{"to": "[EMAIL_1]"}'}
    assert call["id"] == "call_1"
    assert request["messages"][1]["tool_calls"][0]["function"]["arguments"] == arguments
