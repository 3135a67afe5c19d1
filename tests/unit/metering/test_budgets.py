"""Budget reservations and spend in the in-process store."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from libs.errors import ResourceExhaustedError, UnavailableError
from services.metering.apikeys import ApiKey
from services.metering.budgets import (
    Budgets,
    LocalBudgetStore,
    fits_budget,
    format_usd,
    usd_to_nanos,
)

KEY = ApiKey("acme", "key-1")


class FakeClock:
    """A monotonic clock that advances only when a test changes ``now``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class LedgerSpend:
    """Spend per key as the ledger would return it, counting the queries."""

    def __init__(self, spend: dict[ApiKey, Decimal] | None = None, fail: bool = False) -> None:
        self.spend = spend or {}
        self.fail = fail
        self.queries = 0

    async def __call__(self, key: ApiKey) -> Decimal:
        self.queries += 1
        await asyncio.sleep(0)
        if self.fail:
            raise UnavailableError("ledger down", reason="LEDGER_UNAVAILABLE")
        return self.spend.get(key, Decimal(0))


def make_budgets(
    ledger: LedgerSpend | None = None, ttl_s: float = 60.0
) -> tuple[Budgets, FakeClock, LedgerSpend]:
    clock = FakeClock()
    ledger = ledger or LedgerSpend()
    return Budgets(LocalBudgetStore(ttl_s, clock=clock), ledger), clock, ledger


def test_usd_to_nanos_is_exact() -> None:
    assert usd_to_nanos(0.3) == 300_000_000
    assert usd_to_nanos(Decimal("0.0000000015")) == 2
    assert usd_to_nanos(1e-10) == 0


def test_format_usd() -> None:
    assert format_usd(1_000_000_000) == "1.00"
    assert format_usd(300_000_000) == "0.30"
    assert format_usd(123_456_789) == "0.123456789"
    assert format_usd(0) == "0.00"


@pytest.mark.parametrize(
    ("spend", "reserved", "estimate", "budget", "fits"),
    [
        (0, 0, 30, 100, True),
        (60, 30, 10, 100, True),
        (60, 30, 11, 100, False),
        (100, 0, 0, 100, False),
        (0, 0, 0, 0, False),
        (99, 0, 0, 100, True),
    ],
)
def test_fits_budget(spend: int, reserved: int, estimate: int, budget: int, fits: bool) -> None:
    assert fits_budget(spend, reserved, estimate, budget) is fits


async def test_concurrent_reservations_admit_exactly_three() -> None:
    budgets, _, ledger = make_budgets()

    results = await asyncio.gather(
        *(budgets.reserve(KEY, f"req-{index}", 0.30, 1.00) for index in range(20)),
        return_exceptions=True,
    )

    admitted = [result for result in results if isinstance(result, float)]
    rejected = [result for result in results if isinstance(result, ResourceExhaustedError)]
    assert len(admitted) == 3
    assert len(rejected) == 17
    assert {error.reason for error in rejected} == {"BUDGET_EXCEEDED"}
    # Concurrent first uses of a key share one ledger query.
    assert ledger.queries == 1


async def test_no_budget_reserves_nothing() -> None:
    budgets, _, ledger = make_budgets()

    remaining = await budgets.reserve(KEY, "free", 1e6, None)

    assert remaining is None
    assert ledger.queries == 0


async def test_spend_from_ledger_counts() -> None:
    budgets, _, _ = make_budgets(LedgerSpend({KEY: Decimal("0.75")}))

    remaining = await budgets.reserve(KEY, "r1", 0.25, 1.0)
    with pytest.raises(ResourceExhaustedError) as caught:
        await budgets.reserve(KEY, "r2", 0.01, 1.0)

    assert remaining == 0.0
    assert caught.value.metadata["spent_usd"] == "0.75"
    assert caught.value.metadata["reserved_usd"] == "0.25"
    assert caught.value.subject == "api_key:key-1"


async def test_settle_replaces_reservation() -> None:
    budgets, _, _ = make_budgets()
    await budgets.reserve(KEY, "r1", 0.60, 1.0)

    await budgets.settle(KEY, "r1", Decimal("0.10"), ledger_result=True)
    remaining = await budgets.reserve(KEY, "r2", 0.60, 1.0)

    assert remaining == pytest.approx(0.30)


async def test_release_without_spend() -> None:
    budgets, _, _ = make_budgets()
    await budgets.reserve(KEY, "r1", 0.60, 1.0)

    await budgets.settle(KEY, "r1", Decimal("0.60"), ledger_result=False)
    remaining = await budgets.reserve(KEY, "r2", 0.50, 1.0)

    assert remaining == pytest.approx(0.50)


async def test_repeated_reserve_keeps_one_reservation() -> None:
    budgets, _, _ = make_budgets()

    first = await budgets.reserve(KEY, "same", 0.40, 1.0)
    again = await budgets.reserve(KEY, "same", 0.40, 1.0)

    assert first == pytest.approx(0.60)
    assert again == pytest.approx(0.60)


async def test_reservation_expires_after_ttl() -> None:
    budgets, clock, _ = make_budgets(ttl_s=30.0)
    await budgets.reserve(KEY, "abandoned", 0.90, 1.0)

    with pytest.raises(ResourceExhaustedError) as blocked:
        await budgets.reserve(KEY, "early", 0.90, 1.0)
    clock.now += 30.0
    remaining = await budgets.reserve(KEY, "late", 0.90, 1.0)

    # Open reservations, not spend, blocked the request: a retry can succeed.
    assert blocked.value.retry_after_s == 1.0
    assert remaining == pytest.approx(0.10)


async def test_spent_budget_has_no_retry() -> None:
    budgets, _, _ = make_budgets(LedgerSpend({KEY: Decimal("1.00")}))

    with pytest.raises(ResourceExhaustedError) as caught:
        await budgets.reserve(KEY, "r1", 0.0, 1.0)

    assert caught.value.retry_after_s is None


async def test_keys_have_separate_budgets() -> None:
    budgets, _, _ = make_budgets()
    other = ApiKey("acme", "key-2")
    same_id_other_tenant = ApiKey("globex", "key-1")

    await budgets.reserve(KEY, "a", 1.0, 1.0)
    second = await budgets.reserve(other, "b", 1.0, 1.0)
    third = await budgets.reserve(same_id_other_tenant, "c", 1.0, 1.0)

    assert second == 0.0
    assert third == 0.0


async def test_ledger_failure_propagates() -> None:
    budgets, _, _ = make_budgets(LedgerSpend(fail=True))

    with pytest.raises(UnavailableError) as caught:
        await budgets.reserve(KEY, "r1", 0.1, 1.0)

    assert caught.value.reason == "LEDGER_UNAVAILABLE"


async def test_settle_before_load_is_ignored() -> None:
    # The spend is not loaded, so the ledger row (already written) will be read instead.
    budgets, _, _ = make_budgets(LedgerSpend({KEY: Decimal("0.50")}))

    first = await budgets.settle(KEY, "r0", Decimal("0.50"), ledger_result=True)
    remaining = await budgets.reserve(KEY, "r1", 0.10, 1.0)

    assert first is True
    assert remaining == pytest.approx(0.40)
