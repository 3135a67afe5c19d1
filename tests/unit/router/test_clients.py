"""The router's metering and cache clients: batched sends, the settlement outbox,
admission skipped only when it cannot refuse, and Lookups skipped only when the cache's
key digest shows they would miss."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from aigateway.cache.v1 import cache_service_pb2 as cache_pb
from aigateway.metering.v1 import metering_service_pb2 as metering_pb
from aigateway.type.v1 import principal_pb2

from libs.cachekeys import exact_key, semantic_scope
from libs.errors import UnavailableError
from libs.keydigest import DIGEST_VERSION, KeyDigest, exact_item, scope_item
from services.router import clients
from services.router.clients import CacheClient, MeteringClient


class Unavailable(grpc.aio.AioRpcError):
    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down")


class FakeMetering:
    """Records the calls; fails while ``down`` is set."""

    def __init__(self, requests_per_minute: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.admits = 0
        self.limit_calls = 0
        self.down = False
        self.requests_per_minute = requests_per_minute

    async def SettleBatch(self, request: Any, **options: Any) -> Any:  # noqa: N802 - gRPC name
        await asyncio.sleep(0.01)
        if self.down:
            raise Unavailable()
        self.batches.append([item.request_id for item in request.settlements])
        return metering_pb.SettleBatchResponse(
            results=[metering_pb.SettleResult(recorded=True) for _ in request.settlements]
        )

    async def Admit(self, request: Any, **options: Any) -> Any:  # noqa: N802 - gRPC name
        if self.down:
            raise Unavailable()
        self.admits += 1
        return metering_pb.AdmitResponse()

    async def GetLimits(self, request: Any, **options: Any) -> Any:  # noqa: N802 - gRPC name
        self.limit_calls += 1
        if self.down:
            raise Unavailable()
        return metering_pb.GetLimitsResponse(requests_per_minute=self.requests_per_minute)


def _metering(fake: FakeMetering, linger_s: float = 0.0) -> MeteringClient:
    client = MeteringClient("127.0.0.1:9", linger_s=linger_s)
    client.stub = fake  # type: ignore[assignment]
    return client


async def _settle_steadily(client: MeteringClient, count: int, gap_s: float) -> None:
    for n in range(count):
        client.settle(metering_pb.SettleRequest(request_id=f"r{n}"))
        await asyncio.sleep(gap_s)


def _admit(budget_usd: float | None = None) -> metering_pb.AdmitRequest:
    principal = principal_pb2.Principal(tenant="acme", key_id="key-1")
    if budget_usd is not None:
        principal.budget_usd = budget_usd
    return metering_pb.AdmitRequest(request_id="r", principal=principal, model="m")


async def test_queued_settlements_share_a_call() -> None:
    fake = FakeMetering()
    client = _metering(fake)

    for n in range(50):
        client.settle(metering_pb.SettleRequest(request_id=f"r{n}"))
    await client.close()

    assert fake.batches[0] == ["r0"] or len(fake.batches) <= 2
    assert [request_id for batch in fake.batches for request_id in batch] == [f"r{n}" for n in range(50)]


async def test_settlements_arriving_within_the_linger_share_a_call() -> None:
    fake = FakeMetering()
    client = _metering(fake, linger_s=0.2)

    await _settle_steadily(client, 5, 0.01)
    assert fake.batches == []
    await client.close()

    assert fake.batches == [[f"r{n}" for n in range(5)]]


async def test_steady_settlements_one_call_per_linger() -> None:
    fake = FakeMetering()
    client = _metering(fake, linger_s=0.1)

    await _settle_steadily(client, 60, 0.005)
    await client.close()

    # 60 settlements over about 0.3 s: a call every 10 ms would make dozens.
    assert len(fake.batches) <= 5
    assert [request_id for batch in fake.batches for request_id in batch] == [f"r{n}" for n in range(60)]


async def test_failed_batch_is_retried_from_the_outbox() -> None:
    fake = FakeMetering()
    fake.down = True
    client = _metering(fake)

    client.settle(metering_pb.SettleRequest(request_id="kept"))
    await asyncio.sleep(0.05)
    assert [item.request_id for item in client.outbox] == ["kept"]
    fake.down = False
    await client.close(flush_timeout_s=2.0)

    assert ["kept"] in fake.batches
    assert not client.outbox


async def test_admission_skipped_without_budget_or_limits() -> None:
    fake = FakeMetering()
    client = _metering(fake)

    await client.admit(_admit())  # limits not known yet: admitted by the service
    await asyncio.sleep(0.01)
    await client.admit(_admit())
    await client.admit(_admit(budget_usd=5.0))

    assert fake.admits == 2
    assert fake.limit_calls == 1
    await client.close()


async def test_rate_limits_keep_every_admission() -> None:
    fake = FakeMetering(requests_per_minute=60)
    client = _metering(fake)

    for _ in range(3):
        await client.admit(_admit())
        await asyncio.sleep(0.01)

    assert fake.admits == 3
    await client.close()


async def test_admission_fails_closed_once_the_report_is_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients, "LIMITS_TTL_S", 0.05)
    fake = FakeMetering()
    client = _metering(fake)
    await client.admit(_admit())
    await asyncio.sleep(0.01)
    fake.down = True
    await client.admit(_admit())  # skipped: the report is fresh

    await asyncio.sleep(0.06)

    with pytest.raises(UnavailableError, match="metering"):
        await client.admit(_admit())
    await asyncio.sleep(0.01)
    with pytest.raises(UnavailableError, match="metering"):
        await client.admit(_admit())
    await client.close(flush_timeout_s=0.1)


class FakeCache:
    def __init__(self) -> None:
        self.batches: list[int] = []

    async def StoreBatch(self, request: Any, **options: Any) -> Any:  # noqa: N802 - gRPC name
        await asyncio.sleep(0.01)
        self.batches.append(len(request.entries))
        return cache_pb.StoreBatchResponse(results=[cache_pb.StoreResult() for _ in request.entries])


async def test_cache_stores_are_batched_and_flushed() -> None:
    fake = FakeCache()
    client = CacheClient("127.0.0.1:9", batch_size=8)
    client.stub = fake  # type: ignore[assignment]

    for n in range(20):
        client.store("acme", b'{"n": %d}' % n, b"{}")
    await client.close()

    assert sum(fake.batches) == 20
    assert max(fake.batches) <= 8
    assert len(fake.batches) < 20


async def test_cache_store_queue_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients, "MAX_PENDING_STORES", 3)
    fake = FakeCache()
    client = CacheClient("127.0.0.1:9", batch_size=8)
    client.stub = fake  # type: ignore[assignment]

    for n in range(6):
        client.store("acme", b'{"n": %d}' % n, b"{}")
    await client.close()

    assert client.dropped == 3
    assert sum(fake.batches) == 3


class OlderMetering(FakeMetering):
    """A metering service from before SettleBatch."""

    def __init__(self) -> None:
        super().__init__()
        self.settled: list[str] = []

    async def SettleBatch(self, request: Any, **options: Any) -> Any:  # noqa: N802 - gRPC name
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNIMPLEMENTED, grpc.aio.Metadata(), grpc.aio.Metadata(), "no")

    async def Settle(self, request: Any, **options: Any) -> Any:  # noqa: N802 - gRPC name
        self.settled.append(request.request_id)
        return metering_pb.SettleResponse(recorded=True)


async def test_older_metering_gets_one_settle_each() -> None:
    fake = OlderMetering()
    client = _metering(fake)

    for n in range(3):
        client.settle(metering_pb.SettleRequest(request_id=f"r{n}"))
    await client.close()

    assert fake.settled == ["r0", "r1", "r2"]
    assert not client.outbox


class FlakyOlderMetering(OlderMetering):
    """An older metering service whose Settle fails once for one request id."""

    def __init__(self, fail_once: str) -> None:
        super().__init__()
        self.fail_once = fail_once

    async def Settle(self, request: Any, **options: Any) -> Any:  # noqa: N802 - gRPC name
        if request.request_id == self.fail_once:
            self.fail_once = ""
            raise Unavailable()
        return await super().Settle(request)


async def test_outbox_keeps_what_one_by_one_settle_missed() -> None:
    fake = FlakyOlderMetering(fail_once="b")
    client = _metering(fake)

    for request_id in ("a", "b", "c"):
        client._enqueue(metering_pb.SettleRequest(request_id=request_id))
    await client.close(flush_timeout_s=3.0)

    assert sorted(fake.settled) == ["a", "b", "c"]
    assert not client.outbox


async def test_large_cache_stores_get_calls_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients, "STORE_CALL_BYTES", 100)
    fake = FakeCache()
    client = CacheClient("127.0.0.1:9", batch_size=8)
    client.stub = fake  # type: ignore[assignment]

    for size in (10, 10, 90, 10):
        client.store("acme", b"{}", b" " * size)
    await client.close()

    assert fake.batches == [2, 1, 1]


class FakeDigestCache:
    """Fake cache service that serves a key digest of the items in ``stored`` and counts the reads."""

    def __init__(self, version: str = DIGEST_VERSION) -> None:
        self.stored: list[bytes] = []
        self.reads = 0
        self.version = version
        self.code: grpc.StatusCode | None = None

    async def GetKeyDigest(self, request: Any, **options: Any) -> Any:  # noqa: N802 - gRPC name
        self.reads += 1
        if self.code is not None:
            raise grpc.aio.AioRpcError(self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), "no digest")
        digest = KeyDigest(4096, 4)
        for item in self.stored:
            digest.add(item)
        return cache_pb.GetKeyDigestResponse(
            bits=bytes(digest.bits), bit_count=4096, hash_count=4, key_version=self.version
        )

    async def StoreBatch(self, request: Any, **options: Any) -> Any:  # noqa: N802 - gRPC name
        return cache_pb.StoreBatchResponse(results=[cache_pb.StoreResult() for _ in request.entries])


def _chat(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


async def _digest_client(fake: FakeDigestCache) -> CacheClient:
    client = CacheClient("127.0.0.1:9", digest_refresh_s=0.05)
    client.stub = fake  # type: ignore[assignment]
    client.must_miss(client.digest_items("acme", _chat("warm-up"), False))  # starts the reads
    for _ in range(100):
        if client.digest is not None or client._digest_problem is not None:
            break
        await asyncio.sleep(0.01)
    return client


async def test_must_miss_only_for_absent_keys() -> None:
    fake = FakeDigestCache()
    stored = _chat("What is 2+2?")
    fake.stored.append(exact_item(exact_key("acme", stored)))
    client = await _digest_client(fake)

    assert not client.must_miss(client.digest_items("acme", stored, False))
    assert client.must_miss(client.digest_items("acme", _chat("What is 3+3?"), False))
    assert client.must_miss(client.digest_items("globex", stored, False))
    await client.close()


async def test_no_lookup_is_skipped_before_the_first_digest() -> None:
    client = CacheClient("127.0.0.1:9", digest_refresh_s=0.05)
    client.stub = FakeDigestCache()  # type: ignore[assignment]

    assert not client.must_miss(client.digest_items("acme", _chat("What is 3+3?"), False))
    await client.close()


async def test_must_miss_false_for_a_known_scope() -> None:
    fake = FakeDigestCache()
    cached = _chat("How do I reset my password?")
    scope = semantic_scope(cached)
    assert scope is not None
    fake.stored.append(scope_item("acme", "gpt-4o-mini", scope.context_hash))
    client = await _digest_client(fake)
    paraphrase = _chat("What are the steps to reset my password?")

    assert not client.must_miss(client.digest_items("acme", paraphrase, True))
    assert client.must_miss(client.digest_items("acme", paraphrase, False))
    await client.close()


async def test_store_sets_items_through_later_reads() -> None:
    fake = FakeDigestCache()
    client = await _digest_client(fake)
    request = _chat("What is 5+5?")
    items = client.digest_items("acme", request, True)
    assert client.must_miss(items)

    client.store("acme", b"{}", b"{}", True, items)

    assert not client.must_miss(items)
    reads = fake.reads
    for _ in range(100):
        if fake.reads > reads + 1:
            break
        await asyncio.sleep(0.01)
    # The fake never stored it, as a cache that applies the store late would not have yet.
    assert not client.must_miss(items)
    await client.close()


async def test_must_miss_ignores_a_stale_digest() -> None:
    fake = FakeDigestCache()
    client = await _digest_client(fake)
    items = client.digest_items("acme", _chat("What is 7+7?"), False)
    assert client.must_miss(items)

    fake.code = grpc.StatusCode.UNAVAILABLE
    client._digest_read_at -= client.digest_max_age_s + 1

    assert not client.must_miss(items)
    await client.close()


async def test_digest_of_other_key_version_unused() -> None:
    client = await _digest_client(FakeDigestCache(version="v0.bloom1"))

    assert client.digest is None
    assert "key version" in (client._digest_problem or "")
    assert not client.must_miss(client.digest_items("acme", _chat("What is 3+3?"), False))
    await client.close()


async def test_digest_reads_slow_down_when_unimplemented() -> None:
    fake = FakeDigestCache()
    fake.code = grpc.StatusCode.UNIMPLEMENTED
    client = await _digest_client(fake)
    await asyncio.sleep(0.2)

    assert fake.reads == 1
    assert client._digest_problem == "UNIMPLEMENTED"
    assert not client.must_miss(client.digest_items("acme", _chat("What is 3+3?"), False))
    await client.close()


async def test_digest_refresh_zero_turns_it_off() -> None:
    client = CacheClient("127.0.0.1:9", digest_refresh_s=0)
    fake = FakeDigestCache()
    client.stub = fake  # type: ignore[assignment]

    assert client.digest_items("acme", _chat("What is 3+3?"), True) == ()
    assert not client.must_miss(())
    await client.close()
    assert fake.reads == 0
