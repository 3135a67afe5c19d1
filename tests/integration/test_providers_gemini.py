"""The Gemini adapter against the simulator's generateContent endpoints, JSON and SSE."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from services.router.catalog import Catalog, Deployment
from services.router.providers import adapter_for
from services.router.providers.base import ProviderError
from services.router.upstream import close_session
from tests.fixtures.simulator import SimulatorProcess

pytestmark = pytest.mark.integration

PRICE = {"input_per_mtok": 0.3, "output_per_mtok": 2.5, "cached_input_per_mtok": 0.075}
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
WEATHER_ARGUMENTS = {"city": "sample city", "unit": "c"}
PNG = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture(scope="module", autouse=True)
async def close_upstream_session() -> AsyncIterator[None]:
    yield
    await close_session()


def gemini(simulator: SimulatorProcess) -> tuple[Deployment, str]:
    name = f"gemini-{uuid.uuid4().hex[:8]}"
    entry = {
        "name": name,
        "provider": "gemini",
        "upstream_model": "gemini-2.5-flash",
        "base_url": f"{simulator.base_url}/{name}",
        "api_key_env": "SIMULATOR_API_KEY",
        "price": PRICE,
        "timeout_s": 5,
    }
    catalog = Catalog.from_mapping({"models": [{"name": "chat", "deployments": [entry]}]})
    return catalog.get("chat").deployments[0], name


async def collect(request: dict[str, Any], deployment: Deployment) -> list[dict[str, Any]]:
    return [chunk async for chunk in adapter_for("gemini").stream(request, deployment)]


async def test_complete_with_system_and_image(simulator: SimulatorProcess) -> None:
    deployment, name = gemini(simulator)
    simulator.script(name, [{"cached_tokens": 2, "reasoning_tokens": 5}])
    request = {
        "model": "chat",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in English."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": PNG}},
                ],
            },
        ],
        "temperature": 0.5,
        "stop": ["never-present"],
    }

    answer = await adapter_for("gemini").complete(request, deployment)

    assert answer["choices"][0]["message"]["content"] == "Simulated answer to: What is this?"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["model"] == "gemini-2.5-flash"
    # Prompt: "Be brief." (3) + "Answer in English." (4) + "What is this?" (4).
    assert answer["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 8 + 5,
        "total_tokens": 24,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    [seen] = simulator.requests(name)
    assert seen["path"] == f"/{name}/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen["headers"]["x-goog-api-key"].startswith("[redacted sha256:")
    body = seen["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in English."}]}
    assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert body["generationConfig"] == {"temperature": 0.5, "stopSequences": ["never-present"]}


async def test_max_tokens_maps_to_length(simulator: SimulatorProcess) -> None:
    deployment, _ = gemini(simulator)
    request = {
        "model": "chat",
        "max_tokens": 3,
        "messages": [{"role": "user", "content": "Tell me a long story"}],
    }
    answer = await adapter_for("gemini").complete(request, deployment)
    assert answer["choices"][0]["message"]["content"] == "Simulated answer to"
    assert answer["choices"][0]["finish_reason"] == "length"


async def test_json_schema_response(simulator: SimulatorProcess) -> None:
    deployment, name = gemini(simulator)
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    request = {
        "model": "chat",
        "messages": [{"role": "user", "content": "Two plus two?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}},
    }

    answer = await adapter_for("gemini").complete(request, deployment)

    assert orjson.loads(answer["choices"][0]["message"]["content"]) == {"answer": 1}
    [seen] = simulator.requests(name)
    assert seen["body"]["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": schema,
    }


async def test_stream_text_and_usage(simulator: SimulatorProcess) -> None:
    deployment, name = gemini(simulator)

    chunks = await collect(
        {"model": "chat", "messages": [{"role": "user", "content": "Name three colours."}]},
        deployment,
    )

    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Simulated answer to: Name three colours."
    assert len([c for c in chunks if c["choices"]]) > 3
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 4
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    [seen] = simulator.requests(name)
    assert seen["path"] == f"/{name}/v1beta/models/gemini-2.5-flash:streamGenerateContent"


async def test_stream_tool_call_then_result(simulator: SimulatorProcess) -> None:
    deployment, name = gemini(simulator)
    request: dict[str, Any] = {
        "model": "chat",
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }

    chunks = await collect(request, deployment)

    calls = [
        call for chunk in chunks for choice in chunk["choices"] for call in choice["delta"].get("tool_calls") or []
    ]
    assert len(calls) == 1
    assert calls[0]["function"]["name"] == "get_weather"
    assert orjson.loads(calls[0]["function"]["arguments"]) == WEATHER_ARGUMENTS
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"

    # Send the call back with its result, as an OpenAI client does.
    call = {key: calls[0][key] for key in ("id", "type", "function", "extra_content")}
    request["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"},
    ]
    answer = await adapter_for("gemini").complete(request, deployment)

    assert answer["choices"][0]["message"]["content"] == "Simulated answer to: Weather in Paris?"
    first, second = simulator.requests(name)
    assert first["body"]["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    model_turn, result_turn = second["body"]["contents"][1:]
    assert model_turn["parts"][0]["functionCall"]["name"] == "get_weather"
    assert model_turn["parts"][0]["thoughtSignature"] == "c2ltLXNpZ25hdHVyZQ=="
    assert result_turn == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "id": call["id"],
                    "name": "get_weather",
                    "response": {"result": "18 degrees"},
                }
            }
        ],
    }


async def test_rate_limit_error(simulator: SimulatorProcess) -> None:
    deployment, name = gemini(simulator)
    simulator.script(name, [{"status": 429, "retry_after": 3}])

    with pytest.raises(ProviderError) as caught:
        await adapter_for("gemini").complete(
            {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}, deployment
        )

    assert caught.value.code == "UPSTREAM_RATE_LIMITED"
    assert caught.value.provider_type == "RESOURCE_EXHAUSTED"
    assert caught.value.retry_after_s == 3


async def test_stream_error_event(simulator: SimulatorProcess) -> None:
    deployment, name = gemini(simulator)
    simulator.script(name, [{"error_after_chunks": 2}])

    with pytest.raises(ProviderError) as caught:
        await collect({"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}, deployment)

    assert caught.value.code == "UPSTREAM_STREAM_INTERRUPTED"
    assert caught.value.status == 503
    assert caught.value.provider_type == "UNAVAILABLE"


async def test_stream_cut_before_finish(simulator: SimulatorProcess) -> None:
    deployment, name = gemini(simulator)
    simulator.script(name, [{"disconnect_after_chunks": 2}])

    with pytest.raises(ProviderError) as caught:
        await collect({"model": "chat", "messages": [{"role": "user", "content": "Hello"}]}, deployment)

    assert caught.value.code == "UPSTREAM_STREAM_INTERRUPTED"
