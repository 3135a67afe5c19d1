"""Retries with backoff, attempt limits, deadlines, breakers and load counts in the router."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.router.catalog import Catalog, ModelGroup
from services.router.health import BreakerSettings, InMemoryHealth
from services.router.providers.base import ProviderError
from services.router.routing import AllDeploymentsFailedError, RetryPolicy, Router

REQUEST: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
HELLO = {"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]}
DONE = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
SEED = 11


def unavailable() -> ProviderError:
    return ProviderError("503 from fake", code="UPSTREAM_UNAVAILABLE", status=503, retryable=True)


class Stall:
    """An outcome that waits this many seconds before it continues."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class FakeAdapter:
    def __init__(self, outcomes: dict[str, list[Any]]) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []

    def _next(self, deployment_id: str) -> Any:
        self.calls.append(deployment_id)
        return self.outcomes[deployment_id].pop(0)

    async def complete(self, request: dict[str, Any], deployment: Any) -> dict[str, Any]:
        outcome = self._next(deployment.id)
        if isinstance(outcome, Stall):
            await asyncio.sleep(outcome.seconds)
        if isinstance(outcome, ProviderError):
            raise outcome
        return {"id": deployment.id, "choices": []}

    async def stream(self, request: dict[str, Any], deployment: Any) -> AsyncIterator[dict[str, Any]]:
        for item in self._next(deployment.id):
            if isinstance(item, Stall):
                await asyncio.sleep(item.seconds)
            elif isinstance(item, ProviderError):
                raise item
            else:
                yield item


