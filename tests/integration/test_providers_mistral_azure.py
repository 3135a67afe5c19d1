"""Mistral's and Azure OpenAI's quirks against the simulator, which enforces them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.router.catalog import Catalog, CatalogError, Deployment
from services.router.providers import adapter_for
from services.router.providers.base import ProviderError
from services.router.upstream import close_session
from tests.fixtures.simulator import SimulatorProcess

pytestmark = pytest.mark.integration

PRICE = {"input_per_mtok": 1, "output_per_mtok": 2, "cached_input_per_mtok": 0.5}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module", autouse=True)
async def close_upstream_session() -> AsyncIterator[None]:
    yield
    await close_session()


def make_deployment(simulator: SimulatorProcess, provider: str, **fields: Any) -> tuple[Deployment, str]:
    name = f"{provider}-{uuid.uuid4().hex[:8]}"
    base_url = {
        "mistral": f"{simulator.base_url}/{name}/mistral/v1",
        "azure": f"{simulator.base_url}/{name}",
    }[provider]
    entry = {
        "name": name,
        "provider": provider,
        "upstream_model": "my-deployment" if provider == "azure" else "mistral-small-latest",
        "base_url": base_url,
        "api_key_env": "SIMULATOR_API_KEY",
        "price": PRICE,
        "timeout_s": 5,
        **fields,
    }
    catalog = Catalog.from_mapping({"models": [{"name": "chat", "deployments": [entry]}]})
    return catalog.get("chat").deployments[0], name


async def test_mistral_renames_fields(simulator: SimulatorProcess) -> None:
    deployment, name = make_deployment(simulator, "mistral")
    request = {
        "model": "chat",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
        "seed": 7,
        "max_completion_tokens": 50,
        "user": "user-1",
        "stream_options": {"include_usage": True},
    }

    answer = await adapter_for("mistral").complete(request, deployment)

    assert answer["choices"][0]["message"]["content"] == "Simulated answer to: Hello there"
    [seen] = simulator.requests(name)
    body = seen["body"]
    assert body["random_seed"] == 7
    assert body["max_tokens"] == 50
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert "seed" not in body
    assert "user" not in body
    assert "stream_options" not in body


async def test_mistral_tool_round_trip(simulator: SimulatorProcess) -> None:
    deployment, name = make_deployment(simulator, "mistral")
    call = {
        "id": "call_abc-123_long",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    request = {
        "model": "chat",
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_abc-123_long", "content": "18 degrees"},
            {"role": "user", "content": "And in Rome?"},
        ],
    }

    chunks = [chunk async for chunk in adapter_for("mistral").stream(request, deployment)]

    calls = [
        call for chunk in chunks for choice in chunk["choices"] for call in choice["delta"].get("tool_calls") or []
    ]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city":"sample city"}'
    reasons = [choice["finish_reason"] for chunk in chunks for choice in chunk["choices"]]
    assert reasons[-1] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] > 0
    [seen] = simulator.requests(name)
    body = seen["body"]
    assert body["tool_choice"] == "any"
    sent_id = body["messages"][1]["tool_calls"][0]["id"]
    assert len(sent_id) == 9
    assert sent_id.isalnum()
    assert body["messages"][2]["tool_call_id"] == sent_id


async def test_mistral_rejects_are_reported(simulator: SimulatorProcess) -> None:
    deployment, name = make_deployment(simulator, "mistral")
    simulator.script(name, [{"status": 429, "retry_after": 2}])

    with pytest.raises(ProviderError) as caught:
        await adapter_for("mistral").complete(
            {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}, deployment
        )

    assert caught.value.code == "UPSTREAM_RATE_LIMITED"
    assert caught.value.retry_after_s == 2


async def test_azure_deployment_url_and_key(simulator: SimulatorProcess) -> None:
    deployment, name = make_deployment(simulator, "azure", api_version="2024-10-21")
    request = {"model": "chat", "messages": [{"role": "user", "content": "Hello Azure"}]}

    answer = await adapter_for("azure").complete(request, deployment)
    chunks = [chunk async for chunk in adapter_for("azure").stream(request, deployment)]

    assert answer["choices"][0]["message"]["content"] == "Simulated answer to: Hello Azure"
    assert chunks[-1]["usage"]["prompt_tokens"] == 2
    seen = simulator.requests(name)
    assert [entry["path"] for entry in seen] == [f"/{name}/openai/deployments/my-deployment/chat/completions"] * 2
    assert seen[0]["headers"]["api-key"].startswith("[redacted sha256:")
    assert "authorization" not in seen[0]["headers"]


def test_azure_requires_api_version() -> None:
    entry = {
        "name": "az",
        "provider": "azure",
        "upstream_model": "gpt-4o",
        "base_url": "https://example.openai.azure.com",
        "price": PRICE,
    }
    with pytest.raises(CatalogError, match="api_version: is missing"):
        Catalog.from_mapping({"models": [{"name": "chat", "deployments": [entry]}]})


@pytest.mark.parametrize(
    ("provider", "field", "value"),
    [
        ("openai", "region", "us-east-1"),
        ("mistral", "max_tokens_field", "max_tokens"),
        ("bedrock", "api_version", "v1"),
    ],
)
def test_provider_fields_checked(provider: str, field: str, value: str) -> None:
    entry = {
        "name": "d",
        "provider": provider,
        "upstream_model": "m",
        "base_url": "https://example.com",
        "price": PRICE,
        field: value,
    }
    with pytest.raises(CatalogError, match=f"{field}: applies only to"):
        Catalog.from_mapping({"models": [{"name": "chat", "deployments": [entry]}]})
