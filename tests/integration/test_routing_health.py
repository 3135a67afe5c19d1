"""Circuit breakers and Retry-After cooldowns, in process and in a real Redis.

Both trackers take the same clock, so every case runs against each with exact times.
The Redis cases use the Redis on 127.0.0.1:6379 under a unique key prefix, removed
afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from services.router.health import BreakerSettings, InMemoryHealth, RedisHealth
from services.router.providers.base import ProviderError

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/0"
SETTINGS = BreakerSettings(
    failure_threshold=3,
    failure_rate=0.5,
    min_requests=6,
    window_s=10.0,
    cooldown_s=2.0,
    max_cooldown_s=7.0,
    half_open_probes=1,
    probe_timeout_s=5.0,
)
DEPLOYMENT = "m/primary"


def unavailable() -> ProviderError:
    return ProviderError("503 from test", code="UPSTREAM_UNAVAILABLE", status=503, retryable=True)


def rate_limited(seconds: float | None) -> ProviderError:
    return ProviderError(
        "429 from test", code="UPSTREAM_RATE_LIMITED", status=429, retryable=True, retry_after_s=seconds
    )


def bad_request() -> ProviderError:
    return ProviderError("400 from test", code="UPSTREAM_BAD_REQUEST", status=400, retryable=False)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def tracker(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, Clock]]:
    clock = Clock()
    if request.param == "memory":
        yield InMemoryHealth(SETTINGS, clock=clock), clock
        return
    prefix = f"aigw-test:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(REDIS_URL)
    health = RedisHealth(client, SETTINGS, key_prefix=prefix, clock=clock)
    try:
        yield health, clock
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def fail(health: Any, times: int, error: ProviderError | None = None) -> None:
    for _ in range(times):
        await health.record_failure(DEPLOYMENT, error or unavailable(), 10.0)


async def test_breaker_opens_after_consecutive_failures(tracker: tuple[Any, Clock]) -> None:
    health, clock = tracker
    await fail(health, 2)
    assert await health.acquire(DEPLOYMENT) == 0
    assert await health.state(DEPLOYMENT) == "closed"

    await fail(health, 1)
    assert await health.state(DEPLOYMENT) == "open"
    assert await health.acquire(DEPLOYMENT) == pytest.approx(2.0)
    clock.now += 1.5
    assert await health.acquire(DEPLOYMENT) == pytest.approx(0.5)


async def test_success_resets_consecutive_failures(tracker: tuple[Any, Clock]) -> None:
    health, _ = tracker
    await fail(health, 2)
    await health.record_success(DEPLOYMENT, 10.0)
    await fail(health, 2)
    assert await health.state(DEPLOYMENT) == "closed"
    assert await health.acquire(DEPLOYMENT) == 0


async def test_breaker_opens_on_failure_rate(tracker: tuple[Any, Clock]) -> None:
    health, _ = tracker
    # Alternating outcomes never reach 3 in a row; the third failure of six attempts is 50 %.
    for _ in range(2):
        await fail(health, 1)
        await health.record_success(DEPLOYMENT, 10.0)
    await health.record_success(DEPLOYMENT, 10.0)
    assert await health.state(DEPLOYMENT) == "closed"
    await fail(health, 1)
    assert await health.state(DEPLOYMENT) == "open"


async def test_failure_rate_window_expires(tracker: tuple[Any, Clock]) -> None:
    health, clock = tracker
    for _ in range(2):
        await fail(health, 1)
        await health.record_success(DEPLOYMENT, 10.0)
    await health.record_success(DEPLOYMENT, 10.0)
    clock.now += 10.0
    await fail(health, 1)
    assert await health.state(DEPLOYMENT) == "closed"


async def test_half_open_allows_one_probe(tracker: tuple[Any, Clock]) -> None:
    health, clock = tracker
    await fail(health, 3)
    clock.now += 2.0
    assert await health.state(DEPLOYMENT) == "half_open"
    assert await health.acquire(DEPLOYMENT) == 0
    assert await health.acquire(DEPLOYMENT) == pytest.approx(5.0)
    clock.now += 1.0
    assert await health.acquire(DEPLOYMENT) == pytest.approx(4.0)


async def test_probe_success_closes_breaker(tracker: tuple[Any, Clock]) -> None:
    health, clock = tracker
    await fail(health, 3)
    clock.now += 2.0
    assert await health.acquire(DEPLOYMENT) == 0
    await health.record_success(DEPLOYMENT, 10.0)
    assert await health.state(DEPLOYMENT) == "closed"
    assert await health.acquire(DEPLOYMENT) == 0
    assert await health.acquire(DEPLOYMENT) == 0


async def test_probe_failure_doubles_cooldown(tracker: tuple[Any, Clock]) -> None:
    health, clock = tracker
    await fail(health, 3)
    clock.now += 2.0
    assert await health.acquire(DEPLOYMENT) == 0
    await fail(health, 1)
    assert await health.state(DEPLOYMENT) == "open"
    assert await health.acquire(DEPLOYMENT) == pytest.approx(4.0)

    clock.now += 4.0
    assert await health.acquire(DEPLOYMENT) == 0
    await fail(health, 1)
    # 2 s doubled twice is 8 s, capped at max_cooldown_s.
    assert await health.acquire(DEPLOYMENT) == pytest.approx(7.0)


async def test_unfinished_probe_frees_slot_after_timeout(tracker: tuple[Any, Clock]) -> None:
    health, clock = tracker
    await fail(health, 3)
    clock.now += 2.0
    assert await health.acquire(DEPLOYMENT) == 0
    clock.now += 5.0
    assert await health.acquire(DEPLOYMENT) == 0


async def test_retry_after_holds_deployment_back(tracker: tuple[Any, Clock]) -> None:
    health, clock = tracker
    await health.record_failure(DEPLOYMENT, rate_limited(3.0), 10.0)
    assert await health.acquire(DEPLOYMENT) == pytest.approx(3.0)
    assert await health.acquire("m/backup") == 0
    assert await health.state(DEPLOYMENT) == "closed"
    clock.now += 3.0
    assert await health.acquire(DEPLOYMENT) == 0


async def test_retry_after_is_capped(tracker: tuple[Any, Clock]) -> None:
    health, _ = tracker
    await health.record_failure(DEPLOYMENT, rate_limited(3600.0), 10.0)
    assert await health.acquire(DEPLOYMENT) == pytest.approx(7.0)


async def test_rate_limits_do_not_open_breaker(tracker: tuple[Any, Clock]) -> None:
    health, _ = tracker
    await fail(health, 5, rate_limited(None))
    assert await health.state(DEPLOYMENT) == "closed"
    assert await health.acquire(DEPLOYMENT) == 0


async def test_bad_requests_do_not_open_breaker(tracker: tuple[Any, Clock]) -> None:
    health, _ = tracker
    await fail(health, 5, bad_request())
    assert await health.state(DEPLOYMENT) == "closed"


async def test_redis_state_is_shared_between_replicas() -> None:
    prefix = f"aigw-test:{uuid.uuid4().hex}:"
    clock = Clock()
    first_client = redis.Redis.from_url(REDIS_URL)
    second_client = redis.Redis.from_url(REDIS_URL)
    first = RedisHealth(first_client, SETTINGS, key_prefix=prefix, clock=clock)
    second = RedisHealth(second_client, SETTINGS, key_prefix=prefix, clock=clock)
    try:
        await fail(first, 3)
        assert await second.state(DEPLOYMENT) == "open"
        assert await second.acquire(DEPLOYMENT) == pytest.approx(2.0)

        clock.now += 2.0
        assert await first.acquire(DEPLOYMENT) == 0
        # The one probe slot is taken by the other replica.
        assert await second.acquire(DEPLOYMENT) == pytest.approx(5.0)
        await first.record_success(DEPLOYMENT, 10.0)
        assert await second.acquire(DEPLOYMENT) == 0
    finally:
        await first_client.delete(prefix + DEPLOYMENT)
        await first_client.aclose()
        await second_client.aclose()


async def test_redis_key_expires() -> None:
    prefix = f"aigw-test:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(REDIS_URL)
    health = RedisHealth(client, SETTINGS, key_prefix=prefix, ttl_s=60.0)
    try:
        await fail(health, 1)
        ttl_ms = await client.pttl(prefix + DEPLOYMENT)
        assert 59_000 < ttl_ms <= 60_000
    finally:
        await client.delete(prefix + DEPLOYMENT)
        await client.aclose()


async def test_unreachable_redis_fails_open() -> None:
    # Port 9 on the loopback (discard) has no listener here, so every call fails at once.
    health = RedisHealth.from_url("redis://127.0.0.1:9/0", SETTINGS)
    try:
        await fail(health, 5)
        assert await health.acquire(DEPLOYMENT) == 0
        assert await health.state(DEPLOYMENT) == "closed"
    finally:
        await health.close()
