"""The exact cache on the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from redis.asyncio import Redis

from libs.cachekeys import exact_key
from services.cache.store import CacheUnavailableError, ExactCache
from tests.fixtures.embedder import CACHE_REDIS_URL

pytestmark = pytest.mark.integration


def key(tenant: str, prompt: str) -> str:
    return exact_key(tenant, {"model": "m", "messages": [{"role": "user", "content": prompt}]})


async def test_redis_set_get_and_ttl(cache_redis_prefix: str) -> None:
    cache = await ExactCache.open(CACHE_REDIS_URL, ttl_s=1, prefix=cache_redis_prefix)
    try:
        await cache.set(key("acme", "a"), b"\x00binary\xff")

        assert cache.backend == "redis"
        assert await cache.get(key("acme", "a")) == b"\x00binary\xff"
        assert await cache.get(key("acme", "missing")) is None
        await asyncio.sleep(1.2)
        assert await cache.get(key("acme", "a")) is None
    finally:
        await cache.close()


async def test_redis_entry_has_ttl(cache_redis_prefix: str) -> None:
    cache = await ExactCache.open(CACHE_REDIS_URL, ttl_s=300, prefix=cache_redis_prefix)
    client = Redis.from_url(CACHE_REDIS_URL)
    try:
        entry = key("acme", "a")
        await cache.set(entry, b"v")

        ttl = await client.ttl(f"{cache_redis_prefix}e:{entry}")
        index_ttl = await client.ttl(f"{cache_redis_prefix}t:acme")
        assert 295 <= ttl <= 300
        assert 295 <= index_ttl <= 300
    finally:
        await client.aclose()
        await cache.close()


async def test_redis_delete_tenant(cache_redis_prefix: str) -> None:
    cache = await ExactCache.open(CACHE_REDIS_URL, ttl_s=60, prefix=cache_redis_prefix)
    client = Redis.from_url(CACHE_REDIS_URL)
    try:
        for index in range(1203):  # more than two delete batches
            await cache.set(key("acme", str(index)), b"a")
        await cache.set(key("globex", "0"), b"g")

        assert await cache.delete_tenant("acme") == 1203
        assert await cache.get(key("acme", "5")) is None
        assert await cache.get(key("globex", "0")) == b"g"
        assert await client.exists(f"{cache_redis_prefix}t:acme") == 0
        assert await cache.delete_tenant("acme") == 0
    finally:
        await client.aclose()
        await cache.close()


async def test_redis_index_drops_expired_keys(cache_redis_prefix: str) -> None:
    cache = await ExactCache.open(CACHE_REDIS_URL, ttl_s=1, prefix=cache_redis_prefix)
    client = Redis.from_url(CACHE_REDIS_URL)
    try:
        await cache.set(key("acme", "old"), b"1")
        await asyncio.sleep(1.1)
        await cache.set(key("acme", "new"), b"2")

        members = await client.zrange(f"{cache_redis_prefix}t:acme", 0, -1)
        assert members == [key("acme", "new").encode()]
        assert await cache.delete_tenant("acme") == 1
    finally:
        await client.aclose()
        await cache.close()


async def test_redis_unreachable_raises() -> None:
    # Port 1 on the loopback interface has no listener, so the connection is refused.
    with pytest.raises(CacheUnavailableError, match="PING") as caught:
        await ExactCache.open("redis://127.0.0.1:1/0", ttl_s=60, timeout_s=0.5)

    assert caught.value.reason == "CACHE_UNAVAILABLE"
    assert caught.value.metadata == {"backend": "redis"}
    assert caught.value.grpc_code == grpc.StatusCode.UNAVAILABLE
