"""The outbox queues rows while the writer fails and writes them when it recovers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from libs.errors import UnavailableError
from services.metering.ledger import UsageRecord
from services.metering.outbox import Outbox


class Down(Exception):
    """Stands for a connection failure."""


class Writer:
    """A database stand-in that fails while ``down`` and rejects ``bad`` request ids."""

    def __init__(self) -> None:
        self.down = True
        self.bad: set[str] = set()
        self.rows: dict[str, UsageRecord] = {}
        self.calls = 0

    async def __call__(self, records: Sequence[UsageRecord]) -> None:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise Down("connection refused")
        if any(record.request_id in self.bad for record in records):
            raise ValueError("numeric field overflow")
        for record in records:
            self.rows.setdefault(record.request_id, record)


def record(request_id: str, cost: str = "0.10", key_id: str = "key-1") -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        tenant="acme",
        key_id=key_id,
        model="m",
        deployment="d",
        provider="p",
        prompt_tokens=1,
        completion_tokens=1,
        cached_tokens=0,
        reasoning_tokens=0,
        cost_usd=Decimal(cost),
        outcome="ok",
        stream=False,
        start_time=datetime(2026, 1, 1, tzinfo=UTC),
        latency_ms=1.0,
    )


def make_outbox(writer: Writer, max_rows: int = 100) -> Outbox:
    return Outbox(
        writer,
        max_rows=max_rows,
        transient_errors=(Down,),
        batch_size=3,
        initial_backoff_s=0.001,
        max_backoff_s=0.004,
    )


async def wait_until_empty(outbox: Outbox) -> None:
    for _ in range(2000):
        if not len(outbox):
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{len(outbox)} rows still queued after 2 s")


async def test_rows_are_written_after_recovery() -> None:
    writer = Writer()
    outbox = make_outbox(writer)
    for index in range(7):
        outbox.add(record(f"r{index}"))

    await asyncio.sleep(0.02)
    failed_calls = writer.calls
    writer.down = False
    await wait_until_empty(outbox)

    assert failed_calls >= 2
    assert sorted(writer.rows) == [f"r{index}" for index in range(7)]


async def test_duplicate_request_id_is_queued_once() -> None:
    outbox = make_outbox(Writer())

    outbox.add(record("same"))
    outbox.add(record("same"))

    assert len(outbox) == 1
    assert "same" in outbox
    await outbox.close(0)


async def test_full_outbox_raises_unavailable() -> None:
    outbox = make_outbox(Writer(), max_rows=2)
    outbox.add(record("a"))
    outbox.add(record("b"))

    with pytest.raises(UnavailableError) as caught:
        outbox.add(record("c"))

    assert caught.value.reason == "LEDGER_UNAVAILABLE"
    assert caught.value.retry_after_s == 5.0
    await outbox.close(0)


async def test_pending_cost_per_key() -> None:
    outbox = make_outbox(Writer())
    outbox.add(record("a", "0.25"))
    outbox.add(record("b", "0.50"))
    outbox.add(record("c", "9.00", key_id="key-2"))

    assert outbox.pending_cost("acme", "key-1") == Decimal("0.75")
    assert outbox.pending_cost("acme", "key-3") == Decimal(0)
    await outbox.close(0)


async def test_rejected_row_is_dropped_not_blocking(caplog: pytest.LogCaptureFixture) -> None:
    writer = Writer()
    writer.bad = {"r1"}
    outbox = make_outbox(writer)
    for index in range(5):
        outbox.add(record(f"r{index}"))

    writer.down = False
    with caplog.at_level(logging.ERROR, logger="services.metering.outbox"):
        await wait_until_empty(outbox)

    assert sorted(writer.rows) == ["r0", "r2", "r3", "r4"]
    dropped = [entry for entry in caplog.records if "dropped" in entry.getMessage()]
    assert len(dropped) == 1


async def test_close_writes_what_it_can() -> None:
    writer = Writer()
    outbox = Outbox(writer, max_rows=10, transient_errors=(Down,), initial_backoff_s=60)
    outbox.add(record("a"))

    writer.down = False
    await outbox.close(1.0)

    assert list(writer.rows) == ["a"]
    assert len(outbox) == 0


async def test_close_logs_rows_it_could_not_write(caplog: pytest.LogCaptureFixture) -> None:
    outbox = make_outbox(Writer())
    outbox.add(record("a", "0.25"))
    outbox.add(record("b", "0.50"))

    with caplog.at_level(logging.ERROR, logger="services.metering.outbox"):
        await outbox.close(0.05)

    lost = [
        entry for entry in caplog.records if entry.getMessage() == "settlement lost at shutdown"
    ]
    assert [entry.settlement["request_id"] for entry in lost] == ["a", "b"]  # type: ignore[attr-defined]
    assert len(outbox) == 0


async def test_add_many_takes_all_or_none() -> None:
    outbox = Outbox(Writer(), max_rows=3, transient_errors=(Down,), initial_backoff_s=60)
    outbox.add(record("first"))

    with pytest.raises(UnavailableError):
        outbox.add_many([record("second"), record("third"), record("fourth")])
    outbox.add_many([record("first"), record("second"), record("third")])

    assert len(outbox) == 3
    assert "fourth" not in outbox
    await outbox.close(0)
