"""The MeteringService servicer: Admit, Settle and GetUsage."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from datetime import UTC, datetime
from decimal import Decimal

import grpc
from aigateway.metering.v1 import metering_service_pb2 as pb
from aigateway.metering.v1 import metering_service_pb2_grpc as pb_grpc
from aigateway.type.v1 import principal_pb2
from google.protobuf import timestamp_pb2

from libs.errors import InvalidRequestError, UnavailableError
from services.metering import metrics
from services.metering.apikeys import ApiKey
from services.metering.budgets import Budgets, usd_to_nanos
from services.metering.ledger import Ledger, UsageRecord
from services.metering.ratelimits import RateLimiter

logger = logging.getLogger(__name__)

MAX_ID_CHARS = 256
"""Maximum length in characters of a request id, tenant, key id, model, deployment or provider."""

MAX_BATCH = 1000
"""Maximum number of settlements in one SettleBatch call."""

MAX_COST_USD = 1_000_000.0
"""Maximum cost or estimate of one request in US dollars. A larger value is most likely a
unit error, such as micro-dollars sent as dollars."""

# The documented outcomes are ok, cache_hit, error and cancelled. Other short lowercase
# words are stored as sent (and counted as `other` in metrics), so a new outcome in the
# router does not make Settle drop usage.
_OUTCOME = re.compile(r"[a-z][a-z0-9_]{0,31}")



class MeteringServicer(pb_grpc.MeteringServiceServicer):
    """Admission against budgets and rate limits, settlement into the ledger, usage sums."""

    def __init__(self, ledger: Ledger, budgets: Budgets, limiter: RateLimiter) -> None:
        self.ledger = ledger
        self.budgets = budgets
        self.limiter = limiter

    async def Admit(
        self, request: pb.AdmitRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdmitResponse:
        """Check the key's rate limits, then reserve the estimated cost against its budget.

        Raises InvalidRequestError for a missing or invalid field, ResourceExhaustedError
        (BUDGET_EXCEEDED, RATE_LIMITED) when the request may not run, and UnavailableError
        when Redis or, for a key whose spend is not loaded yet, the ledger is unreachable.
        """
        key, budget = _admission(request)

        await self.limiter.acquire(key, request.request_id, request.estimated_prompt_tokens)
        remaining = await self.budgets.reserve(
            key, request.request_id, request.estimated_cost_usd, budget
        )

        response = pb.AdmitResponse()
        if remaining is not None:
            response.remaining_budget_usd = remaining
        return response

    async def Settle(
        self, request: pb.SettleRequest, context: grpc.aio.ServicerContext
    ) -> pb.SettleResponse:
        """Write the request's usage to the ledger once and replace its reservation with the cost.

        Returns even while the database is down, because the row then waits in the outbox.
        Raises InvalidRequestError for a missing or invalid field, and UnavailableError
        when the database is down and the outbox is full.
        """
        record = _usage_record(request)
        # Shielded for the same reason as SettleBatch. When the row was queued, the
        # ledger could not tell a repeat, so the budget store's settled marker decides.
        recorded = await asyncio.shield(self._write_and_settle([record]))
        return pb.SettleResponse(recorded=recorded[0])

    async def SettleBatch(
        self, request: pb.SettleBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SettleBatchResponse:
        """Settle each settlement as Settle would, writing the new ledger rows in one statement.

        An invalid settlement gets INVALID_ARGUMENT in its own result. Raises
        InvalidRequestError for more than MAX_BATCH settlements, and UnavailableError when
        the database is down and the outbox is full.
        """
        count = len(request.settlements)
        if count > MAX_BATCH:
            raise InvalidRequestError(
                f"settlements has {count} entries; the maximum is {MAX_BATCH}: split the batch",
                reason="BATCH_TOO_LARGE",
                param="settlements",
            )
        results = [pb.SettleResult() for _ in range(count)]
        valid: list[tuple[int, UsageRecord]] = []
        for index, settlement in enumerate(request.settlements):
            try:
                valid.append((index, _usage_record(settlement)))
            except InvalidRequestError as error:
                logger.warning(
                    "settlement rejected",
                    extra={"reason": error.reason, "settlement_request_id": settlement.request_id[:MAX_ID_CHARS]},
                )
                results[index].error.CopyFrom(error.to_status())

        # Shielded: a caller that times out must not stop the budget updates half way
        # after the rows are written, because its retry then counts as a repeat.
        recorded = await asyncio.shield(self._write_and_settle([record for _, record in valid]))
        for (index, _), was_recorded in zip(valid, recorded, strict=True):
            results[index].recorded = was_recorded
        return pb.SettleBatchResponse(results=results)

    async def _write_and_settle(self, records: list[UsageRecord]) -> list[bool]:
        written = await self.ledger.record_many(records)
        return await self._settle_records(records, written)

    async def _settle_records(self, records: list[UsageRecord], written: list[bool | None]) -> list[bool]:
        """Settle the budget and token charges of written records; return which were recorded."""
        recorded = []
        for record, row_written in zip(records, written, strict=True):
            key = ApiKey(record.tenant, record.key_id)
            first = await self._settle_budget(key, record, row_written)
            was_recorded = first if row_written is None else row_written
            if was_recorded:
                await self._charge_tokens(key, record)
                metrics.observe_settlement(record)
            recorded.append(was_recorded)
        return recorded

    async def GetUsage(
        self, request: pb.GetUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUsageResponse:
        """Sum the tenant's ledger rows whose start time is in the range, in total and per model.

        Raises InvalidRequestError for an empty tenant or a range that ends before it
        starts, and UnavailableError when the database is unreachable.
        """
        if not request.tenant:
            raise InvalidRequestError("tenant is required", reason="MISSING_TENANT", param="tenant")
        start = _optional_time(request, "start_time")
        end = _optional_time(request, "end_time")
        if start is not None and end is not None and end < start:
            raise InvalidRequestError(
                f"end_time {end.isoformat()} is before start_time {start.isoformat()}",
                reason="INVALID_TIME_RANGE",
                param="end_time",
                metadata={"start_time": start.isoformat(), "end_time": end.isoformat()},
            )

        report = await self.ledger.usage(request.tenant, request.key_id, start, end)

        return pb.GetUsageResponse(
            requests=(report.requests),
            prompt_tokens=(report.prompt_tokens),
            completion_tokens=(report.completion_tokens),
            cost_usd=float(report.cost_usd),
            models=[
                pb.ModelUsage(
                    model=usage.model,
                    requests=(usage.requests),
                    prompt_tokens=(usage.prompt_tokens),
                    completion_tokens=(usage.completion_tokens),
                    cached_tokens=(usage.cached_tokens),
                    cost_usd=float(usage.cost_usd),
                )
                for usage in report.models
            ],
        )

    async def GetLimits(
        self, request: pb.GetLimitsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLimitsResponse:
        """Return the per-key rate limits that Admit applies."""
        limits = self.limiter.limits
        return pb.GetLimitsResponse(
            requests_per_minute=limits.requests_per_minute, tokens_per_minute=limits.tokens_per_minute
        )

    async def _settle_budget(self, key: ApiKey, record: UsageRecord, written: bool | None) -> bool:
        # The ledger row is written (or queued) by now, and it is the record that counts.
        # A Redis failure here therefore does not fail the Settle. NOTE: the cost is then
        # missing from the key's cached spend in Redis until the spend expires after a
        # day without traffic and is reloaded from the ledger.
        try:
            return await self.budgets.settle(
                key, record.request_id, record.cost_usd, ledger_result=written
            )
        except UnavailableError:
            logger.warning(
                "spend not updated in the budget store",
                extra={"settlement_request_id": record.request_id, "key_id": key.key_id},
            )
            return True

    async def _charge_tokens(self, key: ApiKey, record: UsageRecord) -> None:
        try:
            await self.limiter.settle(
                key, record.request_id, record.prompt_tokens + record.completion_tokens
            )
        except UnavailableError:
            logger.warning(
                "tokens not charged to the rate limit",
                extra={"settlement_request_id": record.request_id, "key_id": key.key_id},
            )


def _require_request_id(request_id: str) -> None:
    if not request_id:
        raise InvalidRequestError(
            "request_id is required", reason="MISSING_REQUEST_ID", param="request_id"
        )
    if len(request_id) > MAX_ID_CHARS:
        raise InvalidRequestError(
            f"request_id has {len(request_id)} characters; the maximum is {MAX_ID_CHARS}",
            reason="INVALID_REQUEST_ID",
            param="request_id",
        )


def _api_key(request: pb.AdmitRequest | pb.SettleRequest) -> ApiKey:
    if not request.HasField("principal"):
        raise InvalidRequestError(
            "principal is required", reason="MISSING_PRINCIPAL", param="principal"
        )
    principal = request.principal
    if not principal.tenant:
        raise InvalidRequestError(
            "principal.tenant is required", reason="MISSING_TENANT", param="principal.tenant"
        )
    if not principal.key_id:
        raise InvalidRequestError(
            "principal.key_id is required", reason="MISSING_KEY_ID", param="principal.key_id"
        )
    for name, value in (
        ("principal.tenant", principal.tenant),
        ("principal.key_id", principal.key_id),
    ):
        _require_short(value, name)
    return ApiKey(principal.tenant, principal.key_id)


def _admission(request: pb.AdmitRequest) -> tuple[ApiKey, float | None]:
    _require_request_id(request.request_id)
    key = _api_key(request)
    budget = _budget(request.principal)
    if request.estimated_prompt_tokens < 0:
        raise InvalidRequestError(
            f"estimated_prompt_tokens is {request.estimated_prompt_tokens}; it must be 0 or more",
            reason="INVALID_ESTIMATED_PROMPT_TOKENS",
            param="estimated_prompt_tokens",
        )
    _require_cost(request.estimated_cost_usd, "estimated_cost_usd", "INVALID_ESTIMATED_COST")
    return key, budget


def _budget(principal: principal_pb2.Principal) -> float | None:
    if not principal.HasField("budget_usd"):
        return None
    budget = float(principal.budget_usd)
    if not math.isfinite(budget) or budget < 0:
        raise InvalidRequestError(
            f"principal.budget_usd is {budget}; it must be a finite number, 0 or more",
            reason="INVALID_BUDGET",
            param="principal.budget_usd",
        )
    return budget


def _require_cost(value: float, name: str, reason: str) -> None:
    if not math.isfinite(value) or not 0 <= value <= MAX_COST_USD:
        raise InvalidRequestError(
            f"{name} is {value}; it must be between 0 and {MAX_COST_USD:.0f} US dollars",
            reason=reason,
            param=name,
        )


def _require_short(value: str, name: str) -> None:
    if len(value) > MAX_ID_CHARS:
        raise InvalidRequestError(
            f"{name} has {len(value)} characters; the maximum is {MAX_ID_CHARS}",
            reason="FIELD_TOO_LONG",
            param=name,
        )


def _usage_record(request: pb.SettleRequest) -> UsageRecord:
    _require_request_id(request.request_id)
    key = _api_key(request)
    for name in ("model", "deployment", "provider"):
        _require_short(getattr(request, name), name)
    _require_cost(request.cost_usd, "cost_usd", "INVALID_COST")
    if not request.outcome:
        raise InvalidRequestError(
            "outcome is required: ok, cache_hit, error or cancelled",
            reason="MISSING_OUTCOME",
            param="outcome",
        )
    if not _OUTCOME.fullmatch(request.outcome):
        raise InvalidRequestError(
            "outcome must be a lowercase word such as ok, cache_hit, error or cancelled",
            reason="INVALID_OUTCOME",
            param="outcome",
        )
    if not math.isfinite(request.latency_ms) or request.latency_ms < 0:
        raise InvalidRequestError(
            f"latency_ms is {request.latency_ms}; it must be 0 or more",
            reason="INVALID_LATENCY",
            param="latency_ms",
        )

    usage = request.usage
    cached_tokens = usage.prompt_tokens_details.cached_tokens
    reasoning_tokens = usage.completion_tokens_details.reasoning_tokens
    counts = {
        "usage.prompt_tokens": usage.prompt_tokens,
        "usage.completion_tokens": usage.completion_tokens,
        "usage.prompt_tokens_details.cached_tokens": cached_tokens,
        "usage.completion_tokens_details.reasoning_tokens": reasoning_tokens,
    }
    for name, count in counts.items():
        if count < 0:
            raise InvalidRequestError(
                f"{name} is {count}; it must be 0 or more", reason="INVALID_USAGE", param=name
            )

    # Nano-dollars are the precision of the ledger column and of the budgets.
    cost = Decimal(usd_to_nanos(request.cost_usd)).scaleb(-9)
    start = _optional_time(request, "start_time") or datetime.now(UTC)
    return UsageRecord(
        request_id=request.request_id,
        tenant=key.tenant,
        key_id=key.key_id,
        model=request.model,
        deployment=request.deployment,
        provider=request.provider,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=cached_tokens,
        reasoning_tokens=reasoning_tokens,
        cost_usd=cost,
        outcome=request.outcome,
        stream=request.stream,
        start_time=start,
        latency_ms=request.latency_ms,
    )


def _optional_time(request: pb.SettleRequest | pb.GetUsageRequest, name: str) -> datetime | None:
    if not request.HasField(name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(request, name)
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidRequestError(
            f"{name} is not a valid timestamp", reason="INVALID_TIMESTAMP", param=name
        ) from None

