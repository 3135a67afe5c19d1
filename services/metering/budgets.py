"""Budgets per API key: a reservation at Admit, the real cost at Settle.

A key's spend is the sum of its ledger rows. The store keeps that spend together with the
open reservations, which are the estimated costs of admitted requests that have not been
settled yet. Admit reserves the estimate only if spend + reservations + estimate stays
within the budget, as one atomic step: under a lock in process, in a Lua script in
Redis. Settle replaces the reservation with the real cost. A reservation that is never
settled expires after the reservation TTL.

The stores keep amounts as integer nano-dollars, so sums are exact and Redis can add
them with HINCRBY. A store that has no spend for a key yet (after a start, or when the
Redis hash expired) loads it from the ledger on first use.

NOTE: a settlement that races the first load of a key's spend can be counted twice or
missed in the cached spend. It is counted twice when its ledger row is inserted before
the load reads the sum and its spend is added after the load stores it. It is missed
in the opposite order. The window is one ledger query per key and process (in process)
or per idle period (Redis); the ledger itself is always exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from libs.errors import ResourceExhaustedError, UnavailableError
from services.metering import metrics
from services.metering.apikeys import ApiKey

logger = logging.getLogger(__name__)

NANOS_PER_USD = 10**9

# Redis drops a key's spend after this long without traffic, and the next use reloads it
# from the ledger, so idle keys do not occupy memory forever.
IDLE_TTL_S = 24 * 3600

# Lifetime of the Redis marker of a request id whose row went to an outbox. The marker
# makes a repeat of that Settle on another replica add the cost only once while the
# ledger cannot tell. Markers are only written during database outages.
SETTLED_MARKER_TTL_S = 3600

# Suggested wait when open reservations, not spend, block a request: reservations end
# when their requests settle, typically within seconds.
RESERVATION_RETRY_S = 1.0

SpendSource = Callable[[ApiKey], Awaitable[Decimal]]
"""Returns the spend of a key in US dollars, from the ledger."""


def usd_to_nanos(amount: Decimal | float) -> int:
    """Convert US dollars to integer nano-dollars, rounding half up."""
    value = amount if isinstance(amount, Decimal) else Decimal(repr(amount))
    return int((value * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


def format_usd(nanos: int) -> str:
    """Format nano-dollars as US dollars with 2 to 9 decimals, such as ``0.30``."""
    whole, _, fraction = f"{Decimal(nanos).scaleb(-9):.9f}".partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def fits_budget(spend: int, reserved: int, estimate: int, budget: int) -> bool:
    """Return whether a request with cost ``estimate`` may be admitted.

    A key whose spend and reservations already reach the budget admits nothing, not even
    a request estimated at zero.
    """
    committed = spend + reserved
    return committed < budget and committed + estimate <= budget


@dataclass(frozen=True)
class Reservation:
    """The outcome of one reservation attempt, in nano-dollars."""

    admitted: bool
    spend: int
    reserved: int
    """Open reservations of the key, including this request's when it was admitted."""


