"""The exact cache's in-process backend: TTL, LRU bound and tenant invalidation."""

from __future__ import annotations

import pytest

from libs.cachekeys import InvalidCacheKeyError, exact_key
from services.cache.store import ExactCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(tenant: str, prompt: str) -> str:
    return exact_key(tenant, {"model": "m", "messages": [{"role": "user", "content": prompt}]})


async def test_set_then_get() -> None:
    cache = await ExactCache.open(None, ttl_s=60)
    await cache.set(key("acme", "a"), b'{"id":"1"}')

    assert cache.backend == "memory"
    assert await cache.get(key("acme", "a")) == b'{"id":"1"}'
    assert await cache.get(key("acme", "b")) is None


async def test_entry_expires_after_ttl() -> None:
    clock = FakeClock()
    cache = await ExactCache.open(None, ttl_s=10, clock=clock)
    await cache.set(key("acme", "a"), b"v")

    clock.now += 9.9
    assert await cache.get(key("acme", "a")) == b"v"
    clock.now += 0.2
    assert await cache.get(key("acme", "a")) is None


async def test_least_recently_used_is_evicted() -> None:
    cache = await ExactCache.open(None, ttl_s=60, max_entries=2)
    await cache.set(key("acme", "a"), b"a")
    await cache.set(key("acme", "b"), b"b")
    assert await cache.get(key("acme", "a")) == b"a"  # "b" is now the least recently used

    await cache.set(key("acme", "c"), b"c")

    assert await cache.get(key("acme", "a")) == b"a"
    assert await cache.get(key("acme", "b")) is None
    assert await cache.get(key("acme", "c")) == b"c"


async def test_overwrite_keeps_one_entry() -> None:
    cache = await ExactCache.open(None, ttl_s=60, max_entries=2)
    await cache.set(key("acme", "a"), b"old")
    await cache.set(key("acme", "a"), b"new")
    await cache.set(key("acme", "b"), b"b")

    assert await cache.get(key("acme", "a")) == b"new"
    assert await cache.delete_tenant("acme") == 2


async def test_delete_tenant_counts_and_spares_others() -> None:
    cache = await ExactCache.open(None, ttl_s=60)
    for prompt in ("a", "b", "c"):
        await cache.set(key("acme", prompt), prompt.encode())
    await cache.set(key("globex", "a"), b"g")

    assert await cache.delete_tenant("acme") == 3
    assert await cache.get(key("acme", "a")) is None
    assert await cache.get(key("globex", "a")) == b"g"
    assert await cache.delete_tenant("acme") == 0


async def test_delete_tenant_skips_expired_in_count() -> None:
    clock = FakeClock()
    cache = await ExactCache.open(None, ttl_s=10, clock=clock)
    await cache.set(key("acme", "old"), b"1")
    clock.now += 11
    await cache.set(key("acme", "new"), b"2")

    assert await cache.delete_tenant("acme") == 1


async def test_set_rejects_key_without_tenant() -> None:
    cache = await ExactCache.open(None, ttl_s=60)

    with pytest.raises(InvalidCacheKeyError):
        await cache.set("not-a-cache-key", b"v")


@pytest.mark.parametrize(("ttl_s", "max_entries"), [(0, 10), (10, 0)])
async def test_open_rejects_non_positive_bounds(ttl_s: int, max_entries: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        await ExactCache.open(None, ttl_s=ttl_s, max_entries=max_entries)
