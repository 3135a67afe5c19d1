"""Servicer logic with in-process stores and a stand-in ledger (no sockets)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from aigateway.metering.v1 import metering_service_pb2 as pb
from prometheus_client import REGISTRY

from libs.errors import InvalidRequestError, UnavailableError
from services.metering.apikeys import ApiKey
from services.metering.budgets import Budgets, LocalBudgetStore
from services.metering.ledger import UsageRecord
from services.metering.ratelimits import LocalRateLimitStore, RateLimiter, RateLimits
from services.metering.service import MeteringServicer
from tests.fixtures.metering import principal, settle_request


class StandInLedger:
    """Return a fixed result from ``record_many`` and keep every record passed in."""

    def __init__(self, result: bool | None) -> None:
        self.result = result
        self.records: list[UsageRecord] = []

    async def record_many(self, records: list[UsageRecord]) -> list[bool | None]:
        self.records.extend(records)
        return [self.result] * len(records)

    async def spend(self, key: ApiKey) -> Decimal:
        return Decimal(0)


class BrokenBudgetStore(LocalBudgetStore):
    """Fails every settlement, as Redis does when it is down."""

    async def settle(
        self, key: ApiKey, request_id: str, cost: int, *, add_spend: bool, mark_settled: bool
    ) -> bool:
        raise UnavailableError("down", reason="STORE_UNAVAILABLE")


def make_servicer(ledger: StandInLedger, store: LocalBudgetStore | None = None) -> MeteringServicer:
    limits = RateLimits(0, 0)
    budgets = Budgets(store or LocalBudgetStore(60.0), ledger.spend)
    limiter = RateLimiter(limits, LocalRateLimitStore(limits, 60.0))
    # The stand-in has the two methods the servicer calls, not the Ledger type.
    return MeteringServicer(ledger, budgets, limiter)  # type: ignore[arg-type]


def requests_counted(model: str) -> float:
    labels = {"model": model, "provider": "openai", "outcome": "ok"}
    return REGISTRY.get_sample_value("aigw_requests_total", labels) or 0.0


async def admit(servicer: MeteringServicer, request_id: str, estimate: float) -> pb.AdmitResponse:
    request = pb.AdmitRequest(
        request_id=request_id, principal=principal(budget_usd=1.0), estimated_cost_usd=estimate
    )
    return await servicer.Admit(request, None)


async def test_queued_settlement_reports_recorded() -> None:
    servicer = make_servicer(StandInLedger(None))
    before = requests_counted("queued-model")

    response = await servicer.Settle(settle_request("q1", model="queued-model"), None)

    assert response.recorded is True
    assert requests_counted("queued-model") - before == 1


async def test_duplicate_settlement_only_releases() -> None:
    servicer = make_servicer(StandInLedger(False))
    await admit(servicer, "dup", 0.5)
    before = requests_counted("dup-model")

    response = await servicer.Settle(
        settle_request("dup", model="dup-model", cost_usd=0.5),
        None,
    )
    after = await admit(servicer, "next", 0.1)

    assert response.recorded is False
    assert requests_counted("dup-model") == before
    # The reservation is gone and the cost was not added again.
    assert after.remaining_budget_usd == pytest.approx(0.9)


async def test_settle_rounds_cost_to_nano_dollars() -> None:
    ledger = StandInLedger(True)
    servicer = make_servicer(ledger)

    await servicer.Settle(settle_request("round", cost_usd=0.1234567894), None)

    assert ledger.records[0].cost_usd == Decimal("0.123456789")


async def test_settle_survives_budget_store_failure() -> None:
    servicer = make_servicer(StandInLedger(True), BrokenBudgetStore(60.0))

    response = await servicer.Settle(settle_request("store-down"), None)

    assert response.recorded is True


async def test_settle_defaults_start_time_to_now() -> None:
    ledger = StandInLedger(True)
    servicer = make_servicer(ledger)
    request = settle_request("no-start")
    request.ClearField("start_time")

    await servicer.Settle(request, None)

    assert ledger.records[0].start_time.tzinfo is not None


async def test_settle_validation_names_field() -> None:
    servicer = make_servicer(StandInLedger(True))
    request = settle_request("bad")
    request.usage.completion_tokens_details.reasoning_tokens = -1

    with pytest.raises(InvalidRequestError) as caught:
        await servicer.Settle(request, None)

    assert caught.value.param == "usage.completion_tokens_details.reasoning_tokens"
    assert caught.value.reason == "INVALID_USAGE"


async def test_unknown_outcome_is_stored() -> None:
    ledger = StandInLedger(True)
    servicer = make_servicer(ledger)

    await servicer.Settle(settle_request("rejected", outcome="rejected"), None)

    assert ledger.records[0].outcome == "rejected"


def test_servicer_has_every_rpc() -> None:
    methods = {method.name for method in pb.DESCRIPTOR.services_by_name["MeteringService"].methods}

    assert methods == {"Admit", "Settle", "SettleBatch", "GetUsage", "GetLimits"}
    assert all(callable(getattr(MeteringServicer, name)) for name in methods)


async def test_repeated_settle_charges_tokens_once() -> None:
    ledger = StandInLedger(True)
    limits = RateLimits(0, 1000)
    limiter = RateLimiter(limits, LocalRateLimitStore(limits, 60.0))
    servicer = MeteringServicer(ledger, Budgets(LocalBudgetStore(60.0), ledger.spend), limiter)  # type: ignore[arg-type]
    usage = settle_request("t").usage
    usage.prompt_tokens, usage.completion_tokens = 300, 300

    await servicer.Settle(settle_request("t", usage=usage), None)
    ledger.result = False
    await servicer.Settle(settle_request("t", usage=usage), None)
    admitted = await servicer.Admit(
        pb.AdmitRequest(request_id="next", principal=principal(), estimated_prompt_tokens=400), None
    )

    # 600 tokens charged once leave room for 400; charged twice they would not.
    assert not admitted.HasField("remaining_budget_usd")
