"""Exact-cache keys and semantic scopes of Chat Completions requests."""

from __future__ import annotations

from typing import Any

import pytest

from libs.cachekeys import InvalidCacheKeyError, exact_key, semantic_scope, tenant_of_key


def chat(**fields: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Name three prime numbers."},
        ],
    }
    request.update(fields)
    return request


def test_exact_key_form_and_tenant() -> None:
    key = exact_key("acme", chat())

    tenant, _, digest = key.rpartition(":")
    assert tenant == "acme"
    assert len(digest) == 64
    assert tenant_of_key(key) == "acme"


def test_exact_key_is_stable() -> None:
    assert exact_key("acme", chat()) == exact_key("acme", chat())


def test_exact_key_differs_by_tenant() -> None:
    assert exact_key("acme", chat()).split(":")[-1] != exact_key("globex", chat()).split(":")[-1]


def test_exact_key_tenant_with_colon() -> None:
    key = exact_key("org:team", chat())

    assert tenant_of_key(key) == "org:team"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream", True),
        ("stream_options", {"include_usage": True}),
        ("user", "user-1234"),
        ("metadata", {"trace": "abc"}),
        ("store", True),
        ("service_tier", "flex"),
        ("safety_identifier", "hash-1"),
        ("prompt_cache_key", "k"),
    ],
)
def test_transport_fields_do_not_change_key(field: str, value: Any) -> None:
    assert exact_key("acme", chat(**{field: value})) == exact_key("acme", chat())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", "gpt-4o"),
        ("temperature", 0.2),
        ("top_p", 0.5),
        ("n", 2),
        ("stop", ["\n"]),
        ("max_tokens", 50),
        ("max_completion_tokens", 50),
        ("seed", 7),
        ("logit_bias", {"1234": -100}),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 0.5),
        ("reasoning_effort", "high"),
        ("response_format", {"type": "json_object"}),
        ("tools", [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]),
        ("tool_choice", "required"),
        ("parallel_tool_calls", False),
        ("some_future_field", {"anything": 1}),
    ],
)
def test_answer_fields_change_key(field: str, value: Any) -> None:
    assert exact_key("acme", chat(**{field: value})) != exact_key("acme", chat())


def test_message_text_changes_key() -> None:
    other = chat(messages=[{"role": "user", "content": "Name four prime numbers."}])

    assert exact_key("acme", other) != exact_key("acme", chat())


def test_equivalent_spellings_share_key() -> None:
    base = chat(temperature=1, max_tokens=None)
    spelled_out = chat(temperature=1.0)
    spelled_out["messages"] = [
        {"role": "system", "content": [{"type": "text", "text": "You are a terse assistant."}]},
        {"role": "user", "content": "Name three prime numbers.", "name": None},
    ]

    assert exact_key("acme", base) == exact_key("acme", spelled_out)


def test_field_order_does_not_change_key() -> None:
    forward = {"model": "m", "temperature": 0.3, "messages": [{"role": "user", "content": "hi"}]}
    backward = {"messages": [{"content": "hi", "role": "user"}], "temperature": 0.3, "model": "m"}

    assert exact_key("acme", forward) == exact_key("acme", backward)


def test_exact_key_rejects_empty_tenant() -> None:
    with pytest.raises(ValueError, match="tenant"):
        exact_key("", chat())


@pytest.mark.parametrize("key", ["plain", "acme:", "acme:xyz", ":" + "a" * 64, "acme:" + "G" * 64])
def test_tenant_of_key_rejects_foreign_keys(key: str) -> None:
    with pytest.raises(InvalidCacheKeyError, match="exact_key"):
        tenant_of_key(key)


def test_semantic_scope_splits_last_user_text() -> None:
    scope = semantic_scope(chat())

    assert scope is not None
    assert scope.prompt_text == "Name three prime numbers."
    assert len(scope.context_hash) == 64


def test_semantic_scope_ignores_prompt_text_in_context() -> None:
    first = semantic_scope(chat())
    other = chat()
    other["messages"][-1] = {"role": "user", "content": "List 3 primes."}
    second = semantic_scope(other)

    assert first is not None and second is not None
    assert first.context_hash == second.context_hash
    assert second.prompt_text == "List 3 primes."


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"temperature": 0.0},
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "lookup"}}]},
        {"unknown_field": 1},
    ],
)
def test_semantic_context_covers_fields(change: dict[str, Any]) -> None:
    base = semantic_scope(chat())
    changed = semantic_scope(chat(**change))

    assert base is not None and changed is not None
    assert changed.context_hash != base.context_hash


def test_semantic_context_covers_system_prompt() -> None:
    other = chat()
    other["messages"][0] = {"role": "system", "content": "Answer like a pirate."}

    base, changed = semantic_scope(chat()), semantic_scope(other)

    assert base is not None and changed is not None
    assert changed.context_hash != base.context_hash


def test_semantic_context_covers_earlier_turns() -> None:
    longer = chat()
    longer["messages"] = [
        {"role": "user", "content": "We are talking about Rust."},
        {"role": "assistant", "content": "Sure."},
        *longer["messages"][1:],
    ]

    base, changed = semantic_scope(chat()), semantic_scope(longer)

    assert base is not None and changed is not None
    assert changed.context_hash != base.context_hash


def test_semantic_context_ignores_transport_fields() -> None:
    base = semantic_scope(chat())
    streamed = semantic_scope(chat(stream=True, user="u-1", metadata={"a": "b"}))

    assert base is not None and streamed is not None
    assert streamed.context_hash == base.context_hash


def test_semantic_scope_joins_text_parts() -> None:
    request = chat()
    request["messages"][-1] = {
        "role": "user",
        "content": [
            {"type": "text", "text": "First line."},
            {"type": "text", "text": "Second line."},
        ],
    }

    scope = semantic_scope(request)

    assert scope is not None
    assert scope.prompt_text == "First line.\nSecond line."


@pytest.mark.parametrize(
    "request_change",
    [
        {"n": 3},
        {"logprobs": True},
        {"modalities": ["text", "audio"]},
        {"prediction": {"type": "content", "content": "draft"}},
    ],
)
def test_semantic_scope_rejects_fields(request_change: dict[str, Any]) -> None:
    assert semantic_scope(chat(**request_change)) is None


def test_semantic_scope_rejects_image_in_last_message() -> None:
    request = chat()
    request["messages"][-1] = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    }

    assert semantic_scope(request) is None


def test_semantic_scope_rejects_pending_tool_result() -> None:
    request = chat()
    request["messages"] += [
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]

    assert semantic_scope(request) is None


@pytest.mark.parametrize(
    "messages",
    [[], None, [{"role": "user", "content": "   "}], [{"role": "assistant", "content": "hi"}]],
)
def test_semantic_scope_rejects_missing_prompt(messages: Any) -> None:
    assert semantic_scope(chat(messages=messages)) is None


def test_n_of_one_is_eligible() -> None:
    scope = semantic_scope(chat(n=1))

    assert scope is not None
    assert scope.prompt_text == "Name three prime numbers."
