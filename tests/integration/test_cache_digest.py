"""The cache's key digest: windows of one entry lifetime, Redis bitmaps shared by
replicas, semantic scopes read from PostgreSQL, and GetKeyDigest over gRPC."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from aigateway.cache.v1 import cache_service_pb2 as pb
from aigateway.cache.v1 import cache_service_pb2_grpc as pb_grpc
from redis.asyncio import Redis

from libs.cachekeys import exact_key, semantic_scope
from libs.keydigest import DIGEST_VERSION, HASH_COUNT, KeyDigest, exact_item, item_bits, scope_item
from services.cache.digest import DigestKeeper
from services.cache.embeddings import Embedder
from services.cache.service import CacheServicer, EmbeddingCache
from services.cache.store import ExactCache, SemanticStore
from tests.fixtures.embedder import CACHE_REDIS_URL, serve_cache

pytestmark = pytest.mark.integration

TTL_S = 100
BITS = 1 << 16


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(CACHE_REDIS_URL)
    yield client
    await client.aclose()


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_digest_keeps_an_item_two_windows(backend: str, redis_client: Redis, cache_redis_prefix: str) -> None:
    clock = Clock()
    redis = redis_client if backend == "redis" else None
    keeper = DigestKeeper(ttl_s=TTL_S, bit_count=BITS, redis=redis, prefix=cache_redis_prefix, clock=clock)
    item = exact_item("acme:" + "0" * 64)

    await keeper.add([item])
    assert item in await keeper.snapshot()

    # An entry stored at the very end of a window lives into the next one.
    clock.now += TTL_S
    assert item in await keeper.snapshot()

    clock.now += TTL_S
    assert item not in await keeper.snapshot()


async def test_replicas_share_the_redis_filter(redis_client: Redis, cache_redis_prefix: str) -> None:
    clock = Clock()
    first = DigestKeeper(ttl_s=TTL_S, bit_count=BITS, redis=redis_client, prefix=cache_redis_prefix, clock=clock)
    second = DigestKeeper(ttl_s=TTL_S, bit_count=BITS, redis=redis_client, prefix=cache_redis_prefix, clock=clock)
    item = exact_item("acme:" + "1" * 64)

    await first.add([item])

    assert item in await second.snapshot()
    window = int(clock.now // TTL_S)
    key = f"{cache_redis_prefix}digest:{BITS}:{window}"
    assert 2 * TTL_S <= await redis_client.ttl(key) <= 2 * TTL_S + 60
    # The stored bitmap is the filter itself: the item's bits are set where SETBIT put them.
    for n in item_bits(item, BITS, HASH_COUNT):
        assert await redis_client.getbit(key, n) == 1


async def test_replicas_with_another_size_keep_apart(redis_client: Redis, cache_redis_prefix: str) -> None:
    clock = Clock()
    small = DigestKeeper(ttl_s=TTL_S, bit_count=1024, redis=redis_client, prefix=cache_redis_prefix, clock=clock)
    large = DigestKeeper(ttl_s=TTL_S, bit_count=BITS, redis=redis_client, prefix=cache_redis_prefix, clock=clock)

    await small.add([b"item"])

    assert (await large.snapshot()).fill_ratio() == 0


async def test_scopes_of_earlier_processes_come_from_postgres(pg_database: str) -> None:
    semantic = await SemanticStore.open(pg_database, ttl_s=600)
    try:
        vector = np.ones(384, dtype=np.float32) / np.sqrt(384)
        await semantic.add("acme", "gpt-4o-mini", "c" * 64, "What is 2+2?", vector, b"{}")
        keeper = DigestKeeper(ttl_s=600, bit_count=BITS, semantic=semantic)

        digest = await keeper.snapshot()

        assert scope_item("acme", "gpt-4o-mini", "c" * 64) in digest
        assert scope_item("globex", "gpt-4o-mini", "c" * 64) not in digest
        await keeper.close()
    finally:
        await semantic.close()


@pytest.fixture
async def digest_stub() -> AsyncIterator[pb_grpc.CacheServiceStub]:
    exact = await ExactCache.open(None, ttl_s=600)
    try:
        async with serve_cache(CacheServicer(exact, None, None, DigestKeeper(ttl_s=600, bit_count=BITS))) as stub:
            yield stub
    finally:
        await exact.close()


async def test_stored_requests_are_in_the_served_digest(digest_stub: pb_grpc.CacheServiceStub) -> None:
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is 2+2?"}]}
    other = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is 3+3?"}]}
    await digest_stub.Store(
        pb.StoreRequest(tenant="acme", request_json=json.dumps(request).encode(), response_json=b"{}")
    )

    response = await digest_stub.GetKeyDigest(pb.GetKeyDigestRequest())
    digest = KeyDigest(response.bit_count, response.hash_count, response.bits)

    assert response.key_version == DIGEST_VERSION
    assert (response.bit_count, response.hash_count) == (BITS, HASH_COUNT)
    assert exact_item(exact_key("acme", request)) in digest
    assert exact_item(exact_key("globex", request)) not in digest
    assert exact_item(exact_key("acme", other)) not in digest
    # No semantic store here, so the scope was not stored and is not in the digest.
    scope = semantic_scope(request)
    assert scope is not None
    assert scope_item("acme", "gpt-4o-mini", scope.context_hash) not in digest


async def test_get_key_digest_without_a_keeper_is_unimplemented() -> None:
    exact = await ExactCache.open(None, ttl_s=600)
    try:
        async with serve_cache(CacheServicer(exact, None, None)) as stub:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetKeyDigest(pb.GetKeyDigestRequest())
    finally:
        await exact.close()

    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_store_puts_the_semantic_scope_in_the_digest(pg_database: str, embedder: Embedder) -> None:
    exact = await ExactCache.open(None, ttl_s=600)
    semantic = await SemanticStore.open(pg_database, ttl_s=600)
    keeper = DigestKeeper(ttl_s=600, bit_count=BITS, semantic=semantic)
    servicer = CacheServicer(exact, semantic, EmbeddingCache(embedder), keeper)
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "How do I reset my password?"}]}
    try:
        stored = await servicer.Store(
            pb.StoreRequest(tenant="acme", request_json=json.dumps(request).encode(), response_json=b"{}"),
            None,  # type: ignore[arg-type]
        )
        digest = await keeper.snapshot()
    finally:
        await keeper.close()
        await exact.close()
        await semantic.close()

    scope = semantic_scope(request)
    assert stored.semantic_stored
    assert scope is not None
    assert scope_item("acme", "gpt-4o-mini", scope.context_hash) in digest
    assert exact_item(exact_key("acme", request)) in digest


async def test_concurrent_first_snapshots_read_the_scopes_once(pg_database: str) -> None:
    semantic = await SemanticStore.open(pg_database, ttl_s=600)
    reads = 0
    live_scopes = semantic.live_scopes

    async def counted() -> list[tuple[str, str, str]]:
        nonlocal reads
        reads += 1
        return await live_scopes()

    semantic.live_scopes = counted  # type: ignore[method-assign]
    keeper = DigestKeeper(ttl_s=600, bit_count=BITS, semantic=semantic)
    try:
        await asyncio.gather(*(keeper.snapshot() for _ in range(5)))
    finally:
        await keeper.close()
        await semantic.close()

    assert reads == 1
