"""The cache servicer over gRPC: exact and semantic hits, tenant scope, store options,
invalidation, stats, and every status code it returns."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aigateway.cache.v1 import cache_service_pb2 as pb
from aigateway.cache.v1 import cache_service_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from services.cache.embeddings import Embedder
from services.cache.service import CacheServicer, EmbeddingCache
from services.cache.store import ExactCache, SemanticStore
from tests.fixtures.embedder import serve_cache

pytestmark = pytest.mark.integration

ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Eight."}}],
    }
).encode()


def _request(text: str, model: str = "gpt-4o-mini") -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}]}).encode()


@pytest.fixture
async def cache_stub(pg_database: str, embedder: Embedder) -> AsyncIterator[pb_grpc.CacheServiceStub]:
    exact = await ExactCache.open(None, ttl_s=600)
    semantic = await SemanticStore.open(pg_database, ttl_s=600)
    try:
        async with serve_cache(CacheServicer(exact, semantic, EmbeddingCache(embedder))) as stub:
            yield stub
    finally:
        await exact.close()
        await semantic.close()


def _reason(error: grpc.aio.AioRpcError) -> tuple[str, str]:
    details = next(
        value for key, value in error.trailing_metadata() or () if key == "grpc-status-details-bin"
    )
    status = status_pb2.Status.FromString(details)
    info = error_details_pb2.ErrorInfo()
    bad = error_details_pb2.BadRequest()
    field = ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            detail.Unpack(bad)
            field = bad.field_violations[0].field
    return info.reason, field


async def test_exact_then_semantic_hit(cache_stub: Any) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    original = _request("How many legs does a spider have?")

    miss = await cache_stub.Lookup(pb.LookupRequest(tenant=tenant, request_json=original, allow_semantic=True))
    stored = await cache_stub.Store(pb.StoreRequest(tenant=tenant, request_json=original, response_json=ANSWER))
    exact = await cache_stub.Lookup(pb.LookupRequest(tenant=tenant, request_json=original, allow_semantic=True))
    semantic = await cache_stub.Lookup(
        pb.LookupRequest(tenant=tenant, request_json=_request("how many legs does a spider have"), allow_semantic=True)
    )
    near_miss = await cache_stub.Lookup(
        pb.LookupRequest(tenant=tenant, request_json=_request("How many legs does an ant have?"), allow_semantic=True)
    )
    no_semantic = await cache_stub.Lookup(
        pb.LookupRequest(tenant=tenant, request_json=_request("how many legs does a spider have"), allow_semantic=False)
    )

    assert miss.result == pb.LOOKUP_RESULT_MISS
    assert stored.semantic_stored is True
    assert exact.result == pb.LOOKUP_RESULT_EXACT_HIT
    assert exact.response_json == ANSWER
    assert semantic.result == pb.LOOKUP_RESULT_SEMANTIC_HIT
    assert semantic.response_json == ANSWER
    assert 0.9 < semantic.similarity <= 1.0
    assert near_miss.result == pb.LOOKUP_RESULT_MISS
    assert no_semantic.result == pb.LOOKUP_RESULT_MISS


async def test_other_tenant_and_model_miss(cache_stub: Any) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    original = _request("What is the capital of Portugal?")
    await cache_stub.Store(pb.StoreRequest(tenant=tenant, request_json=original, response_json=ANSWER))

    other_tenant = await cache_stub.Lookup(
        pb.LookupRequest(tenant=tenant + "x", request_json=original, allow_semantic=True)
    )
    other_model = await cache_stub.Lookup(
        pb.LookupRequest(
            tenant=tenant,
            request_json=_request("What is the capital of Portugal?", model="gpt-4o"),
            allow_semantic=True,
        )
    )

    assert other_tenant.result == pb.LOOKUP_RESULT_MISS
    assert other_model.result == pb.LOOKUP_RESULT_MISS


async def test_store_without_semantic_keeps_exact_only(cache_stub: Any) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    original = _request("Which planet is closest to the sun?")

    stored = await cache_stub.Store(
        pb.StoreRequest(tenant=tenant, request_json=original, response_json=ANSWER, allow_semantic=False)
    )
    exact = await cache_stub.Lookup(pb.LookupRequest(tenant=tenant, request_json=original, allow_semantic=True))
    paraphrase = await cache_stub.Lookup(
        pb.LookupRequest(
            tenant=tenant, request_json=_request("which planet is closest to the sun"), allow_semantic=True
        )
    )

    assert stored.semantic_stored is False
    assert exact.result == pb.LOOKUP_RESULT_EXACT_HIT
    assert paraphrase.result == pb.LOOKUP_RESULT_MISS


async def test_invalidate_and_stats(cache_stub: Any) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    original = _request("Name a prime number above ten.")
    await cache_stub.Store(pb.StoreRequest(tenant=tenant, request_json=original, response_json=ANSWER))
    before = await cache_stub.GetStats(pb.GetStatsRequest())

    invalidated = await cache_stub.Invalidate(pb.InvalidateRequest(tenant=tenant))
    after = await cache_stub.Lookup(pb.LookupRequest(tenant=tenant, request_json=original, allow_semantic=True))
    stats = await cache_stub.GetStats(pb.GetStatsRequest())

    assert invalidated.deleted == 2  # the exact entry and the semantic one
    assert after.result == pb.LOOKUP_RESULT_MISS
    assert stats.misses == before.misses + 1


@pytest.mark.parametrize(
    ("call", "reason", "field"),
    [
        ("lookup_no_tenant", "MISSING_TENANT", "tenant"),
        ("lookup_bad_json", "INVALID_JSON", "request_json"),
        ("lookup_array", "INVALID_JSON", "request_json"),
        ("store_bad_response", "INVALID_JSON", "response_json"),
        ("invalidate_no_tenant", "MISSING_TENANT", "tenant"),
    ],
)
async def test_invalid_arguments(cache_stub: Any, call: str, reason: str, field: str) -> None:
    calls = {
        "lookup_no_tenant": lambda: cache_stub.Lookup(pb.LookupRequest(request_json=_request("x"))),
        "lookup_bad_json": lambda: cache_stub.Lookup(pb.LookupRequest(tenant="t", request_json=b"{nope")),
        "lookup_array": lambda: cache_stub.Lookup(pb.LookupRequest(tenant="t", request_json=b"[1]")),
        "store_bad_response": lambda: cache_stub.Store(
            pb.StoreRequest(tenant="t", request_json=_request("x"), response_json=b"oops")
        ),
        "invalidate_no_tenant": lambda: cache_stub.Invalidate(pb.InvalidateRequest()),
    }

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls[call]()

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _reason(caught.value) == (reason, field)


async def test_store_batch_reports_each_entry(cache_stub: Any) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    first = _request("Name a prime number between ten and twenty.")
    second = _request("What colour is a ripe banana?")

    response = await cache_stub.StoreBatch(
        pb.StoreBatchRequest(
            entries=[
                pb.StoreRequest(tenant=tenant, request_json=first, response_json=ANSWER),
                pb.StoreRequest(tenant=tenant, request_json=b"{not json", response_json=ANSWER),
                pb.StoreRequest(tenant=tenant, request_json=second, response_json=ANSWER, allow_semantic=False),
            ]
        )
    )

    assert [result.semantic_stored for result in response.results] == [True, False, False]
    assert not response.results[0].HasField("error")
    assert response.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    for stored in (first, second):
        hit = await cache_stub.Lookup(pb.LookupRequest(tenant=tenant, request_json=stored))
        assert hit.result == pb.LOOKUP_RESULT_EXACT_HIT


async def test_store_batch_limit(cache_stub: Any) -> None:
    entry = pb.StoreRequest(tenant="t-limit", request_json=_request("Hello there."), response_json=ANSWER)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await cache_stub.StoreBatch(pb.StoreBatchRequest(entries=[entry] * 1001))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _reason(caught.value) == ("BATCH_TOO_LARGE", "entries")
