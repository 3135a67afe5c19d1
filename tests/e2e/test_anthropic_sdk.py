"""The official Anthropic Python SDK against the whole mesh, through the real Envoy edge.

``/v1/messages`` serves every catalog model: claude-3-5-haiku from an Anthropic-format
deployment and gpt-4o-mini from OpenAI-format ones. Every prompt carries a marker so
that no test is answered from another test's cache entry.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import anthropic
import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MODELS = ["claude-3-5-haiku", "gpt-4o-mini"]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def marker() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def client(gateway: Any) -> anthropic.Anthropic:
    root = gateway.base_url.removesuffix("/v1")
    return anthropic.Anthropic(base_url=root, api_key=gateway.api_key, max_retries=0, timeout=30)


@pytest.mark.parametrize("model", MODELS)
def test_message(client: anthropic.Anthropic, model: str) -> None:
    prompt = f"hello {marker()}"
    response = client.messages.with_raw_response.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": prompt}]
    )
    message = response.parse()

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == model
    assert message.id.startswith("msg_")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == f"Simulated answer to: {prompt}"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    assert response.headers["x-aigw-deployment"] == f"{model}/primary"
    assert response.headers["x-aigw-attempts"] == "1"
    assert float(response.headers["x-aigw-cost-usd"]) > 0


@pytest.mark.parametrize("model", MODELS)
def test_stream(client: anthropic.Anthropic, model: str) -> None:
    prompt = f"stream {marker()}"
    with client.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": prompt}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == f"Simulated answer to: {prompt}"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.model == model
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_stream_event_sequence_on_the_wire(gateway: Any, model: str) -> None:
    with httpx.stream(
        "POST",
        gateway.base_url + "/messages",
        headers={"x-api-key": gateway.api_key, "anthropic-version": "2023-06-01"},
        json={
            "model": model,
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": f"wire {marker()}"}],
        },
        timeout=30,
    ) as response:
        body = response.read().decode()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-aigw-deployment"] == f"{model}/primary"
    events = [event for event in body.split("\n\n") if event.strip()]
    names = [event.split("\n")[0].removeprefix("event: ") for event in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    payloads = [json.loads(event.split("\n")[1].removeprefix("data: ")) for event in events]
    assert [payload["type"] for payload in payloads] == names
    delta = payloads[-2]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] > 0
    assert delta["usage"]["input_tokens"] > 0


@pytest.mark.parametrize("model", MODELS)
def test_tool_use(client: anthropic.Anthropic, model: str) -> None:
    message = client.messages.create(
        model=model,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": f"weather {marker()}"}],
    )

    assert message.stop_reason == "tool_use"
    tool_uses = [block for block in message.content if block.type == "tool_use"]
    assert len(tool_uses) == 1
    assert tool_uses[0].name == "get_weather"
    assert isinstance(tool_uses[0].input, dict)
    assert isinstance(tool_uses[0].input.get("city"), str)

    follow_up = client.messages.create(
        model=model,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": f"weather again {marker()}"},
            {"role": "assistant", "content": [tool_uses[0].model_dump(exclude_none=True)]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_uses[0].id, "content": "sunny, 21 C"}],
            },
        ],
    )
    assert follow_up.stop_reason == "end_turn"
    assert follow_up.content[0].type == "text"


@pytest.mark.parametrize("model", MODELS)
def test_streamed_tool_use(client: anthropic.Anthropic, model: str) -> None:
    with client.messages.stream(
        model=model,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": f"streamed weather {marker()}"}],
    ) as stream:
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    assert [block.type for block in final.content] == ["tool_use"]
    assert final.content[0].name == "get_weather"
    assert isinstance(final.content[0].input.get("city"), str)


def test_system_prompt_reaches_provider(gateway: Any, client: anthropic.Anthropic) -> None:
    prompt = f"system check {marker()}"
    client.messages.create(
        model="gpt-4o-mini",
        max_tokens=50,
        system="Answer briefly.",
        stop_sequences=["END"],
        messages=[{"role": "user", "content": prompt}],
    )
    sent = next(
        entry["body"]
        for entry in reversed(gateway.simulator.requests("primary"))
        if entry["body"]["messages"][-1]["content"] == prompt
    )
    assert sent["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": prompt},
    ]
    assert sent["max_tokens"] == 50
    assert sent["stop"] == ["END"]


def test_missing_max_tokens_is_invalid_request(gateway: Any) -> None:
    response = httpx.post(
        gateway.base_url + "/messages",
        headers={"x-api-key": gateway.api_key, "anthropic-version": "2023-06-01"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


def test_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "the model `no-such-model` does not exist or you do not have access to it",
        },
    }


def test_rate_limited_deployment_is_rate_limit_error(gateway: Any, client: anthropic.Anthropic) -> None:
    # claude-3-5-haiku has one deployment. A Retry-After longer than the first backoff
    # (at most 0.25 s) rules out a retry round.
    gateway.simulator.script("anthropic", [{"status": 429, "retry_after": 0.3}])
    try:
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(
                model="claude-3-5-haiku", max_tokens=10, messages=[{"role": "user", "content": f"limit {marker()}"}]
            )
    finally:
        # Later tests use the deployment, so its cooldown must be over.
        time.sleep(0.3)
    assert caught.value.status_code == 429
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert caught.value.response.headers.get("content-type") == "application/json"


def test_error_after_content_is_error_event(gateway: Any, client: anthropic.Anthropic) -> None:
    gateway.simulator.script("primary", [{"error_after_chunks": 3}])
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(
            model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": f"break {marker()}"}]
        ) as stream:
            for text in stream.text_stream:
                received.append(text)

    assert "".join(received) == "Simulated answer"
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_pinned_provider_through_metadata(client: anthropic.Anthropic) -> None:
    response = client.messages.with_raw_response.create(
        model="gpt-4o-mini",
        max_tokens=20,
        messages=[{"role": "user", "content": f"pin {marker()}"}],
        metadata={"user_id": "user-7", "aigw_deployment": "gpt-4o-mini/backup"},  # type: ignore[typeddict-unknown-key]
    )
    assert response.headers["x-aigw-deployment"] == "gpt-4o-mini/backup"


def test_bad_key_gets_anthropic_error_shape(gateway: Any) -> None:
    root = gateway.base_url.removesuffix("/v1")
    bad = anthropic.Anthropic(base_url=root, api_key="sk-aigw-nothere0-" + "y" * 32, max_retries=0, timeout=30)

    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model="claude-3-5-haiku", max_tokens=10, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.status_code == 401
    body = caught.value.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert "invalid API key" in body["error"]["message"]
