"""The Cohere adapter against the simulator's /v2/chat endpoint, JSON and SSE."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.router.catalog import Catalog, Deployment
from services.router.providers import adapter_for
from services.router.providers.base import ProviderError
from services.router.upstream import close_session
from tests.fixtures.simulator import SimulatorProcess

pytestmark = pytest.mark.integration

PRICE = {"input_per_mtok": 2.5, "output_per_mtok": 10, "cached_input_per_mtok": 2.5}
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


def cohere(simulator: SimulatorProcess) -> tuple[Deployment, str]:
    name = f"cohere-{uuid.uuid4().hex[:8]}"
    entry = {
        "name": name,
        "provider": "cohere",
        "upstream_model": "command-a-03-2025",
        "base_url": f"{simulator.base_url}/{name}",
        "api_key_env": "SIMULATOR_API_KEY",
        "price": PRICE,
        "timeout_s": 5,
    }
    catalog = Catalog.from_mapping({"models": [{"name": "chat", "deployments": [entry]}]})
    return catalog.get("chat").deployments[0], name


async def collect(request: dict[str, Any], deployment: Deployment) -> list[dict[str, Any]]:
    return [chunk async for chunk in adapter_for("cohere").stream(request, deployment)]


async def test_complete_counts_billed_units(simulator: SimulatorProcess) -> None:
    deployment, name = cohere(simulator)
    simulator.script(name, [{"cached_tokens": 3}])
    request = {
        "model": "chat",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "top_p": 0.5,
        "max_completion_tokens": 100,
    }

    answer = await adapter_for("cohere").complete(request, deployment)

    assert answer["choices"][0]["message"]["content"] == "Simulated answer to: What is the capital of France?"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 11,
        "total_tokens": 21,
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    [seen] = simulator.requests(name)
    assert seen["path"] == f"/{name}/v2/chat"
    assert seen["headers"]["authorization"].startswith("Bearer [redacted sha256:")
    assert seen["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert seen["body"]["p"] == 0.5
    assert seen["body"]["max_tokens"] == 100
    assert "stream" not in seen["body"]


async def test_max_tokens_maps_to_length(simulator: SimulatorProcess) -> None:
    deployment, _ = cohere(simulator)
    answer = await adapter_for("cohere").complete(
        {"model": "chat", "max_tokens": 3, "messages": [{"role": "user", "content": "Tell me a story"}]},
        deployment,
    )
    assert answer["choices"][0]["message"]["content"] == "Simulated answer to"
    assert answer["choices"][0]["finish_reason"] == "length"


async def test_stream_text_and_usage(simulator: SimulatorProcess) -> None:
    deployment, name = cohere(simulator)

    chunks = await collect({"model": "chat", "messages": [{"role": "user", "content": "Count to three."}]}, deployment)

    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Simulated answer to: Count to three."
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 4
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    [seen] = simulator.requests(name)
    assert seen["body"]["stream"] is True


async def test_stream_tool_call_then_result(simulator: SimulatorProcess) -> None:
    deployment, name = cohere(simulator)
    request: dict[str, Any] = {
        "model": "chat",
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }

    chunks = await collect(request, deployment)

    calls = [call for c in chunks if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls") or []]
    assert "".join(call["function"].get("arguments", "") for call in calls) == WEATHER_ARGUMENTS
    assert len(calls) >= 3
    opening = [call for call in calls if "id" in call]
    assert [(call["index"], call["function"]["name"]) for call in opening] == [(0, "get_weather")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == (
        "I will call get_weather."
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"

    call = {
        "id": opening[0]["id"],
        "type": "function",
        "function": {"name": "get_weather", "arguments": WEATHER_ARGUMENTS},
    }
    request["messages"] += [
        {"role": "assistant", "content": "I will call get_weather.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"},
    ]
    answer = await adapter_for("cohere").complete(request, deployment)

    assert answer["choices"][0]["message"]["content"] == "Simulated answer to: Weather in Paris?"
    first, second = simulator.requests(name)
    assert first["body"]["tool_choice"] == "REQUIRED"
    assert second["body"]["messages"][1] == {
        "role": "assistant",
        "tool_plan": "I will call get_weather.",
        "tool_calls": [call],
    }
    assert second["body"]["messages"][2] == {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"}


async def test_complete_tool_call(simulator: SimulatorProcess) -> None:
    deployment, _ = cohere(simulator)

    answer = await adapter_for("cohere").complete(
        {"model": "chat", "tools": [WEATHER_TOOL], "messages": [{"role": "user", "content": "Weather?"}]},
        deployment,
    )

    message = answer["choices"][0]["message"]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] == "I will call get_weather."
    assert message["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": WEATHER_ARGUMENTS}


async def test_rate_limit_error(simulator: SimulatorProcess) -> None:
    deployment, name = cohere(simulator)
    simulator.script(name, [{"status": 429, "retry_after": 4}])

    with pytest.raises(ProviderError) as caught:
        await adapter_for("cohere").complete(
            {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}, deployment
        )

    assert caught.value.code == "UPSTREAM_RATE_LIMITED"
    assert caught.value.retry_after_s == 4


async def test_stream_error_event(simulator: SimulatorProcess) -> None:
    deployment, name = cohere(simulator)
    simulator.script(name, [{"error_after_chunks": 2}])

    with pytest.raises(ProviderError) as caught:
        await collect({"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}, deployment)

    assert caught.value.code == "UPSTREAM_STREAM_INTERRUPTED"


async def test_stream_cut_before_message_end(simulator: SimulatorProcess) -> None:
    deployment, name = cohere(simulator)
    simulator.script(name, [{"disconnect_after_chunks": 3}])

    with pytest.raises(ProviderError) as caught:
        await collect({"model": "chat", "messages": [{"role": "user", "content": "Hello"}]}, deployment)

    assert caught.value.code == "UPSTREAM_STREAM_INTERRUPTED"
