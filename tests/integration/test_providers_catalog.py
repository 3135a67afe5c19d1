"""Every deployment of deploy/catalog/providers.yaml against the simulator, JSON and stream.

Each provider's endpoint variable points at its own simulator prefix, so the request
goes to the provider's real path under that prefix, and the request log shows what
the gateway sent there.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.router.catalog import Catalog, Deployment, ModelGroup
from services.router.providers import adapter_for
from services.router.routing import Router
from services.router.upstream import close_session
from tests.fixtures.simulator import SimulatorProcess, running_simulator

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOG = REPO_ROOT / "deploy" / "catalog" / "providers.yaml"
KEY = "sim-test-key"
SIGV4 = "sigv4"
"""Auth kind of the Bedrock cases: a SigV4 Authorization header instead of a key."""


@dataclass(frozen=True)
class Case:
    deployment_id: str
    endpoint_variable: str
    path: str
    """Path after the simulator prefix, as the provider's API has it."""
    auth_header: str | None
    """Header that must carry the key; None when the provider takes no key."""
    simulator_host: str = ""
    """Path the simulator serves this format under, after the prefix (Mistral's is /mistral)."""
    stream_path: str | None = None
    """Path of stream requests when it differs from ``path``."""
    model_in_path: bool = False
    """Whether the upstream model goes in the path instead of the body."""


CASES = [
    Case("gpt-4o-mini/openai", "OPENAI_ENDPOINT", "/v1/chat/completions", "authorization"),
    Case(
        "gpt-4o-mini/azure",
        "AZURE_OPENAI_ENDPOINT",
        "/openai/deployments/gpt-4o-mini/chat/completions",
        "api-key",
    ),
    Case("gpt-4o-mini/openrouter", "OPENROUTER_ENDPOINT", "/api/v1/chat/completions", "authorization"),
    Case("o3-mini/openai", "OPENAI_ENDPOINT", "/v1/chat/completions", "authorization"),
    Case("claude-3-5-haiku/anthropic", "ANTHROPIC_ENDPOINT", "/v1/messages", "x-api-key"),
    Case("mistral-small/mistral", "MISTRAL_ENDPOINT", "/v1/chat/completions", "authorization", "/mistral"),
    Case("llama-3.3-70b/groq", "GROQ_ENDPOINT", "/openai/v1/chat/completions", "authorization"),
    Case("llama-3.3-70b/cerebras", "CEREBRAS_ENDPOINT", "/v1/chat/completions", "authorization"),
    Case("llama-3.3-70b/together", "TOGETHER_ENDPOINT", "/v1/chat/completions", "authorization"),
    Case("llama-3.3-70b/fireworks", "FIREWORKS_ENDPOINT", "/inference/v1/chat/completions", "authorization"),
    Case("llama-3.3-70b/deepinfra", "DEEPINFRA_ENDPOINT", "/v1/openai/chat/completions", "authorization"),
    Case("llama-3.3-70b/nebius", "NEBIUS_ENDPOINT", "/v1/chat/completions", "authorization"),
    Case("llama-3.3-70b/sambanova", "SAMBANOVA_ENDPOINT", "/v1/chat/completions", "authorization"),
    Case("llama-3.3-70b/ollama", "OLLAMA_ENDPOINT", "/v1/chat/completions", None),
    Case("llama-3.3-70b/vllm", "VLLM_ENDPOINT", "/v1/chat/completions", "authorization"),
    Case("llama-3.3-70b/lm-studio", "LM_STUDIO_ENDPOINT", "/v1/chat/completions", None),
    Case("deepseek-chat/deepseek", "DEEPSEEK_ENDPOINT", "/v1/chat/completions", "authorization"),
    Case("grok-3-mini/xai", "XAI_ENDPOINT", "/v1/chat/completions", "authorization"),
    Case("sonar/perplexity", "PERPLEXITY_ENDPOINT", "/chat/completions", "authorization"),
    Case(
        "gemini-2.5-flash/gemini",
        "GEMINI_ENDPOINT",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "x-goog-api-key",
        stream_path="/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        model_in_path=True,
    ),
    Case("command-a/cohere", "COHERE_ENDPOINT", "/v2/chat", "authorization"),
    Case(
        "claude-3-5-haiku/bedrock",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse",
        SIGV4,
        stream_path="/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse-stream",
        model_in_path=True,
    ),
    Case(
        "nova-lite/bedrock",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "/model/amazon.nova-lite-v1:0/converse",
        SIGV4,
        stream_path="/model/amazon.nova-lite-v1:0/converse-stream",
        model_in_path=True,
    ),
]


@pytest.fixture(scope="module")
def open_simulator() -> Iterator[SimulatorProcess]:
    # Ollama and LM Studio send no key, so this simulator accepts keyless requests too;
    # each test checks the key headers in the request log instead.
    with running_simulator("--allow-missing-key") as process:
        yield process


@pytest.fixture(scope="module", autouse=True)
async def close_upstream_session() -> AsyncIterator[None]:
    yield
    await close_session()


def load_catalog(simulator: SimulatorProcess, prefix: str) -> Catalog:
    """Load providers.yaml with every endpoint variable at ``{simulator}/{prefix}``."""
    document = yaml.safe_load(CATALOG.read_text())
    environ = {case.endpoint_variable: f"{simulator.base_url}/{prefix}{case.simulator_host}" for case in CASES}
    return Catalog.from_mapping(document, source=str(CATALOG), environ=environ)


@pytest.fixture
def provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for group in Catalog.load(CATALOG).models():
        for deployment in group.deployments:
            if deployment.api_key_env:
                monkeypatch.setenv(deployment.api_key_env, KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "simulator-secret")


