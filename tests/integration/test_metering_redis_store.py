"""The Redis budget store against a real Redis: settled markers and large amounts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from services.metering.apikeys import ApiKey
from services.metering.budgets import RedisBudgetStore, usd_to_nanos
from tests.fixtures.metering import METERING_REDIS_URL

pytestmark = pytest.mark.integration

KEY = ApiKey("acme", "key:{1}")


@pytest.fixture
async def store(metering_redis_prefix: str) -> AsyncIterator[RedisBudgetStore]:
    redis = Redis.from_url(METERING_REDIS_URL)
    yield RedisBudgetStore(redis, metering_redis_prefix, reservation_ttl_s=60)
    await redis.aclose()


async def _spend(store: RedisBudgetStore) -> int:
    result = await store.reserve(KEY, "probe", 0, 10**18)
    assert result is not None
    return result.spend


async def test_unloaded_spend_returns_none(store: RedisBudgetStore) -> None:
    assert await store.reserve(KEY, "r1", 10, 100) is None


async def test_queued_settlement_counts_once(store: RedisBudgetStore) -> None:
    await store.load_spend(KEY, 0)

    first = await store.settle(KEY, "q1", 50, add_spend=True, mark_settled=True)
    repeat_queued = await store.settle(KEY, "q1", 50, add_spend=True, mark_settled=True)
    # The outbox of another replica had not flushed, so the ledger took the row as new.
    repeat_written = await store.settle(KEY, "q1", 50, add_spend=True, mark_settled=False)

    assert (first, repeat_queued, repeat_written) == (True, False, False)
    assert await _spend(store) == 50


async def test_written_settlement_leaves_no_marker(
    store: RedisBudgetStore, metering_redis_prefix: str
) -> None:
    await store.load_spend(KEY, 0)

    first = await store.settle(KEY, "w1", 70, add_spend=True, mark_settled=False)
    released = await store.settle(KEY, "w1", 70, add_spend=False, mark_settled=False)

    redis = Redis.from_url(METERING_REDIS_URL)
    markers = [key async for key in redis.scan_iter(match=f"{metering_redis_prefix}settled:*")]
    await redis.aclose()
    assert (first, released) == (True, True)
    assert markers == []
    assert await _spend(store) == 70


async def test_amounts_above_float_print_range(store: RedisBudgetStore) -> None:
    # 600,000 USD is 6e14 nano-dollars, which Lua would print in exponent notation.
    await store.load_spend(KEY, usd_to_nanos(600_000))

    admitted = await store.reserve(KEY, "big", usd_to_nanos(300_000), usd_to_nanos(1_000_000))
    await store.settle(KEY, "big", usd_to_nanos(250_000.5), add_spend=True, mark_settled=False)
    rejected = await store.reserve(KEY, "bigger", usd_to_nanos(150_000), usd_to_nanos(1_000_000))

    assert admitted is not None and admitted.admitted
    assert admitted.reserved == usd_to_nanos(300_000)
    assert rejected is not None and not rejected.admitted
    assert rejected.spend == usd_to_nanos(850_000.5)
    assert rejected.reserved == 0
