"""Settle and GetUsage through gRPC against a real PostgreSQL ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import psycopg
import pytest
from aigateway.metering.v1 import metering_service_pb2 as pb
from aigateway.type.v1 import chat_pb2
from google.protobuf import timestamp_pb2
from prometheus_client import REGISTRY

from tests.fixtures.metering import (
    StartMetering,
    bad_field,
    error_reason,
    principal,
    settle_request,
)

pytestmark = pytest.mark.integration


async def _rows(database_url: str, query: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(query)
        return await cursor.fetchall()


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def test_settle_twice_writes_one_row(start_metering: StartMetering) -> None:
    server = await start_metering()
    request = settle_request("req-dup-1", cost_usd=0.25)

    first = await server.stub.Settle(request)
    second = await server.stub.Settle(request)

    assert first.recorded is True
    assert second.recorded is False
    rows = await _rows(
        server.config.database_url, "SELECT request_id, cost_usd FROM metering_usage"
    )
    assert rows == [("req-dup-1", Decimal("0.250000000"))]


async def test_settle_stores_every_column(start_metering: StartMetering) -> None:
    server = await start_metering()
    started = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    usage = chat_pb2.Usage(prompt_tokens=1200, completion_tokens=300, total_tokens=1500)
    usage.prompt_tokens_details.cached_tokens = 1000
    usage.completion_tokens_details.reasoning_tokens = 120
    request = settle_request(
        "req-columns",
        usage=usage,
        cost_usd=0.000123456789,
        outcome="cancelled",
        stream=True,
        start_time=_timestamp(started),
        latency_ms=845.25,
    )

    await server.stub.Settle(request)

    rows = await _rows(
        server.config.database_url,
        "SELECT tenant, key_id, model, deployment, provider, prompt_tokens, completion_tokens,"
        " cached_tokens, reasoning_tokens, cost_usd, outcome, stream, start_time, latency_ms"
        " FROM metering_usage",
    )
    assert rows == [
        (
            "acme",
            "key-1",
            "gpt-4o-mini",
            "openai-gpt-4o-mini",
            "openai",
            1200,
            300,
            1000,
            120,
            Decimal("0.000123457"),
            "cancelled",
            True,
            started,
            845.25,
        )
    ]


async def test_concurrent_settles_sum_exactly(start_metering: StartMetering) -> None:
    server = await start_metering()
    costs = [Decimal("0.001234") * (index + 1) for index in range(50)]

    responses = await asyncio.gather(
        *(
            server.stub.Settle(settle_request(f"req-many-{index}", cost_usd=float(cost)))
            for index, cost in enumerate(costs)
        )
    )

    assert all(response.recorded for response in responses)
    rows = await _rows(
        server.config.database_url, "SELECT count(*), sum(cost_usd) FROM metering_usage"
    )
    assert rows == [(50, sum(costs))]
    usage = await server.stub.GetUsage(pb.GetUsageRequest(tenant="acme"))
    assert usage.requests == 50
    assert usage.cost_usd == pytest.approx(float(sum(costs)), abs=1e-9)


async def test_settle_counts_metrics_once(start_metering: StartMetering) -> None:
    server = await start_metering()
    labels = {"model": "metrics-model", "provider": "anthropic"}

    def sample(name: str, **extra: str) -> float:
        return REGISTRY.get_sample_value(name, {**labels, **extra}) or 0.0

    before_prompt = sample("aigw_tokens_total", type="prompt")
    before_cost = sample("aigw_cost_usd_total")
    before_requests = sample("aigw_requests_total", outcome="ok")
    request = settle_request(
        "req-metrics", model="metrics-model", provider="anthropic", cost_usd=0.5
    )

    await server.stub.Settle(request)
    await server.stub.Settle(request)

    assert sample("aigw_tokens_total", type="prompt") - before_prompt == 100
    assert sample("aigw_cost_usd_total") - before_cost == pytest.approx(0.5)
    assert sample("aigw_requests_total", outcome="ok") - before_requests == 1


async def test_get_usage_sums_by_model(start_metering: StartMetering) -> None:
    server = await start_metering()
    now = datetime.now(UTC)
    settlements = [
        ("u1", "acme", "key-1", "zeta-model", 0.10, now - timedelta(hours=2)),
        ("u2", "acme", "key-1", "alpha-model", 0.20, now - timedelta(hours=1)),
        ("u3", "acme", "key-2", "alpha-model", 0.40, now - timedelta(minutes=30)),
        ("u4", "other", "key-9", "alpha-model", 8.00, now - timedelta(minutes=30)),
        ("u5", "acme", "key-1", "alpha-model", 1.00, now - timedelta(days=3)),
    ]
    for request_id, tenant, key_id, model, cost, started in settlements:
        await server.stub.Settle(
            settle_request(
                request_id,
                principal=principal(tenant, key_id),
                model=model,
                cost_usd=cost,
                start_time=_timestamp(started),
            )
        )

    everything = await server.stub.GetUsage(pb.GetUsageRequest(tenant="acme"))
    recent = await server.stub.GetUsage(
        pb.GetUsageRequest(tenant="acme", start_time=_timestamp(now - timedelta(days=1)))
    )
    one_key = await server.stub.GetUsage(
        pb.GetUsageRequest(
            tenant="acme", key_id="key-1", start_time=_timestamp(now - timedelta(days=1))
        )
    )
    empty = await server.stub.GetUsage(
        pb.GetUsageRequest(
            tenant="acme",
            start_time=_timestamp(now - timedelta(hours=1)),
            end_time=_timestamp(now - timedelta(hours=1)),
        )
    )

    assert everything.requests == 4
    assert everything.cost_usd == pytest.approx(1.70)
    assert [model.model for model in recent.models] == ["alpha-model", "zeta-model"]
    assert recent.requests == 3
    assert recent.prompt_tokens == 300
    assert recent.completion_tokens == 60
    assert recent.models[0].requests == 2
    assert recent.models[0].cost_usd == pytest.approx(0.60)
    assert recent.models[1].cost_usd == pytest.approx(0.10)
    assert one_key.requests == 2
    assert one_key.cost_usd == pytest.approx(0.30)
    assert empty.requests == 0
    assert list(empty.models) == []


async def test_migrations_run_once(start_metering: StartMetering) -> None:
    first = await start_metering()
    await start_metering()

    rows = await _rows(first.config.database_url, "SELECT version FROM metering_migrations")
    assert rows == [("0001_usage_ledger",)]


@pytest.mark.parametrize(
    ("request_fields", "field", "reason"),
    [
        ({"request_id": ""}, "request_id", "MISSING_REQUEST_ID"),
        ({"request_id": "r" * 257}, "request_id", "INVALID_REQUEST_ID"),
        ({"principal": None}, "principal", "MISSING_PRINCIPAL"),
        ({"principal": principal(tenant="")}, "principal.tenant", "MISSING_TENANT"),
        ({"principal": principal(key_id="")}, "principal.key_id", "MISSING_KEY_ID"),
        ({"cost_usd": -0.01}, "cost_usd", "INVALID_COST"),
        ({"cost_usd": float("nan")}, "cost_usd", "INVALID_COST"),
        ({"outcome": ""}, "outcome", "MISSING_OUTCOME"),
        ({"outcome": "Not OK"}, "outcome", "INVALID_OUTCOME"),
        ({"latency_ms": -1.0}, "latency_ms", "INVALID_LATENCY"),
        ({"usage": chat_pb2.Usage(prompt_tokens=-5)}, "usage.prompt_tokens", "INVALID_USAGE"),
        ({"model": "m" * 300}, "model", "FIELD_TOO_LONG"),
    ],
)
async def test_settle_rejects_invalid_request(
    start_metering: StartMetering, request_fields: dict[str, Any], field: str, reason: str
) -> None:
    server = await start_metering()
    request = settle_request(**{"request_id": "req-invalid", **request_fields})

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Settle(request)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == reason
    assert bad_field(caught.value) == field


@pytest.mark.parametrize(
    ("request_fields", "field", "reason"),
    [
        ({"tenant": ""}, "tenant", "MISSING_TENANT"),
        (
            {
                "start_time": _timestamp(datetime(2026, 2, 1, tzinfo=UTC)),
                "end_time": _timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
            },
            "end_time",
            "INVALID_TIME_RANGE",
        ),
    ],
)
async def test_get_usage_rejects_invalid_request(
    start_metering: StartMetering, request_fields: dict[str, object], field: str, reason: str
) -> None:
    server = await start_metering()
    request = pb.GetUsageRequest(**{"tenant": "acme", **request_fields})

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.GetUsage(request)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == reason
    assert bad_field(caught.value) == field