def deployment_for(simulator: SimulatorProcess, case: Case) -> tuple[Deployment, str]:
    prefix = "p" + uuid.uuid4().hex[:10]
    return load_catalog(simulator, prefix).deployment(case.deployment_id), prefix


def check_headers(seen: dict[str, Any], case: Case) -> None:
    headers = seen["headers"]
    if case.auth_header is None:
        assert "authorization" not in headers
        return
    if case.auth_header == SIGV4:
        assert headers["authorization"].startswith("[redacted sha256:")
        assert headers["x-amz-date"].endswith("Z")
        return
    value = headers[case.auth_header]
    assert "[redacted sha256:" in value
    if case.auth_header == "authorization":
        assert value.startswith("Bearer ")


def test_catalog_lists_twenty_providers() -> None:
    catalog = Catalog.load(CATALOG)
    names = {deployment.id.split("/")[1] for g in catalog.models() for deployment in g.deployments}
    assert len(names) >= 20
    tested = {case.deployment_id.split("/")[1] for case in CASES}
    assert names == tested
    deployments = {deployment.id for g in catalog.models() for deployment in g.deployments}
    assert deployments == {case.deployment_id for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[case.deployment_id for case in CASES])
async def test_provider_complete(open_simulator: SimulatorProcess, provider_keys: None, case: Case) -> None:
    deployment, prefix = deployment_for(open_simulator, case)
    request = {"model": "chat", "messages": [{"role": "user", "content": "Hello there, Jane!"}]}

    answer = await adapter_for(deployment.provider).complete(request, deployment)

    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "Simulated answer to: Hello there, Jane!"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["prompt_tokens"] == 5
    assert answer["usage"]["completion_tokens"] == 9
    [seen] = open_simulator.requests(prefix)
    assert seen["path"] == f"/{prefix}{case.simulator_host}{case.path}"
    if not case.model_in_path:
        assert seen["body"]["model"] == deployment.upstream_model
    check_headers(seen, case)


@pytest.mark.parametrize("case", CASES, ids=[case.deployment_id for case in CASES])
async def test_provider_stream(open_simulator: SimulatorProcess, provider_keys: None, case: Case) -> None:
    deployment, prefix = deployment_for(open_simulator, case)
    request = {"model": "chat", "messages": [{"role": "user", "content": "Count to three."}]}

    chunks = [chunk async for chunk in adapter_for(deployment.provider).stream(request, deployment)]

    text = "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])
    assert text == "Simulated answer to: Count to three."
    reasons = [choice["finish_reason"] for chunk in chunks for choice in chunk["choices"]]
    assert reasons[-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 4
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    [seen] = open_simulator.requests(prefix)
    assert seen["path"] == f"/{prefix}{case.simulator_host}{case.stream_path or case.path}"
    if case.stream_path is None:
        assert seen["body"]["stream"] is True
    check_headers(seen, case)


async def test_max_completion_tokens_only(open_simulator: SimulatorProcess, provider_keys: None) -> None:
    deployment, prefix = deployment_for(open_simulator, Case("o3-mini/openai", "OPENAI_ENDPOINT", "", None))
    request = {
        "model": "chat",
        "max_tokens": 3,
        "messages": [{"role": "user", "content": "Tell me a long story"}],
    }

    answer = await adapter_for(deployment.provider).complete(request, deployment)

    assert answer["choices"][0]["finish_reason"] == "length"
    [seen] = open_simulator.requests(prefix)
    assert seen["body"]["max_completion_tokens"] == 3
    assert "max_tokens" not in seen["body"]


async def test_max_tokens_only(open_simulator: SimulatorProcess, provider_keys: None) -> None:
    deployment, prefix = deployment_for(open_simulator, Case("llama-3.3-70b/lm-studio", "LM_STUDIO_ENDPOINT", "", None))
    request = {
        "model": "chat",
        "max_completion_tokens": 3,
        "messages": [{"role": "user", "content": "Tell me a long story"}],
    }

    answer = await adapter_for(deployment.provider).complete(request, deployment)

    assert answer["choices"][0]["finish_reason"] == "length"
    [seen] = open_simulator.requests(prefix)
    assert seen["body"]["max_tokens"] == 3
    assert "max_completion_tokens" not in seen["body"]


async def test_router_fails_over_across_formats(open_simulator: SimulatorProcess, provider_keys: None) -> None:
    # Converse cannot fetch image URLs, so the Bedrock deployment rejects the request
    # before sending it, and the router serves it from the Gemini deployment.
    prefix = "p" + uuid.uuid4().hex[:10]
    catalog = load_catalog(open_simulator, prefix)
    bedrock = catalog.deployment("claude-3-5-haiku/bedrock")
    gemini = catalog.deployment("gemini-2.5-flash/gemini")
    group = ModelGroup(
        name="vision",
        deployments=(replace(bedrock, priority=0), replace(gemini, priority=1)),
        strategy="priority",
    )
    router = Router(Catalog([group]))
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    request = {
        "model": "vision",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}],
    }

    result = await router.complete(request, group)

    assert result.deployment.id == gemini.id
    assert result.body["choices"][0]["message"]["content"] == "Simulated answer to: What is this?"
    assert result.attempts[0].code == "UPSTREAM_UNSUPPORTED_REQUEST"
    seen = open_simulator.requests(prefix)
    assert [entry["path"] for entry in seen] == [f"/{prefix}/v1beta/models/gemini-2.5-flash:generateContent"]
    assert seen[0]["body"]["contents"][0]["parts"][1] == {
        "fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}
    }
