"""Admit through gRPC: budgets and rate limits, in process and in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import psycopg
import pytest
from aigateway.metering.v1 import metering_service_pb2 as pb
from google.rpc import error_details_pb2

from tests.fixtures.metering import (
    METERING_REDIS_URL,
    MeteringHarness,
    StartMetering,
    bad_field,
    error_detail,
    error_reason,
    principal,
    settle_request,
)

pytestmark = pytest.mark.integration

StartBackend = Callable[..., Awaitable[MeteringHarness]]


@pytest.fixture(params=["in_process", "redis"])
def start_backend(
    request: pytest.FixtureRequest, start_metering: StartMetering, metering_redis_prefix: str
) -> StartBackend:
    """Start a metering server with budgets and limits in process or in Redis."""

    async def start(**overrides: object) -> MeteringHarness:
        if request.param == "redis":
            overrides = {
                "redis_url": METERING_REDIS_URL,
                "redis_prefix": metering_redis_prefix,
                **overrides,
            }
        return await start_metering(**overrides)

    return start


def admit_request(
    request_id: str, budget_usd: float | None = 1.0, estimate: float = 0.30, key_id: str = "key-1"
) -> pb.AdmitRequest:
    return pb.AdmitRequest(
        request_id=request_id,
        principal=principal(key_id=key_id, budget_usd=budget_usd),
        model="gpt-4o-mini",
        estimated_prompt_tokens=100,
        estimated_cost_usd=estimate,
    )


async def _admit_all(server: MeteringHarness, requests: list[pb.AdmitRequest]) -> list[object]:
    results: list[object] = await asyncio.gather(
        *(server.stub.Admit(request) for request in requests), return_exceptions=True
    )
    return results


async def test_concurrent_admits_fill_budget_exactly(start_backend: StartBackend) -> None:
    server = await start_backend()

    results = await _admit_all(server, [admit_request(f"req-{index}") for index in range(20)])

    admitted = [result for result in results if isinstance(result, pb.AdmitResponse)]
    rejected = [result for result in results if isinstance(result, grpc.aio.AioRpcError)]
    assert len(admitted) == 3
    assert len(rejected) == 17
    assert {error.code() for error in rejected} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert {error_reason(error) for error in rejected} == {"BUDGET_EXCEEDED"}
    assert sorted(round(response.remaining_budget_usd, 9) for response in admitted) == [
        0.1,
        0.4,
        0.7,
    ]


async def test_budget_exceeded_details(start_backend: StartBackend) -> None:
    server = await start_backend()
    await server.stub.Settle(
        settle_request("spent", principal=principal(budget_usd=1.0), cost_usd=0.9)
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Admit(admit_request("over"))

    error = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_detail(error, error_details_pb2.ErrorInfo)
    assert info.reason == "BUDGET_EXCEEDED"
    assert dict(info.metadata) == {
        "key_id": "key-1",
        "budget_usd": "1.00",
        "spent_usd": "0.90",
        "reserved_usd": "0.00",
        "estimated_cost_usd": "0.30",
    }
    quota = error_detail(error, error_details_pb2.QuotaFailure)
    assert quota.violations[0].subject == "api_key:key-1"
    # Spend alone blocks the request, so waiting would not help.
    assert error_detail(error, error_details_pb2.RetryInfo) is None


async def test_open_reservations_suggest_retry(start_backend: StartBackend) -> None:
    server = await start_backend()
    await server.stub.Admit(admit_request("open-1", estimate=0.8))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Admit(admit_request("open-2", estimate=0.5))

    assert error_reason(caught.value) == "BUDGET_EXCEEDED"
    retry = error_detail(caught.value, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToMilliseconds() == 1000


async def test_settle_replaces_reservation_with_cost(start_backend: StartBackend) -> None:
    server = await start_backend()
    first = await server.stub.Admit(admit_request("r1", estimate=0.5))

    await server.stub.Settle(
        settle_request("r1", principal=principal(budget_usd=1.0), cost_usd=0.1)
    )
    second = await server.stub.Admit(admit_request("r2", estimate=0.5))

    assert first.remaining_budget_usd == pytest.approx(0.5)
    assert second.remaining_budget_usd == pytest.approx(0.4)


async def test_admit_is_idempotent(start_backend: StartBackend) -> None:
    server = await start_backend(rpm_limit=1)

    first = await server.stub.Admit(admit_request("same", estimate=0.6))
    again = await server.stub.Admit(admit_request("same", estimate=0.6))

    assert first.remaining_budget_usd == pytest.approx(0.4)
    assert again.remaining_budget_usd == pytest.approx(0.4)


async def test_no_budget_admits_without_limit(start_backend: StartBackend) -> None:
    server = await start_backend()

    response = await server.stub.Admit(admit_request("free", budget_usd=None, estimate=1e5))

    assert not response.HasField("remaining_budget_usd")


async def test_repeated_settle_releases_without_spending(start_backend: StartBackend) -> None:
    server = await start_backend()
    await server.stub.Admit(admit_request("twice", estimate=0.2))
    request = settle_request("twice", principal=principal(budget_usd=1.0), cost_usd=0.2)

    await server.stub.Settle(request)
    await server.stub.Settle(request)
    response = await server.stub.Admit(admit_request("after", estimate=0.1))

    assert response.remaining_budget_usd == pytest.approx(0.7)


async def test_spend_is_loaded_from_ledger(start_backend: StartBackend) -> None:
    first = await start_backend()
    for index in range(3):
        await first.stub.Settle(settle_request(f"old-{index}", cost_usd=0.3))
    await first.close()

    # A new process (and, with Redis, a key that has no spend yet) starts from the ledger.
    second = await start_backend(redis_prefix=f"{first.config.redis_prefix}restart:")
    response = await second.stub.Admit(admit_request("new", estimate=0.05))

    assert response.remaining_budget_usd == pytest.approx(0.05)


async def test_reservation_expires(start_backend: StartBackend) -> None:
    server = await start_backend(reservation_ttl_s=0.2)
    await server.stub.Admit(admit_request("abandoned", estimate=0.9))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Admit(admit_request("blocked", estimate=0.9))
    await asyncio.sleep(0.3)
    response = await server.stub.Admit(admit_request("later", estimate=0.9))

    assert error_reason(caught.value) == "BUDGET_EXCEEDED"
    assert response.remaining_budget_usd == pytest.approx(0.1)


async def test_rpm_limit_rejects_sixth_request(start_backend: StartBackend) -> None:
    server = await start_backend(rpm_limit=5)

    for index in range(5):
        await server.stub.Admit(admit_request(f"rpm-{index}", budget_usd=None))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Admit(admit_request("rpm-5", budget_usd=None))

    error = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_detail(error, error_details_pb2.ErrorInfo)
    assert info.reason == "RATE_LIMITED"
    assert info.metadata["limit"] == "requests"
    assert info.metadata["requests_per_minute"] == "5"
    retry = error_detail(error, error_details_pb2.RetryInfo)
    # GCRA spaces requests 60 / 5 = 12 s apart after the burst.
    assert 11_000 < retry.retry_delay.ToMilliseconds() <= 12_000
    assert error_detail(error, error_details_pb2.QuotaFailure).violations[0].subject == (
        "api_key:key-1"
    )


async def test_rpm_limit_is_per_key(start_backend: StartBackend) -> None:
    server = await start_backend(rpm_limit=1)

    await server.stub.Admit(admit_request("a", budget_usd=None, key_id="key-a"))
    await server.stub.Admit(admit_request("b", budget_usd=None, key_id="key-b"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Admit(admit_request("c", budget_usd=None, key_id="key-a"))

    assert error_reason(caught.value) == "RATE_LIMITED"


async def test_concurrent_admits_respect_rpm(start_backend: StartBackend) -> None:
    server = await start_backend(rpm_limit=5)

    results = await _admit_all(
        server, [admit_request(f"burst-{index}", budget_usd=None) for index in range(20)]
    )

    assert sum(isinstance(result, pb.AdmitResponse) for result in results) == 5


async def test_tpm_limit_counts_settled_tokens(start_backend: StartBackend) -> None:
    server = await start_backend(tpm_limit=1000)
    first = admit_request("t1", budget_usd=None)
    first.estimated_prompt_tokens = 300

    await server.stub.Admit(first)
    # The provider reported 100 prompt and 820 completion tokens: 620 beyond the estimate.
    usage = settle_request("t1").usage
    usage.prompt_tokens, usage.completion_tokens = 100, 820
    await server.stub.Settle(settle_request("t1", usage=usage))
    second = admit_request("t2", budget_usd=None)
    second.estimated_prompt_tokens = 200
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Admit(second)

    info = error_detail(caught.value, error_details_pb2.ErrorInfo)
    assert info.reason == "RATE_LIMITED"
    assert info.metadata["limit"] == "tokens"
    assert error_detail(caught.value, error_details_pb2.RetryInfo) is not None


async def test_request_larger_than_tpm_is_rejected(start_backend: StartBackend) -> None:
    server = await start_backend(tpm_limit=1000)
    request = admit_request("huge", budget_usd=None)
    request.estimated_prompt_tokens = 5000

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Admit(request)

    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(caught.value) == "RATE_LIMITED"
    assert error_detail(caught.value, error_details_pb2.RetryInfo) is None


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"request_id": ""}, "request_id", "MISSING_REQUEST_ID"),
        ({"principal": None}, "principal", "MISSING_PRINCIPAL"),
        ({"principal": principal(tenant="")}, "principal.tenant", "MISSING_TENANT"),
        ({"principal": principal(key_id="")}, "principal.key_id", "MISSING_KEY_ID"),
        ({"principal": principal(budget_usd=-1.0)}, "principal.budget_usd", "INVALID_BUDGET"),
        (
            {"estimated_prompt_tokens": -1},
            "estimated_prompt_tokens",
            "INVALID_ESTIMATED_PROMPT_TOKENS",
        ),
        ({"estimated_cost_usd": -0.5}, "estimated_cost_usd", "INVALID_ESTIMATED_COST"),
        ({"estimated_cost_usd": float("inf")}, "estimated_cost_usd", "INVALID_ESTIMATED_COST"),
    ],
)
async def test_admit_rejects_invalid_request(
    start_metering: StartMetering, change: dict[str, object], field: str, reason: str
) -> None:
    server = await start_metering()
    request = admit_request("invalid")
    for name, value in change.items():
        if value is None:
            request.ClearField(name)
        elif name == "principal":
            request.principal.CopyFrom(value)
        else:
            setattr(request, name, value)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Admit(request)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == reason
    assert bad_field(caught.value) == field


async def test_admit_unavailable_without_redis(start_metering: StartMetering) -> None:
    # Port 1 on 127.0.0.1 has no listener, so every Redis call fails at once.
    server = await start_metering(redis_url="redis://127.0.0.1:1/0", rpm_limit=5)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Admit(admit_request("no-redis"))

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(caught.value) == "STORE_UNAVAILABLE"
    assert error_detail(caught.value, error_details_pb2.RetryInfo) is not None


async def test_settle_succeeds_without_redis(start_metering: StartMetering) -> None:
    server = await start_metering(redis_url="redis://127.0.0.1:1/0", rpm_limit=5)

    response = await server.stub.Settle(settle_request("redis-down"))

    assert response.recorded is True
    async with await psycopg.AsyncConnection.connect(server.config.database_url) as conn:
        cursor = await conn.execute("SELECT count(*) FROM metering_usage")
        assert await cursor.fetchone() == (1,)


async def test_replicas_share_budget_through_redis(
    start_metering: StartMetering, metering_redis_prefix: str
) -> None:
    replicas = [
        await start_metering(redis_url=METERING_REDIS_URL, redis_prefix=metering_redis_prefix)
        for _ in range(2)
    ]

    results = await asyncio.gather(
        *(replicas[index % 2].stub.Admit(admit_request(f"shared-{index}")) for index in range(20)),
        return_exceptions=True,
    )

    assert sum(isinstance(result, pb.AdmitResponse) for result in results) == 3
