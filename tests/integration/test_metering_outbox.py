"""Settle keeps responding while PostgreSQL is stopped, and the rows arrive once it is back."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

import grpc
import psycopg
import pytest
from aigateway.metering.v1 import metering_service_pb2 as pb

from libs.pgserver import EmbeddedPostgres
from tests.fixtures.metering import StartMetering, error_reason, principal, settle_request

pytestmark = pytest.mark.integration


async def _ledger_rows(database_url: str) -> list[tuple[str, Decimal]]:
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=2) as conn:
        cursor = await conn.execute("SELECT request_id, cost_usd FROM metering_usage ORDER BY 1")
        return await cursor.fetchall()


async def _wait_for_rows(
    database_url: str, count: int, timeout_s: float
) -> list[tuple[str, Decimal]]:
    deadline = time.monotonic() + timeout_s
    rows: list[tuple[str, Decimal]] = []
    while time.monotonic() < deadline:
        rows = await _ledger_rows(database_url)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    return rows


async def test_settle_survives_database_outage(
    start_metering: StartMetering, metering_postgres: EmbeddedPostgres
) -> None:
    database_url = await asyncio.to_thread(metering_postgres.create_database, "outbox", ())
    server = await start_metering(database_url=database_url)
    before = await server.stub.Settle(settle_request("before-outage", cost_usd=0.5))

    # Stopping and starting block, so they run in a thread while the server keeps serving.
    await asyncio.to_thread(metering_postgres.stop)
    started = time.monotonic()
    during = await asyncio.gather(
        *(
            server.stub.Settle(settle_request(f"outage-{index}", cost_usd=0.1))
            for index in range(10)
        ),
    )
    answered_in = time.monotonic() - started
    repeat = await server.stub.Settle(settle_request("outage-3", cost_usd=0.1))
    with pytest.raises(grpc.aio.AioRpcError) as usage_error:
        await server.stub.GetUsage(pb.GetUsageRequest(tenant="acme"))
    with pytest.raises(grpc.aio.AioRpcError) as admit_error:
        await server.stub.Admit(
            pb.AdmitRequest(
                request_id="admit-outage",
                principal=principal(key_id="fresh", budget_usd=5.0),
                estimated_cost_usd=0.1,
            )
        )
    await asyncio.to_thread(metering_postgres.start)
    rows = await _wait_for_rows(database_url, 11, timeout_s=15)
    usage = await server.stub.GetUsage(pb.GetUsageRequest(tenant="acme"))

    assert before.recorded is True
    assert [response.recorded for response in during] == [True] * 10
    # Only the first failing write waits for a connection (1 s); the rest queue at once.
    assert answered_in < 3.0
    assert repeat.recorded is False
    assert usage_error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(usage_error.value) == "LEDGER_UNAVAILABLE"
    # A key whose spend was never loaded cannot be checked against its budget.
    assert admit_error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(admit_error.value) == "LEDGER_UNAVAILABLE"
    assert len(rows) == 11
    assert sum(cost for _, cost in rows) == Decimal("1.5")
    assert usage.requests == 11
    assert usage.cost_usd == pytest.approx(1.5)


async def test_full_outbox_rejects_settle(
    start_metering: StartMetering, metering_postgres: EmbeddedPostgres
) -> None:
    database_url = await asyncio.to_thread(metering_postgres.create_database, "outbox_full", ())
    server = await start_metering(database_url=database_url, outbox_max_rows=3, flush_timeout_s=0.2)
    await server.stub.Settle(settle_request("warm-up"))

    await asyncio.to_thread(metering_postgres.stop)
    queued = [await server.stub.Settle(settle_request(f"queued-{index}")) for index in range(3)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Settle(settle_request("one-too-many"))

    assert [response.recorded for response in queued] == [True] * 3
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(caught.value) == "LEDGER_UNAVAILABLE"


async def test_shutdown_logs_unwritten_rows(
    start_metering: StartMetering,
    metering_postgres: EmbeddedPostgres,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database_url = await asyncio.to_thread(metering_postgres.create_database, "outbox_shutdown", ())
    server = await start_metering(database_url=database_url, flush_timeout_s=0.3)
    await server.stub.Settle(settle_request("warm-up"))
    await asyncio.to_thread(metering_postgres.stop)
    await server.stub.Settle(settle_request("stranded", cost_usd=0.42))

    with caplog.at_level(logging.ERROR, logger="services.metering.outbox"):
        await server.close()

    lost = [
        record for record in caplog.records if record.getMessage() == "settlement lost at shutdown"
    ]
    assert len(lost) == 1
    settlement = lost[0].settlement  # type: ignore[attr-defined]
    assert settlement["request_id"] == "stranded"
    assert settlement["cost_usd"] == Decimal("0.420000000")
