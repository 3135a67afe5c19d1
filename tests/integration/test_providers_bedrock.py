"""The Bedrock Converse adapter against the simulator: SigV4 headers, JSON and the event stream."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from services.router.catalog import Catalog, Deployment
from services.router.providers import adapter_for
from services.router.providers.base import ProviderError
from services.router.upstream import close_session
from tests.fixtures.simulator import SimulatorProcess

pytestmark = pytest.mark.integration

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
ACCESS_KEY = "AKIDEXAMPLESIMULATOR"
SECRET_KEY = "simulator/secret/key/EXAMPLEKEY0000000000"
SESSION_TOKEN = "simulator-session-token"
REGION = "eu-west-3"
PRICE = {"input_per_mtok": 0.8, "output_per_mtok": 4, "cached_input_per_mtok": 0.08}
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


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.delenv("AWS_REGION", raising=False)
    yield


def bedrock(simulator: SimulatorProcess, **fields: Any) -> tuple[Deployment, str]:
    name = f"bedrock-{uuid.uuid4().hex[:8]}"
    entry = {
        "name": name,
        "provider": "bedrock",
        "upstream_model": MODEL,
        "base_url": f"{simulator.base_url}/{name}",
        "region": REGION,
        "price": PRICE,
        "timeout_s": 5,
        **fields,
    }
    catalog = Catalog.from_mapping({"models": [{"name": "chat", "deployments": [entry]}]})
    return catalog.get("chat").deployments[0], name


def expected_signature(seen: dict[str, Any], path: str, payload: bytes) -> str:
    """Compute the SigV4 signature of a logged request, independently of botocore."""
    headers = seen["headers"]
    # The logged authorization value is hashed, so the signed header list comes from the
    # headers the adapter always signs.
    signed = sorted(["accept", "content-type", "host", "x-amz-date", "x-amz-security-token"])
    # The log redacts the session token, so the test uses its own copy.
    values = {**headers, "x-amz-security-token": SESSION_TOKEN}
    canonical_headers = "".join(f"{name}:{values[name].strip()}\n" for name in signed)
    # Services other than S3 encode the already encoded path once more.
    canonical_uri = urllib.parse.quote(path, safe="/~")
    canonical_request = "\n".join(
        ["POST", canonical_uri, "", canonical_headers, ";".join(signed), hashlib.sha256(payload).hexdigest()]
    )
    timestamp = headers["x-amz-date"]
    scope = f"{timestamp[:8]}/{REGION}/bedrock/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", timestamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = ("AWS4" + SECRET_KEY).encode()
    for part in (timestamp[:8], REGION, "bedrock", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return hashlib.sha256(authorization.encode()).hexdigest()[:12]


async def collect(request: dict[str, Any], deployment: Deployment) -> list[dict[str, Any]]:
    return [chunk async for chunk in adapter_for("bedrock").stream(request, deployment)]


async def test_complete_signed_request(simulator: SimulatorProcess) -> None:
    deployment, name = bedrock(simulator)
    request = {
        "model": "chat",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "max_tokens": 200,
        "temperature": 0.2,
    }

    answer = await adapter_for("bedrock").complete(request, deployment)

    assert answer["choices"][0]["message"]["content"] == "Simulated answer to: What is the capital of France?"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["prompt_tokens"] == 10
    assert answer["usage"]["completion_tokens"] == 11
    [seen] = simulator.requests(name)
    encoded_path = f"/{name}/model/{urllib.parse.quote(MODEL, safe='')}/converse"
    assert seen["path"] == f"/{name}/model/{MODEL}/converse"
    assert seen["body"] == {
        "messages": [{"role": "user", "content": [{"text": "What is the capital of France?"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 200, "temperature": 0.2},
    }
    assert seen["headers"]["x-amz-security-token"].startswith("[redacted sha256:")
    digest = seen["headers"]["authorization"].removeprefix("[redacted sha256:").removesuffix("]")
    assert digest == expected_signature(seen, encoded_path, orjson.dumps(seen["body"]))


async def test_stream_text_and_usage(simulator: SimulatorProcess) -> None:
    deployment, name = bedrock(simulator)
    simulator.script(name, [{"cached_tokens": 2}])

    chunks = await collect(
        {"model": "chat", "messages": [{"role": "user", "content": "Name three colours."}]}, deployment
    )

    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Simulated answer to: Name three colours."
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 8,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 2},
    }
    [seen] = simulator.requests(name)
    assert seen["path"] == f"/{name}/model/{MODEL}/converse-stream"
    assert seen["headers"]["accept"] == "application/vnd.amazon.eventstream"


async def test_stream_tool_call_then_result(simulator: SimulatorProcess) -> None:
    deployment, name = bedrock(simulator)
    request: dict[str, Any] = {
        "model": "chat",
        "tools": [WEATHER_TOOL],
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }

    chunks = await collect(request, deployment)

    calls = [call for c in chunks if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls") or []]
    assert "".join(call["function"].get("arguments", "") for call in calls) == WEATHER_ARGUMENTS
    assert len(calls) >= 3
    opening = [call for call in calls if "id" in call]
    assert [(call["index"], call["function"]["name"]) for call in opening] == [(0, "get_weather")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == (
        "Calling get_weather."
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"

    call = {
        "id": opening[0]["id"],
        "type": "function",
        "function": {"name": "get_weather", "arguments": WEATHER_ARGUMENTS},
    }
    request["messages"] += [
        {"role": "assistant", "content": "Calling get_weather.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temperature": 18}'},
    ]
    answer = await adapter_for("bedrock").complete(request, deployment)

    assert answer["choices"][0]["message"]["content"] == "Simulated answer to: Weather in Paris?"
    first, second = simulator.requests(name)
    assert first["body"]["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    assert second["body"]["messages"][2] == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": call["id"], "content": [{"json": {"temperature": 18}}]}}],
    }


async def test_image_data_url(simulator: SimulatorProcess) -> None:
    deployment, name = bedrock(simulator)
    request = {
        "model": "chat",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe this."},
                    {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}},
                ],
            }
        ],
    }

    answer = await adapter_for("bedrock").complete(request, deployment)

    assert answer["choices"][0]["message"]["content"] == "Simulated answer to: Describe this."
    [seen] = simulator.requests(name)
    assert seen["body"]["messages"][0]["content"][1] == {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}}


async def test_api_key_sent_as_bearer(simulator: SimulatorProcess) -> None:
    deployment, name = bedrock(simulator, api_key_env="SIMULATOR_API_KEY")

    answer = await adapter_for("bedrock").complete(
        {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}, deployment
    )

    assert answer["choices"][0]["message"]["content"] == "Simulated answer to: Hi"
    [seen] = simulator.requests(name)
    assert seen["headers"]["authorization"].startswith("Bearer [redacted sha256:")
    assert "x-amz-date" not in seen["headers"]


async def test_missing_credentials(simulator: SimulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment, name = bedrock(simulator)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    with pytest.raises(ProviderError) as caught:
        await adapter_for("bedrock").complete(
            {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}, deployment
        )

    assert caught.value.code == "UPSTREAM_MISCONFIGURED"
    assert "AWS_SECRET_ACCESS_KEY" in caught.value.message
    assert SECRET_KEY not in caught.value.message
    assert simulator.requests(name) == []


async def test_throttling_error(simulator: SimulatorProcess) -> None:
    deployment, name = bedrock(simulator)
    simulator.script(name, [{"status": 429, "retry_after": 2}])

    with pytest.raises(ProviderError) as caught:
        await adapter_for("bedrock").complete(
            {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}, deployment
        )

    assert caught.value.code == "UPSTREAM_RATE_LIMITED"
    assert caught.value.retry_after_s == 2


async def test_stream_exception_message(simulator: SimulatorProcess) -> None:
    deployment, name = bedrock(simulator)
    simulator.script(name, [{"error_after_chunks": 3}])

    with pytest.raises(ProviderError) as caught:
        await collect({"model": "chat", "messages": [{"role": "user", "content": "Hello"}]}, deployment)

    assert caught.value.code == "UPSTREAM_STREAM_INTERRUPTED"
    assert caught.value.status == 503
    assert caught.value.provider_type == "serviceUnavailableException"


async def test_stream_cut_before_message_stop(simulator: SimulatorProcess) -> None:
    deployment, name = bedrock(simulator)
    simulator.script(name, [{"disconnect_after_chunks": 3}])

    with pytest.raises(ProviderError) as caught:
        await collect({"model": "chat", "messages": [{"role": "user", "content": "Hello"}]}, deployment)

    assert caught.value.code == "UPSTREAM_STREAM_INTERRUPTED"
