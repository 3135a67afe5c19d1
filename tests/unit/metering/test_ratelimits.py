"""GCRA rate limits in the in-process store."""

from __future__ import annotations

import pytest

from libs.errors import ResourceExhaustedError
from services.metering.apikeys import ApiKey
from services.metering.ratelimits import (
    LocalRateLimitStore,
    RateLimiter,
    RateLimits,
    advance,
    overshoot,
)

KEY = ApiKey("acme", "key-1")


class FakeClock:
    """A monotonic clock that advances only when a test changes ``now``."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def make_limiter(rpm: int = 0, tpm: int = 0, ttl_s: float = 600.0) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    limits = RateLimits(rpm, tpm)
    return RateLimiter(limits, LocalRateLimitStore(limits, ttl_s, clock=clock)), clock


def test_gcra_spacing() -> None:
    tat = advance(0.0, 100.0, 1, 5)

    assert tat == 112.0
    assert overshoot(advance(100.0 + 60.0, 100.0, 1, 5), 100.0) == 12.0


async def test_rpm_admits_burst_then_rejects() -> None:
    limiter, _ = make_limiter(rpm=5)

    for index in range(5):
        await limiter.acquire(KEY, f"r{index}", 0)
    with pytest.raises(ResourceExhaustedError) as caught:
        await limiter.acquire(KEY, "r5", 0)

    assert caught.value.reason == "RATE_LIMITED"
    assert caught.value.retry_after_s == 12.0
    assert caught.value.metadata["limit"] == "requests"


async def test_rpm_recovers_after_interval() -> None:
    limiter, clock = make_limiter(rpm=5)
    for index in range(5):
        await limiter.acquire(KEY, f"r{index}", 0)

    clock.now += 11.9
    with pytest.raises(ResourceExhaustedError):
        await limiter.acquire(KEY, "early", 0)
    clock.now += 0.1
    await limiter.acquire(KEY, "on-time", 0)
    with pytest.raises(ResourceExhaustedError) as caught:
        await limiter.acquire(KEY, "next", 0)

    assert caught.value.retry_after_s == 12.0


async def test_rejected_request_is_not_charged() -> None:
    limiter, clock = make_limiter(rpm=1)
    await limiter.acquire(KEY, "first", 0)

    for index in range(3):
        with pytest.raises(ResourceExhaustedError):
            await limiter.acquire(KEY, f"rejected-{index}", 0)
    clock.now += 60.0
    await limiter.acquire(KEY, "after-a-minute", 0)


async def test_repeated_request_id_is_charged_once() -> None:
    limiter, _ = make_limiter(rpm=2)

    await limiter.acquire(KEY, "same", 0)
    await limiter.acquire(KEY, "same", 0)
    await limiter.acquire(KEY, "other", 0)
    with pytest.raises(ResourceExhaustedError):
        await limiter.acquire(KEY, "third", 0)


async def test_tpm_limits_tokens() -> None:
    limiter, _ = make_limiter(tpm=1000)

    await limiter.acquire(KEY, "a", 600)
    await limiter.acquire(KEY, "b", 400)
    with pytest.raises(ResourceExhaustedError) as caught:
        await limiter.acquire(KEY, "c", 100)

    assert caught.value.metadata["limit"] == "tokens"
    assert caught.value.retry_after_s == pytest.approx(6.0)


async def test_tpm_rejection_does_not_charge_requests() -> None:
    limiter, _ = make_limiter(rpm=2, tpm=100)

    await limiter.acquire(KEY, "a", 100)
    with pytest.raises(ResourceExhaustedError):
        await limiter.acquire(KEY, "b", 50)
    await limiter.acquire(KEY, "c", 0)


async def test_request_above_tpm_has_no_retry() -> None:
    limiter, _ = make_limiter(tpm=1000)

    with pytest.raises(ResourceExhaustedError) as caught:
        await limiter.acquire(KEY, "huge", 1001)

    assert caught.value.retry_after_s is None
    assert caught.value.metadata["estimated_tokens"] == "1001"


async def test_settle_charges_tokens_beyond_estimate() -> None:
    limiter, _ = make_limiter(tpm=1000)
    await limiter.acquire(KEY, "a", 200)

    await limiter.settle(KEY, "a", 900)
    with pytest.raises(ResourceExhaustedError) as caught:
        await limiter.acquire(KEY, "b", 200)

    # 900 tokens used of 1000 per minute: 100 left, 200 needed, 100 tokens = 6 s.
    assert caught.value.retry_after_s == pytest.approx(6.0)


async def test_settle_below_estimate_charges_nothing() -> None:
    limiter, _ = make_limiter(tpm=1000)
    await limiter.acquire(KEY, "a", 500)

    await limiter.settle(KEY, "a", 100)
    await limiter.acquire(KEY, "b", 500)


async def test_no_limits_admit_everything() -> None:
    limiter, _ = make_limiter()

    for index in range(1000):
        await limiter.acquire(KEY, f"r{index}", 10_000)


async def test_limits_are_per_key() -> None:
    limiter, _ = make_limiter(rpm=1)

    await limiter.acquire(KEY, "a", 0)
    await limiter.acquire(ApiKey("acme", "key-2"), "b", 0)
    with pytest.raises(ResourceExhaustedError) as caught:
        await limiter.acquire(KEY, "c", 0)

    assert caught.value.subject == "api_key:key-1"
