"""SingleFlight: one execution per key at a time, shared by the callers that overlap it."""

from __future__ import annotations

import asyncio

import pytest

from libs.singleflight import SingleFlight


async def test_overlapping_calls_share_one_run() -> None:
    flight: SingleFlight[int] = SingleFlight()
    runs = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.02)
        return 7

    results = await asyncio.gather(*(flight.run("k", work) for _ in range(5)))
    later = await flight.run("k", work)

    assert results == [7] * 5
    assert later == 7
    assert runs == 2


async def test_error_reaches_every_caller() -> None:
    flight: SingleFlight[int] = SingleFlight()

    async def work() -> int:
        await asyncio.sleep(0.01)
        raise ValueError("lookup failed")

    outcomes = await asyncio.gather(flight.run("k", work), flight.run("k", work), return_exceptions=True)

    assert all(isinstance(outcome, ValueError) for outcome in outcomes)
    with pytest.raises(ValueError, match="lookup failed"):
        await flight.run("k", work)
