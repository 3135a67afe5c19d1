"""The router against the real simulator: strategies, timeouts, stream errors and retries."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.router.catalog import Catalog, ModelGroup
from services.router.health import InMemoryHealth
from services.router.providers.base import ProviderError
from services.router.routing import AllDeploymentsFailedError, RetryPolicy, Router
from services.router.upstream import close_session
from tests.fixtures.simulator import SimulatorProcess

pytestmark = pytest.mark.integration

PRICE = {"input_per_mtok": 1, "output_per_mtok": 2, "cached_input_per_mtok": 0.5}


@pytest.fixture(scope="module", autouse=True)
async def close_upstream_session() -> AsyncIterator[None]:
    yield
    await close_session()


def names(*prefixes: str) -> list[str]:
    suffix = uuid.uuid4().hex[:8]
    return [f"{prefix}-{suffix}" for prefix in prefixes]


def build(
    simulator: SimulatorProcess,
    deployments: list[str],
    *,
    strategy: str = "priority",
    retry: RetryPolicy | None = None,
    **settings: Any,
) -> tuple[Router, ModelGroup]:
    entries = [
        {
            "name": name,
            "provider": "openai",
            "upstream_model": "gpt-4o-mini",
            "base_url": f"{simulator.base_url}/{name}/v1",
            "api_key_env": "SIMULATOR_API_KEY",
            "price": PRICE,
            "priority": priority,
            "timeout_s": 5,
            **settings,
        }
        for priority, name in enumerate(deployments)
    ]
    catalog = Catalog.from_mapping({"models": [{"name": "chat", "strategy": strategy, "deployments": entries}]})
    return Router(catalog, health=InMemoryHealth(), retry=retry), catalog.get("chat")


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], **fields}


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])


async def test_error_event_before_content_fails_over(simulator: SimulatorProcess) -> None:
    primary, backup = names("primary", "backup")
    router, group = build(simulator, [primary, backup])
    # Event 0 is the role announcement, so the error comes before any content.
    simulator.script(primary, [{"error_after_chunks": 1}])

    stream = await router.stream(chat(stream=True), group)
    chunks = [chunk async for chunk in stream]

    assert stream.deployment.id == f"chat/{backup}"
    assert [(a.deployment_id, a.status, a.code) for a in stream.attempts] == [
        (f"chat/{primary}", None, "UPSTREAM_STREAM_INTERRUPTED"),
        (f"chat/{backup}", 200, "OK"),
    ]
    assert text_of(chunks) == "Simulated answer to: Hi"


async def test_error_event_after_content_is_raised(simulator: SimulatorProcess) -> None:
    primary, backup = names("primary", "backup")
    router, group = build(simulator, [primary, backup])
    simulator.script(primary, [{"error_after_chunks": 3}])

    stream = await router.stream(chat(stream=True), group)
    received: list[dict[str, Any]] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in stream:
            received.append(chunk)

    assert caught.value.code == "UPSTREAM_STREAM_INTERRUPTED"
    assert text_of(received) == "Simulated answer"
    assert simulator.requests(backup) == []


async def test_idle_timeout_between_chunks(simulator: SimulatorProcess) -> None:
    (name,) = names("idle")
    router, group = build(simulator, [name], stream_idle_timeout_s=0.3)
    simulator.script(name, [{"stall_ms": 3000, "stall_after_chunks": 3}])

    stream = await router.stream(chat(stream=True), group)
    received: list[dict[str, Any]] = []
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        async for chunk in stream:
            received.append(chunk)

    assert caught.value.code == "UPSTREAM_TIMEOUT"
    assert "no next chunk" in caught.value.message
    assert 0.25 < time.monotonic() - started < 1.0
    assert text_of(received) == "Simulated answer"


async def test_attempt_timeout_fails_over(simulator: SimulatorProcess) -> None:
    primary, backup = names("primary", "backup")
    router, group = build(simulator, [primary, backup], timeout_s=0.3)
    simulator.script(primary, [{"delay_ms": 3000}])

    started = time.monotonic()
    result = await router.complete(chat(), group)

    assert time.monotonic() - started < 1.0
    assert result.deployment.id == f"chat/{backup}"
    assert [a.code for a in result.attempts] == ["UPSTREAM_TIMEOUT", "OK"]


async def test_retry_after_moves_on_at_once(simulator: SimulatorProcess) -> None:
    primary, backup = names("primary", "backup")
    router, group = build(simulator, [primary, backup])
    simulator.script(primary, [{"status": 429, "retry_after": 2}])

    started = time.monotonic()
    first = await router.complete(chat(), group)
    second = await router.complete(chat(), group)

    assert time.monotonic() - started < 0.5
    assert first.deployment.id == f"chat/{backup}"
    assert [a.status for a in first.attempts] == [429, 200]
    assert second.deployment.id == f"chat/{backup}"
    assert [a.status for a in second.attempts] == [200]
    assert len(simulator.requests(primary)) == 1


async def test_retry_same_deployment_after_backoff(simulator: SimulatorProcess) -> None:
    (name,) = names("solo")
    router, group = build(
        simulator, [name], retry=RetryPolicy(max_attempts=3, rounds=2, backoff_base_s=0.1, backoff_max_s=0.1)
    )
    simulator.script(name, [{"status": 503}])

    started = time.monotonic()
    result = await router.complete(chat(), group)

    assert [a.status for a in result.attempts] == [503, 200]
    assert 0.05 <= time.monotonic() - started < 0.5
    assert len(simulator.requests(name)) == 2


async def test_every_attempt_failing(simulator: SimulatorProcess) -> None:
    primary, backup = names("primary", "backup")
    router, group = build(
        simulator, [primary, backup], retry=RetryPolicy(max_attempts=3, rounds=2, backoff_base_s=0.05)
    )
    simulator.script(primary, [{"status": 500}, {"status": 502}])
    simulator.script(backup, [{"status": 503}])

    with pytest.raises(AllDeploymentsFailedError) as caught:
        await router.complete(chat(), group)

    assert [(a.deployment_id, a.status) for a in caught.value.attempts] == [
        (f"chat/{primary}", 500),
        (f"chat/{backup}", 503),
        (f"chat/{primary}", 502),
    ]


async def test_lowest_latency_prefers_faster(simulator: SimulatorProcess) -> None:
    slow, fast = names("slow", "fast")
    router, group = build(simulator, [slow, fast], strategy="lowest_latency")
    simulator.script(slow, [{"delay_ms": 200}] * 3)

    # Unmeasured deployments go first: slow (by priority), then fast.
    assert (await router.complete(chat(), group)).deployment.id == f"chat/{slow}"
    assert (await router.complete(chat(), group)).deployment.id == f"chat/{fast}"
    for _ in range(3):
        assert (await router.complete(chat(), group)).deployment.id == f"chat/{fast}"
    assert len(simulator.requests(slow)) == 1


async def test_least_busy_spreads_open_streams(simulator: SimulatorProcess) -> None:
    first, second = names("first", "second")
    router, group = build(simulator, [first, second], strategy="least_busy")
    simulator.script(first, [{"chunk_delay_ms": 100}])
    simulator.script(second, [{"chunk_delay_ms": 100}])

    streams = [await router.stream(chat(stream=True), group) for _ in range(2)]
    third = await router.complete(chat(), group)
    try:
        assert [stream.deployment.id for stream in streams] == [f"chat/{first}", f"chat/{second}"]
        assert router.stats.in_flight(f"chat/{first}") == 1
        assert router.stats.in_flight(f"chat/{second}") == 1
        # Both have one stream open, so the tie goes to priority.
        assert third.deployment.id == f"chat/{first}"
    finally:
        await asyncio.gather(*(stream.aclose() for stream in streams))
    assert router.stats.in_flight(f"chat/{first}") == 0


async def test_lowest_cost_picks_cheaper(simulator: SimulatorProcess) -> None:
    dear, cheap = names("dear", "cheap")
    entries = []
    for name, price in ((dear, 10.0), (cheap, 0.5)):
        entries.append(
            {
                "name": name,
                "provider": "openai",
                "upstream_model": "gpt-4o-mini",
                "base_url": f"{simulator.base_url}/{name}/v1",
                "api_key_env": "SIMULATOR_API_KEY",
                "price": {"input_per_mtok": price, "output_per_mtok": price, "cached_input_per_mtok": price},
            }
        )
    catalog = Catalog.from_mapping({"models": [{"name": "chat", "strategy": "lowest_cost", "deployments": entries}]})
    router = Router(catalog)

    result = await router.complete(chat(), catalog.get("chat"))

    assert result.deployment.id == f"chat/{cheap}"
    assert simulator.requests(dear) == []


async def test_anthropic_error_event_before_content_fails_over(simulator: SimulatorProcess) -> None:
    primary, backup = names("primary", "backup")
    entries = [
        {
            "name": primary,
            "provider": "anthropic",
            "upstream_model": "claude-3-5-haiku-20241022",
            "base_url": f"{simulator.base_url}/{primary}",
            "api_key_env": "SIMULATOR_API_KEY",
            "price": PRICE,
            "priority": 0,
        },
        {
            "name": backup,
            "provider": "openai",
            "upstream_model": "gpt-4o-mini",
            "base_url": f"{simulator.base_url}/{backup}/v1",
            "api_key_env": "SIMULATOR_API_KEY",
            "price": PRICE,
            "priority": 1,
        },
    ]
    catalog = Catalog.from_mapping({"models": [{"name": "chat", "deployments": entries}]})
    router = Router(catalog)
    # Event 0 is message_start, which carries no content.
    simulator.script(primary, [{"error_after_chunks": 1}])

    stream = await router.stream(chat(stream=True), catalog.get("chat"))
    chunks = [chunk async for chunk in stream]

    assert [(a.deployment_id, a.code) for a in stream.attempts] == [
        (f"chat/{primary}", "UPSTREAM_STREAM_INTERRUPTED"),
        (f"chat/{backup}", "OK"),
    ]
    assert text_of(chunks) == "Simulated answer to: Hi"