class Sleeps:
    """Records the backoff waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_router(
    outcomes: dict[str, list[Any]],
    policy: RetryPolicy,
    *,
    names: tuple[str, ...] = ("primary", "backup"),
    health: InMemoryHealth | None = None,
) -> tuple[Router, FakeAdapter, ModelGroup, Sleeps]:
    deployments = [
        {
            "name": name,
            "provider": "openai",
            "upstream_model": "up",
            "base_url": "http://127.0.0.1:9/v1",
            "priority": priority,
            "price": {"input_per_mtok": 1, "output_per_mtok": 1, "cached_input_per_mtok": 1},
        }
        for priority, name in enumerate(names)
    ]
    catalog = Catalog.from_mapping({"models": [{"name": "m", "deployments": deployments}]})
    adapter = FakeAdapter({f"m/{name}": list(items) for name, items in outcomes.items()})
    sleeps = Sleeps()
    router = Router(
        catalog,
        health=health or InMemoryHealth(),
        adapters=lambda provider: adapter,
        retry=policy,
        rng=random.Random(SEED),
        sleep=sleeps,
    )
    return router, adapter, catalog.get("m"), sleeps


def jitter(*steps: float) -> list[float]:
    """Return the waits a Random(SEED) draws for these backoff steps."""
    rng = random.Random(SEED)
    return [step * rng.uniform(0.5, 1.0) for step in steps]


async def test_second_round_after_backoff() -> None:
    router, adapter, group, sleeps = make_router(
        {"primary": [unavailable(), None], "backup": [unavailable()]},
        RetryPolicy(max_attempts=3, rounds=2, backoff_base_s=0.25),
    )
    result = await router.complete(REQUEST, group)
    assert result.deployment.id == "m/primary"
    assert adapter.calls == ["m/primary", "m/backup", "m/primary"]
    assert [attempt.code for attempt in result.attempts] == ["UPSTREAM_UNAVAILABLE", "UPSTREAM_UNAVAILABLE", "OK"]
    assert sleeps.waits == jitter(0.25)
    assert 0.125 <= sleeps.waits[0] <= 0.25


async def test_backoff_doubles_up_to_max() -> None:
    router, adapter, group, sleeps = make_router(
        {"primary": [unavailable()] * 5},
        RetryPolicy(max_attempts=5, rounds=5, backoff_base_s=0.5, backoff_max_s=1.5),
        names=("primary",),
    )
    with pytest.raises(AllDeploymentsFailedError) as caught:
        await router.complete(REQUEST, group)
    assert len(caught.value.attempts) == 5
    assert sleeps.waits == jitter(0.5, 1.0, 1.5, 1.5)


async def test_attempts_are_bounded() -> None:
    router, adapter, group, sleeps = make_router(
        {"primary": [unavailable()] * 3, "backup": [unavailable()] * 3},
        RetryPolicy(max_attempts=3, rounds=3),
    )
    with pytest.raises(AllDeploymentsFailedError) as caught:
        await router.complete(REQUEST, group)
    assert adapter.calls == ["m/primary", "m/backup", "m/primary"]
    assert len(caught.value.attempts) == 3
    assert len(sleeps.waits) == 1


async def test_one_round_never_retries() -> None:
    router, adapter, group, sleeps = make_router(
        {"primary": [unavailable()], "backup": [unavailable()]}, RetryPolicy(max_attempts=5, rounds=1)
    )
    with pytest.raises(AllDeploymentsFailedError):
        await router.complete(REQUEST, group)
    assert adapter.calls == ["m/primary", "m/backup"]
    assert sleeps.waits == []


async def test_long_retry_after_skips_retry() -> None:
    limited = ProviderError("429", code="UPSTREAM_RATE_LIMITED", status=429, retryable=True, retry_after_s=5.0)
    router, adapter, group, sleeps = make_router(
        {"primary": [limited]}, RetryPolicy(max_attempts=3, rounds=3), names=("primary",)
    )
    with pytest.raises(AllDeploymentsFailedError) as caught:
        await router.complete(REQUEST, group)
    assert adapter.calls == ["m/primary"]
    assert sleeps.waits == []
    assert caught.value.retry_after_s == 5.0


async def test_non_retryable_is_not_retried() -> None:
    bad = ProviderError("400", code="UPSTREAM_BAD_REQUEST", status=400, retryable=False)
    router, adapter, group, sleeps = make_router({"primary": [bad]}, RetryPolicy(max_attempts=3, rounds=3))
    with pytest.raises(ProviderError) as caught:
        await router.complete(REQUEST, group)
    assert caught.value is bad
    assert adapter.calls == ["m/primary"]


async def test_deadline_cuts_slow_attempt() -> None:
    router, adapter, group, sleeps = make_router(
        {"primary": [Stall(5.0)], "backup": [None]}, RetryPolicy(max_attempts=3, rounds=2, deadline_s=0.2)
    )
    started = time.perf_counter()
    with pytest.raises(AllDeploymentsFailedError) as caught:
        await router.complete(REQUEST, group)
    elapsed = time.perf_counter() - started
    assert 0.19 <= elapsed < 0.5
    assert adapter.calls == ["m/primary"]
    assert caught.value.last_error is not None
    assert caught.value.last_error.code == "UPSTREAM_TIMEOUT"
    assert "deadline" in caught.value.last_error.message


async def test_caller_deadline_shortens_policy() -> None:
    router, adapter, group, sleeps = make_router(
        {"primary": [Stall(5.0)]}, RetryPolicy(deadline_s=60.0), names=("primary",)
    )
    started = time.perf_counter()
    with pytest.raises(AllDeploymentsFailedError):
        await router.complete(REQUEST, group, deadline_s=0.1)
    assert time.perf_counter() - started < 0.4


async def test_deadline_does_not_count_against_breaker() -> None:
    health = InMemoryHealth(BreakerSettings(failure_threshold=1))
    router, adapter, group, sleeps = make_router(
        {"primary": [Stall(5.0)]}, RetryPolicy(deadline_s=0.05), names=("primary",), health=health
    )
    with pytest.raises(AllDeploymentsFailedError):
        await router.complete(REQUEST, group)
    assert await health.state("m/primary") == "closed"


async def test_stream_deadline_before_content() -> None:
    router, adapter, group, sleeps = make_router(
        {"primary": [[Stall(5.0), HELLO]], "backup": [[HELLO, DONE]]}, RetryPolicy(deadline_s=0.2)
    )
    with pytest.raises(AllDeploymentsFailedError) as caught:
        await router.stream(REQUEST, group)
    assert caught.value.last_error is not None
    assert caught.value.last_error.code == "UPSTREAM_TIMEOUT"
    assert adapter.calls == ["m/primary"]


async def test_open_breaker_skips_deployment() -> None:
    health = InMemoryHealth(BreakerSettings(failure_threshold=2, cooldown_s=30.0))
    router, adapter, group, sleeps = make_router(
        {"primary": [unavailable(), unavailable()], "backup": [None, None, None]},
        RetryPolicy(rounds=1),
        health=health,
    )
    for _ in range(2):
        assert (await router.complete(REQUEST, group)).deployment.id == "m/backup"
    assert await health.state("m/primary") == "open"

    third = await router.complete(REQUEST, group)
    assert third.deployment.id == "m/backup"
    assert [attempt.deployment_id for attempt in third.attempts] == ["m/backup"]
    assert adapter.calls == ["m/primary", "m/backup", "m/primary", "m/backup", "m/backup"]


async def test_all_breakers_open_reports_wait() -> None:
    health = InMemoryHealth(BreakerSettings(failure_threshold=1, cooldown_s=30.0))
    router, adapter, group, sleeps = make_router(
        {"primary": [unavailable()], "backup": [unavailable()]}, RetryPolicy(rounds=2), health=health
    )
    with pytest.raises(AllDeploymentsFailedError):
        await router.complete(REQUEST, group)
    with pytest.raises(AllDeploymentsFailedError) as caught:
        await router.complete(REQUEST, group)
    assert caught.value.attempts == []
    assert caught.value.last_error is None
    assert 29.0 < (caught.value.retry_after_s or 0) <= 30.0
    assert len(adapter.calls) == 2


async def test_stream_counts_in_flight_until_closed() -> None:
    router, adapter, group, sleeps = make_router({"primary": [[HELLO, HELLO, DONE]]}, RetryPolicy())
    stream = await router.stream(REQUEST, group)
    assert router.stats.in_flight("m/primary") == 1
    assert await stream.__anext__() == HELLO
    await stream.aclose()
    assert router.stats.in_flight("m/primary") == 0
    assert router.stats.latency_ms("m/primary", stream=True) is not None


async def test_finished_stream_ends_in_flight() -> None:
    router, adapter, group, sleeps = make_router({"primary": [[HELLO, DONE]]}, RetryPolicy())
    stream = await router.stream(REQUEST, group)
    assert [chunk async for chunk in stream] == [HELLO, DONE]
    assert router.stats.in_flight("m/primary") == 0


async def test_failed_complete_ends_in_flight() -> None:
    router, adapter, group, sleeps = make_router({"primary": [unavailable()], "backup": [None]}, RetryPolicy())
    await router.complete(REQUEST, group)
    assert router.stats.in_flight("m/primary") == 0
    assert router.stats.in_flight("m/backup") == 0
    assert router.stats.latency_ms("m/primary", stream=False) is None
    assert router.stats.latency_ms("m/backup", stream=False) is not None
