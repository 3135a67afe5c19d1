"""Provider adapters and failover against the real simulator subprocess."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from services.router.catalog import Catalog, ModelGroup
from services.router.providers.base import ProviderError
from services.router.routing import AllDeploymentsFailedError, Router
from services.router.upstream import close_session
from tests.fixtures.simulator import SimulatorProcess, running_simulator

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PRICE = {"input_per_mtok": 1, "output_per_mtok": 2, "cached_input_per_mtok": 0.5}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
WEATHER_ARGUMENTS = '{"city":"sample city","unit":"c"}'


@pytest.fixture(scope="module", autouse=True)
async def close_upstream_session() -> AsyncIterator[None]:
    yield
    await close_session()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def entry(
    simulator: SimulatorProcess,
    name: str,
    provider: str = "openai",
    **overrides: Any,
) -> dict[str, Any]:
    root = f"{simulator.base_url}/{name}"
    deployment = {
        "name": name,
        "provider": provider,
        "upstream_model": f"upstream-{provider}",
        "base_url": root + "/v1" if provider == "openai" else root,
        "api_key_env": "SIMULATOR_API_KEY",
        "price": PRICE,
        "timeout_s": 5,
    }
    deployment.update(overrides)
    return deployment


def routed(*deployments: dict[str, Any]) -> tuple[Router, ModelGroup]:
    for priority, deployment in enumerate(deployments):
        deployment.setdefault("priority", priority)
    catalog = Catalog.from_mapping({"models": [{"name": "chat", "deployments": list(deployments)}]})
    return Router(catalog), catalog.get("chat")


def chat(text: str, **fields: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": text}], **fields}


def joined_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


def joined_arguments(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        call["function"].get("arguments", "")
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls") or []
    )


async def collect(
    router: Router, request: dict[str, Any], group: ModelGroup
) -> list[dict[str, Any]]:
    stream = await router.stream(request, group)
    return [chunk async for chunk in stream]


async def test_openai_complete_passes_fields_through(simulator: SimulatorProcess) -> None:
    name = unique("oa")
    router, group = routed(entry(simulator, name))
    request = chat("Hello there, Jane!", seed=42, metadata={"ticket": "T-1"}, stream_options={})

    result = await router.complete(request, group)

    message = result.body["choices"][0]["message"]
    assert message["content"] == "Simulated answer to: Hello there, Jane!"
    assert result.body["choices"][0]["finish_reason"] == "stop"
    assert result.body["usage"]["prompt_tokens"] == 5
    assert result.body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}

    [seen] = simulator.requests(name)
    assert seen["body"]["model"] == "upstream-openai"
    assert seen["body"]["seed"] == 42
    assert seen["body"]["metadata"] == {"ticket": "T-1"}
    assert "stream" not in seen["body"]
    assert "stream_options" not in seen["body"]
    assert seen["headers"]["authorization"].startswith("Bearer [redacted sha256:")
    assert request["model"] == "chat"


async def test_openai_stream_always_requests_usage(simulator: SimulatorProcess) -> None:
    name = unique("oa")
    router, group = routed(entry(simulator, name))

    chunks = await collect(router, chat("Count to three."), group)

    assert joined_text(chunks) == "Simulated answer to: Count to three."
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    [seen] = simulator.requests(name)
    assert seen["body"]["stream"] is True
    assert seen["body"]["stream_options"] == {"include_usage": True}


async def test_openai_stream_tool_call(simulator: SimulatorProcess) -> None:
    name = unique("oa")
    router, group = routed(entry(simulator, name))

    chunks = await collect(router, chat("Weather?", tools=[WEATHER_TOOL]), group)

    assert joined_arguments(chunks) == WEATHER_ARGUMENTS
    argument_chunks = [
        c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls")
    ]
    assert len(argument_chunks) >= 3
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


async def test_anthropic_complete(simulator: SimulatorProcess) -> None:
    name = unique("an")
    router, group = routed(entry(simulator, name, provider="anthropic"))
    request = {
        "model": "chat",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "stop": ["never-present"],
    }

    result = await router.complete(request, group)

    body = result.body
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == (
        "Simulated answer to: What is the capital of France?"
    )
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 10
    assert body["usage"]["completion_tokens"] == 11

    [seen] = simulator.requests(name)
    assert seen["path"] == f"/{name}/v1/messages"
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    assert seen["headers"]["x-api-key"].startswith("[redacted sha256:")
    assert seen["body"]["system"] == [{"type": "text", "text": "Be brief."}]
    assert seen["body"]["max_tokens"] == 4096
    assert seen["body"]["stop_sequences"] == ["never-present"]
    assert seen["body"]["model"] == "upstream-anthropic"


async def test_anthropic_max_tokens_maps_to_length(simulator: SimulatorProcess) -> None:
    router, group = routed(entry(simulator, unique("an"), provider="anthropic"))
    result = await router.complete(chat("Tell me a long story", max_tokens=3), group)
    assert result.body["choices"][0]["message"]["content"] == "Simulated answer to"
    assert result.body["choices"][0]["finish_reason"] == "length"


async def test_anthropic_stream_text_and_usage(simulator: SimulatorProcess) -> None:
    name = unique("an")
    router, group = routed(entry(simulator, name, provider="anthropic"))
    simulator.script(name, [{"cached_tokens": 2}])

    chunks = await collect(router, chat("Name three colours."), group)

    assert joined_text(chunks) == "Simulated answer to: Name three colours."
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 8,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 2},
    }


async def test_anthropic_stream_tool_call(simulator: SimulatorProcess) -> None:
    router, group = routed(entry(simulator, unique("an"), provider="anthropic"))

    chunks = await collect(
        router, chat("Weather?", tools=[WEATHER_TOOL], tool_choice="required"), group
    )

    assert joined_arguments(chunks) == WEATHER_ARGUMENTS
    opening = [
        call
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls") or []
        if "id" in call
    ]
    assert [(call["index"], call["function"]["name"]) for call in opening] == [(0, "get_weather")]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


async def test_anthropic_tool_results_accepted(simulator: SimulatorProcess) -> None:
    name = unique("an")
    router, group = routed(entry(simulator, name, provider="anthropic"))
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": WEATHER_ARGUMENTS},
    }
    request = {
        "model": "chat",
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"},
        ],
    }

    result = await router.complete(request, group)

    assert (
        result.body["choices"][0]["message"]["content"] == "Simulated answer to: Weather in Paris?"
    )
    [seen] = simulator.requests(name)
    assert seen["body"]["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18 degrees"}],
    }


async def test_failover_503_then_backup(simulator: SimulatorProcess) -> None:
    primary, backup = unique("primary"), unique("backup")
    router, group = routed(entry(simulator, primary), entry(simulator, backup))
    simulator.script(primary, [{"status": 503}])

    result = await router.complete(chat("Hi"), group)

    assert result.deployment.id == f"chat/{backup}"
    assert [(a.deployment_id, a.status, a.code) for a in result.attempts] == [
        (f"chat/{primary}", 503, "UPSTREAM_UNAVAILABLE"),
        (f"chat/{backup}", 200, "OK"),
    ]
    assert len(simulator.requests(primary)) == 1
    assert len(simulator.requests(backup)) == 1


async def test_rate_limit_cools_down_deployment(simulator: SimulatorProcess) -> None:
    primary, backup = unique("primary"), unique("backup")
    router, group = routed(entry(simulator, primary), entry(simulator, backup))
    simulator.script(primary, [{"status": 429, "retry_after": 2}])

    first = await router.complete(chat("Hi"), group)
    second = await router.complete(chat("Hi again"), group)

    assert first.attempts[0].status == 429
    assert first.attempts[0].code == "UPSTREAM_RATE_LIMITED"
    assert first.deployment.id == f"chat/{backup}"
    assert [a.deployment_id for a in second.attempts] == [f"chat/{backup}"]
    assert len(simulator.requests(primary)) == 1
    assert len(simulator.requests(backup)) == 2


async def test_rate_limit_error_carries_retry_after(simulator: SimulatorProcess) -> None:
    name = unique("solo")
    router, group = routed(entry(simulator, name))
    simulator.script(name, [{"status": 429, "retry_after": 7}])

    with pytest.raises(AllDeploymentsFailedError) as caught:
        await router.complete(chat("Hi"), group)

    assert caught.value.last_error is not None
    assert caught.value.last_error.retry_after_s == 7.0
    assert caught.value.retry_after_s == 7.0


async def test_bad_request_not_failed_over(simulator: SimulatorProcess) -> None:
    primary, backup = unique("primary"), unique("backup")
    router, group = routed(entry(simulator, primary), entry(simulator, backup))
    simulator.script(
        primary, [{"status": 400, "message": "Invalid 'messages[0]': Hi there friend"}]
    )

    with pytest.raises(ProviderError) as caught:
        await router.complete(chat("Hi there friend"), group)

    assert caught.value.status == 400
    assert caught.value.code == "UPSTREAM_BAD_REQUEST"
    assert caught.value.retryable is False
    assert "friend" not in caught.value.message
    assert simulator.requests(backup) == []


async def test_stall_hits_timeout(simulator: SimulatorProcess) -> None:
    name = unique("stall")
    router, group = routed(entry(simulator, name, timeout_s=0.3))
    simulator.script(name, [{"stall_ms": 3000}])

    started = time.monotonic()
    with pytest.raises(AllDeploymentsFailedError) as caught:
        await router.complete(chat("Hi"), group)

    assert time.monotonic() - started < 1.5
    assert caught.value.last_error is not None
    assert caught.value.last_error.code == "UPSTREAM_TIMEOUT"
    assert caught.value.last_error.status is None


async def test_stream_stall_before_content_fails_over(simulator: SimulatorProcess) -> None:
    primary, backup = unique("primary"), unique("backup")
    router, group = routed(
        entry(simulator, primary, timeout_s=5, stream_idle_timeout_s=0.3),
        entry(simulator, backup),
    )
    simulator.script(primary, [{"stall_ms": 3000, "stall_after_chunks": 1}])

    stream = await router.stream(chat("Hi"), group)
    chunks = [chunk async for chunk in stream]

    assert stream.deployment.id == f"chat/{backup}"
    assert [a.code for a in stream.attempts] == ["UPSTREAM_TIMEOUT", "OK"]
    assert joined_text(chunks) == "Simulated answer to: Hi"


async def test_disconnect_mid_stream_raises_after_content(simulator: SimulatorProcess) -> None:
    primary, backup = unique("primary"), unique("backup")
    router, group = routed(entry(simulator, primary), entry(simulator, backup))
    simulator.script(primary, [{"disconnect_after_chunks": 3}])

    stream = await router.stream(chat("Tell me more"), group)
    received: list[dict[str, Any]] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in stream:
            received.append(chunk)

    assert joined_text(received) == "Simulated answer"
    assert caught.value.code == "UPSTREAM_STREAM_INTERRUPTED"
    assert stream.deployment.id == f"chat/{primary}"
    assert simulator.requests(backup) == []


async def test_openai_error_event_mid_stream(simulator: SimulatorProcess) -> None:
    name = unique("oa")
    router, group = routed(entry(simulator, name))
    simulator.script(name, [{"error_after_chunks": 2, "message": "Upstream model crashed."}])

    stream = await router.stream(chat("Hi"), group)
    received: list[dict[str, Any]] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in stream:
            received.append(chunk)

    assert joined_text(received) == "Simulated"
    assert caught.value.code == "UPSTREAM_STREAM_INTERRUPTED"
    assert caught.value.message.endswith("(server_error): Upstream model crashed.")


async def test_anthropic_error_event_mid_stream(simulator: SimulatorProcess) -> None:
    name = unique("an")
    router, group = routed(entry(simulator, name, provider="anthropic"))
    simulator.script(name, [{"error_after_chunks": 5}])

    stream = await router.stream(chat("Hi"), group)
    received: list[dict[str, Any]] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in stream:
            received.append(chunk)

    assert joined_text(received) == "Simulated answer"
    assert caught.value.status == 529
    assert caught.value.provider_type == "overloaded_error"


async def test_missing_key_fails_over(simulator: SimulatorProcess) -> None:
    primary, backup = unique("primary"), unique("backup")
    router, group = routed(
        entry(simulator, primary, api_key_env="AIGATEWAY_TEST_UNSET_KEY"),
        entry(simulator, backup),
    )

    result = await router.complete(chat("Hi"), group)

    assert [a.code for a in result.attempts] == ["UPSTREAM_MISCONFIGURED", "OK"]
    assert simulator.requests(primary) == []


async def test_anthropic_overloaded_fails_over_to_openai(simulator: SimulatorProcess) -> None:
    primary, backup = unique("claude"), unique("gpt")
    router, group = routed(
        entry(simulator, primary, provider="anthropic"), entry(simulator, backup)
    )
    simulator.script(primary, [{"status": 529}])

    stream = await router.stream(chat("Hi"), group)
    chunks = [chunk async for chunk in stream]

    assert [(a.status, a.code) for a in stream.attempts] == [
        (529, "UPSTREAM_UNAVAILABLE"),
        (200, "OK"),
    ]
    assert joined_text(chunks) == "Simulated answer to: Hi"


async def test_demo_catalog_serves_both_formats(simulator: SimulatorProcess) -> None:
    catalog = Catalog.load(REPO_ROOT / "deploy" / "catalog" / "demo.yaml")
    router = Router(catalog)

    for model in ("gpt-4o-mini", "claude-3-5-haiku", "gpt-4o"):
        result = await router.complete(chat("Ping"), catalog.get(model))
        assert result.body["choices"][0]["message"]["content"] == "Simulated answer to: Ping"


async def test_simulator_http_surface(simulator: SimulatorProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{simulator.base_url}/edge/v1/chat/completions", json=chat("x")
        ) as response:
            assert response.status == 401
            assert response.headers["x-sim-deployment"] == "edge"
            body = await response.json()
            assert body["error"]["type"] == "invalid_request_error"
            assert set(body["error"]) == {"message", "type", "param", "code"}

        async with session.post(
            f"{simulator.base_url}/v1/messages",
            json={"model": "m", "max_tokens": 5, "messages": []},
            headers={"x-api-key": "k"},
        ) as response:
            assert response.status == 400
            assert response.headers["x-sim-deployment"] == "default"
            body = await response.json()
            assert body == {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "anthropic-version: header is required",
                },
            }

        async with session.get(
            f"{simulator.base_url}/v1/models", headers={"Authorization": "Bearer k"}
        ) as response:
            models = await response.json()
            assert models["object"] == "list"
            assert "gpt-4o-mini" in [model["id"] for model in models["data"]]


async def test_simulator_global_flags() -> None:
    with running_simulator("--answer-bytes", "1024", "--first-token-ms", "200") as process:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.post(
                f"{process.base_url}/v1/chat/completions",
                json=chat("Pad me", stream=True),
                headers={"Authorization": "Bearer k"},
            ) as response:
                first = await response.content.readline()
                first_token_s = time.monotonic() - started
                rest = await response.read()

    events = [line[6:] for line in (first + rest).split(b"\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    text = "".join(
        choice["delta"].get("content") or ""
        for event in events[:-1]
        for choice in orjson.loads(event)["choices"]
    )
    assert text.startswith("Simulated answer to: Pad me ")
    assert 900 <= len(text.encode()) <= 1024
    assert first_token_s >= 0.2
