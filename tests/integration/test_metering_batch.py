"""SettleBatch and GetLimits through gRPC, against a real ledger."""

from __future__ import annotations

import grpc
import pytest
from aigateway.metering.v1 import metering_service_pb2 as pb
from google.rpc import code_pb2, error_details_pb2

from tests.fixtures.metering import StartMetering, principal, settle_request

pytestmark = pytest.mark.integration


async def test_settle_batch_writes_each_settlement_once(start_metering: StartMetering) -> None:
    server = await start_metering()
    await server.stub.Settle(settle_request("batch-0"))

    response = await server.stub.SettleBatch(
        pb.SettleBatchRequest(
            settlements=[
                settle_request("batch-0"),
                settle_request("batch-1", cost_usd=0.25),
                settle_request("batch-2"),
                settle_request("batch-1", cost_usd=0.25),
            ]
        )
    )

    assert [result.recorded for result in response.results] == [False, True, True, False]
    assert not any(result.HasField("error") for result in response.results)
    usage = await server.stub.GetUsage(pb.GetUsageRequest(tenant="acme"))
    assert usage.requests == 3
    assert usage.cost_usd == pytest.approx(0.0015 * 2 + 0.25)


async def test_invalid_settlement_fails_alone(start_metering: StartMetering) -> None:
    server = await start_metering()

    response = await server.stub.SettleBatch(
        pb.SettleBatchRequest(
            settlements=[settle_request("good-1"), settle_request("bad-1", cost_usd=-1.0), settle_request("good-2")]
        )
    )

    assert [result.recorded for result in response.results] == [True, False, True]
    error = response.results[1].error
    assert error.code == code_pb2.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in error.details)
    assert bad_request.field_violations[0].field == "cost_usd"


async def test_settle_batch_charges_budget(start_metering: StartMetering) -> None:
    server = await start_metering()
    budgeted = principal(budget_usd=1.0)

    await server.stub.SettleBatch(
        pb.SettleBatchRequest(
            settlements=[settle_request(f"spend-{n}", principal=budgeted, cost_usd=0.3) for n in range(3)]
        )
    )
    admitted = await server.stub.Admit(
        pb.AdmitRequest(
            request_id="after", principal=budgeted, model="gpt-4o-mini", estimated_cost_usd=0.05
        )
    )

    assert admitted.remaining_budget_usd == pytest.approx(0.05)


async def test_too_large_batch_is_rejected(start_metering: StartMetering) -> None:
    server = await start_metering()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.SettleBatch(
            pb.SettleBatchRequest(settlements=[settle_request(f"many-{n}") for n in range(1001)])
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "settlements has 1001 entries; the maximum is 1000" in (caught.value.details() or "")


async def test_get_limits_reports_rate_limits(start_metering: StartMetering) -> None:
    unlimited = await start_metering()
    limited = await start_metering(rpm_limit=60, tpm_limit=10_000)

    assert await unlimited.stub.GetLimits(pb.GetLimitsRequest()) == pb.GetLimitsResponse()
    reported = await limited.stub.GetLimits(pb.GetLimitsRequest())
    assert (reported.requests_per_minute, reported.tokens_per_minute) == (60, 10_000)