class BudgetStore(Protocol):
    """Storage of spend and open reservations, in this process or in Redis."""

    async def reserve(
        self, key: ApiKey, request_id: str, estimate: int, budget: int
    ) -> Reservation | None:
        """Reserve ``estimate`` if it fits, or return None when the key's spend is not loaded yet.

        A repeated request id with an open reservation is admitted again without a
        second reservation.
        """
        ...

    async def load_spend(self, key: ApiKey, spend: int) -> None:
        """Store the spend read from the ledger, unless the store already has one."""
        ...

    async def settle(
        self, key: ApiKey, request_id: str, cost: int, *, add_spend: bool, mark_settled: bool
    ) -> bool:
        """Release the request's reservation and, when ``add_spend``, add ``cost`` to the spend.

        ``mark_settled`` records the request id as settled. Returns False, and adds
        nothing, when the store finds the request id marked from an earlier call.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class Budgets:
    """Budget checks of Admit and spend updates of Settle, over a store and the ledger."""

    def __init__(self, store: BudgetStore, spend_source: SpendSource) -> None:
        self.store = store
        self._spend_source = spend_source
        self._loads: dict[ApiKey, asyncio.Task[None]] = {}

    async def reserve(
        self, key: ApiKey, request_id: str, estimate_usd: float, budget_usd: float | None
    ) -> float | None:
        """Reserve the estimated cost and return the budget left in US dollars.

        Returns None, and reserves nothing, when the key has no budget.

        Raises ResourceExhaustedError (reason BUDGET_EXCEEDED) when the estimate does not
        fit, and UnavailableError when the store or the ledger cannot be reached.
        """
        if budget_usd is None:
            return None
        estimate = usd_to_nanos(estimate_usd)
        budget = usd_to_nanos(budget_usd)

        result = await self.store.reserve(key, request_id, estimate, budget)
        if result is None:
            await self._load(key)
            result = await self.store.reserve(key, request_id, estimate, budget)
            if result is None:
                # Only possible when the spend expired again between two calls.
                raise UnavailableError(
                    "the budget store lost the spend it just loaded; retry",
                    reason="STORE_UNAVAILABLE",
                    retry_after_s=1.0,
                )

        if not result.admitted:
            metrics.BUDGET_REJECTIONS.labels("BUDGET_EXCEEDED").inc()
            raise _budget_exceeded(key, result, estimate, budget)
        return max(budget - result.spend - result.reserved, 0) / NANOS_PER_USD

    async def settle(
        self, key: ApiKey, request_id: str, cost_usd: Decimal, *, ledger_result: bool | None
    ) -> bool:
        """Replace the request's reservation with its cost, given what the ledger did with the row.

        ``ledger_result`` is the return value of ``Ledger.record``. When the row was a
        duplicate (False), the reservation is only released. When the row went to the
        outbox (None), the request id is marked as settled. Returns False when the store
        finds the request id marked as settled by an earlier call.
        """
        return await self.store.settle(
            key,
            request_id,
            usd_to_nanos(cost_usd),
            add_spend=ledger_result is not False,
            mark_settled=ledger_result is None,
        )

    async def _load(self, key: ApiKey) -> None:
        # Concurrent Admits of a key that is not loaded share one ledger query.
        task = self._loads.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load_once(key))
            self._loads[key] = task
            task.add_done_callback(lambda _: self._loads.pop(key, None))
        await asyncio.shield(task)

    async def _load_once(self, key: ApiKey) -> None:
        spend = await self._spend_source(key)
        await self.store.load_spend(key, usd_to_nanos(spend))
        logger.debug(
            "loaded spend from the ledger", extra={"key_id": key.key_id, "spend_usd": str(spend)}
        )


def _budget_exceeded(
    key: ApiKey, result: Reservation, estimate: int, budget: int
) -> ResourceExhaustedError:
    # Retrying helps only when open reservations, which will settle, are what blocks.
    retry_after = RESERVATION_RETRY_S if fits_budget(result.spend, 0, estimate, budget) else None
    return ResourceExhaustedError(
        f"budget of API key {key.key_id} exceeded: {format_usd(result.spend)} USD spent and "
        f"{format_usd(result.reserved)} USD reserved of {format_usd(budget)} USD, and this "
        f"request is estimated at {format_usd(estimate)} USD",
        reason="BUDGET_EXCEEDED",
        subject=key.quota_subject,
        metadata={
            "key_id": key.key_id,
            "budget_usd": format_usd(budget),
            "spent_usd": format_usd(result.spend),
            "reserved_usd": format_usd(result.reserved),
            "estimated_cost_usd": format_usd(estimate),
        },
        retry_after_s=retry_after,
    )


@dataclass
class _Account:
    spend: int | None = None
    reserved: int = 0
    reservations: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Request id to (amount, monotonic expiry time)."""


class LocalBudgetStore:
    """Spend and reservations in this process; right for a single replica.

    No settled markers are kept: in one process the ledger and its outbox already tell a
    repeated Settle apart.
    """

    def __init__(
        self, reservation_ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._reservation_ttl_s = reservation_ttl_s
        self._clock = clock
        self._accounts: dict[ApiKey, _Account] = {}
        # The check and the reservation must not interleave with another Admit's.
        self._lock = asyncio.Lock()

    async def reserve(
        self, key: ApiKey, request_id: str, estimate: int, budget: int
    ) -> Reservation | None:
        async with self._lock:
            account = self._accounts.get(key)
            if account is None or account.spend is None:
                return None
            self._expire(account)
            if request_id in account.reservations:
                return Reservation(True, account.spend, account.reserved)
            if not fits_budget(account.spend, account.reserved, estimate, budget):
                return Reservation(False, account.spend, account.reserved)
            account.reservations[request_id] = (estimate, self._clock() + self._reservation_ttl_s)
            account.reserved += estimate
            return Reservation(True, account.spend, account.reserved)

    async def load_spend(self, key: ApiKey, spend: int) -> None:
        async with self._lock:
            account = self._accounts.setdefault(key, _Account())
            if account.spend is None:
                account.spend = spend

    async def settle(
        self, key: ApiKey, request_id: str, cost: int, *, add_spend: bool, mark_settled: bool
    ) -> bool:
        async with self._lock:
            account = self._accounts.get(key)
            if account is None:
                return True
            reservation = account.reservations.pop(request_id, None)
            if reservation is not None:
                account.reserved -= reservation[0]
            if add_spend and account.spend is not None:
                account.spend += cost
            self._expire(account)
            return True

    async def close(self) -> None:
        self._accounts.clear()

    def _expire(self, account: _Account) -> None:
        now = self._clock()
        expired = [
            request_id
            for request_id, (_, expires) in account.reservations.items()
            if expires <= now
        ]
        for request_id in expired:
            amount, _ = account.reservations.pop(request_id)
            account.reserved -= amount


# Lua 5.1 in Redis 7 turns numbers from 1e14 on into exponent notation ("1e+15"), which
# Redis rejects as an integer, so the scripts pass amounts on as the strings they received.
_NEGATED = """
local function negated(amount)
  if amount == '0' then return '0' end
  return '-' .. amount
end
"""

_EXPIRE_RESERVATIONS = """
local function expire_reservations(budget_key, expiry_key, now)
  local expired = redis.call('ZRANGEBYSCORE', expiry_key, '-inf', now)
  for _, id in ipairs(expired) do
    local amount = redis.call('HGET', budget_key, 'r:' .. id)
    if amount then
      redis.call('HDEL', budget_key, 'r:' .. id)
      redis.call('HINCRBY', budget_key, 'reserved', negated(amount))
    end
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', expiry_key, '-inf', now)
  end
end
"""

# KEYS: budget hash (spend, reserved, r:<request id>), sorted set of reservation expiry
# times in ms. ARGV: request id, estimate, budget, reservation TTL ms, idle TTL ms.
# Returns {-1, 0, 0} when the spend is not loaded, else {admitted 1|0, spend, reserved}.
_RESERVE_BODY = """
local spend = redis.call('HGET', KEYS[1], 'spend')
if not spend then
  return {-1, 0, 0}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
expire_reservations(KEYS[1], KEYS[2], now)
spend = tonumber(spend)
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
if redis.call('HEXISTS', KEYS[1], 'r:' .. ARGV[1]) == 1 then
  return {1, spend, reserved}
end
local estimate = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local committed = spend + reserved
if committed >= budget or committed + estimate > budget then
  return {0, spend, reserved}
end
redis.call('HSET', KEYS[1], 'r:' .. ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {1, spend, reserved + estimate}
"""
_RESERVE = _NEGATED + _EXPIRE_RESERVATIONS + _RESERVE_BODY

# KEYS: budget hash, expiry sorted set, settled marker. ARGV: request id, cost, mode
# (0 release only, 1 add spend, 2 add spend and mark settled), marker TTL ms, idle TTL ms.
# Returns 0 when the marker existed before, else 1.
_SETTLE_BODY = """
local first = 1
if ARGV[3] == '2' then
  if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[4]) then
    first = 0
  end
elseif ARGV[3] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  first = 0
end
local amount = redis.call('HGET', KEYS[1], 'r:' .. ARGV[1])
if amount then
  redis.call('HDEL', KEYS[1], 'r:' .. ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'reserved', negated(amount))
  redis.call('ZREM', KEYS[2], ARGV[1])
end
if ARGV[3] ~= '0' and first == 1 and redis.call('HEXISTS', KEYS[1], 'spend') == 1 then
  redis.call('HINCRBY', KEYS[1], 'spend', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return first
"""
_SETTLE = _NEGATED + _SETTLE_BODY


def store_unavailable() -> UnavailableError:
    """Return the error for a failed Redis call of the budget or rate-limit store."""
    return UnavailableError(
        "the budget and rate-limit store (Redis) is unavailable; retry later",
        reason="STORE_UNAVAILABLE",
        retry_after_s=1.0,
    )


class RedisBudgetStore:
    """Spend and reservations in Redis, shared by every replica."""

    def __init__(self, redis: Redis, prefix: str, reservation_ttl_s: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._reservation_ttl_ms = str(int(reservation_ttl_s * 1000))
        self._idle_ttl_ms = str(IDLE_TTL_S * 1000)
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    def _keys(self, key: ApiKey) -> list[str]:
        tag = key.redis_tag
        return [f"{self._prefix}budget:{tag}", f"{self._prefix}budget-expiry:{tag}"]

    async def reserve(
        self, key: ApiKey, request_id: str, estimate: int, budget: int
    ) -> Reservation | None:
        try:
            admitted, spend, reserved = await self._reserve(
                keys=self._keys(key),
                args=[
                    request_id,
                    str(estimate),
                    str(budget),
                    self._reservation_ttl_ms,
                    self._idle_ttl_ms,
                ],
            )
        except RedisError as exc:
            logger.warning("budget reservation failed in Redis", extra={"error": repr(exc)})
            raise store_unavailable() from exc
        if admitted == -1:
            return None
        return Reservation(admitted == 1, int(spend), int(reserved))

    async def load_spend(self, key: ApiKey, spend: int) -> None:
        budget_key, expiry_key = self._keys(key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(budget_key, "spend", str(spend))
                pipe.pexpire(budget_key, int(self._idle_ttl_ms))
                pipe.pexpire(expiry_key, int(self._idle_ttl_ms))
                await pipe.execute()
        except RedisError as exc:
            logger.warning("storing spend in Redis failed", extra={"error": repr(exc)})
            raise store_unavailable() from exc

    async def settle(
        self, key: ApiKey, request_id: str, cost: int, *, add_spend: bool, mark_settled: bool
    ) -> bool:
        mode = "0"
        if add_spend:
            mode = "2" if mark_settled else "1"
        marker = f"{self._prefix}settled:{key.redis_tag}:{request_id}"
        try:
            first = await self._settle(
                keys=[*self._keys(key), marker],
                args=[
                    request_id,
                    str(cost),
                    mode,
                    str(SETTLED_MARKER_TTL_S * 1000),
                    self._idle_ttl_ms,
                ],
            )
        except RedisError as exc:
            logger.warning("budget settlement failed in Redis", extra={"error": repr(exc)})
            raise store_unavailable() from exc
        return bool(first)

    async def close(self) -> None:
        """Nothing to release: the Redis client is shared and closed by the server."""
