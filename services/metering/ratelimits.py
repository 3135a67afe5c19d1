"""Requests-per-minute and tokens-per-minute limits per API key.

Both limits use GCRA (the generic cell rate algorithm), which stores one timestamp per
limit and key, the theoretical arrival time (TAT). A limit of L per minute spaces units
60/L seconds apart and tolerates a burst of the whole minute's allowance, so RPM 5
admits 5 requests at once and then one every 12 seconds. A request is checked against
both limits and charged to both only if both allow it.

Admit charges one request and the estimated prompt tokens. Settle charges the tokens
the provider reported beyond that estimate (completion tokens, a low estimate), without
rejecting, so a key that used more tokens than estimated waits longer for the next
request. A request that a limit rejects charges nothing, but one that the budget
rejects afterwards still counts against the limits. Admit is idempotent per request
id: a repeat within the reservation TTL is admitted without a second charge.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from libs.errors import ResourceExhaustedError
from services.metering import metrics
from services.metering.apikeys import ApiKey
from services.metering.budgets import store_unavailable

logger = logging.getLogger(__name__)

PERIOD_S = 60.0

# Float rounding must not turn the last allowed unit of a burst into a rejection.
_TOLERANCE_S = 1e-6


@dataclass(frozen=True)
class RateLimits:
    """Limits per API key; 0 means unlimited."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0

    @property
    def enabled(self) -> bool:
        """Return whether any limit is set."""
        return self.requests_per_minute > 0 or self.tokens_per_minute > 0


@dataclass(frozen=True)
class Decision:
    """Whether a request may run now and, if not, when it may and which limit blocks it."""

    allowed: bool
    retry_after_s: float = 0.0
    limit: str = ""
    """``requests`` or ``tokens`` when rejected."""


def advance(tat: float, now: float, cost: float, limit: int) -> float:
    """Return the TAT after charging ``cost`` units to a limit of ``limit`` per minute."""
    return max(tat, now) + cost * PERIOD_S / limit


def overshoot(new_tat: float, now: float) -> float:
    """Return how many seconds too early a charge that moves the TAT to ``new_tat`` comes.

    A result of 0 or less means the charge fits the limit now.
    """
    return new_tat - now - PERIOD_S


class RateLimitStore(Protocol):
    """Storage of the TATs and the charged request ids, in this process or in Redis."""

    async def acquire(self, key: ApiKey, request_id: str, tokens: int) -> Decision:
        """Charge one request and ``tokens`` if both limits allow it."""
        ...

    async def charge_tokens(self, key: ApiKey, request_id: str, tokens: int) -> None:
        """Charge the part of ``tokens`` beyond what Admit charged for ``request_id``."""
        ...


class RateLimiter:
    """Rate-limit checks of Admit and token charges of Settle."""

    def __init__(self, limits: RateLimits, store: RateLimitStore) -> None:
        self.limits = limits
        self.store = store

    async def acquire(self, key: ApiKey, request_id: str, estimated_tokens: int) -> None:
        """Charge the request, or raise ResourceExhaustedError (reason RATE_LIMITED).

        Raises UnavailableError when the store cannot be reached.
        """
        if not self.limits.enabled:
            return
        tpm = self.limits.tokens_per_minute
        if tpm and estimated_tokens > tpm:
            metrics.BUDGET_REJECTIONS.labels("RATE_LIMITED").inc()
            # Waiting does not help such a request, so there is no RetryInfo.
            raise ResourceExhaustedError(
                f"request of {estimated_tokens} estimated tokens exceeds the limit of API key "
                f"{key.key_id} of {tpm} tokens per minute",
                reason="RATE_LIMITED",
                subject=key.quota_subject,
                metadata={
                    "key_id": key.key_id,
                    "limit": "tokens",
                    "tokens_per_minute": str(tpm),
                    "estimated_tokens": str(estimated_tokens),
                },
            )

        decision = await self.store.acquire(key, request_id, estimated_tokens)
        if decision.allowed:
            return

        metrics.BUDGET_REJECTIONS.labels("RATE_LIMITED").inc()
        per_minute = self.limits.requests_per_minute if decision.limit == "requests" else tpm
        retry_after = math.ceil(decision.retry_after_s * 1000) / 1000
        raise ResourceExhaustedError(
            f"rate limit of API key {key.key_id} reached: {per_minute} {decision.limit} "
            f"per minute; retry after {retry_after:.3f} s",
            reason="RATE_LIMITED",
            subject=key.quota_subject,
            metadata={
                "key_id": key.key_id,
                "limit": decision.limit,
                f"{decision.limit}_per_minute": str(per_minute),
                "retry_after_s": f"{retry_after:.3f}",
            },
            retry_after_s=retry_after,
        )

    async def settle(self, key: ApiKey, request_id: str, total_tokens: int) -> None:
        """Charge the tokens of a finished request beyond its estimate to the token limit."""
        if not self.limits.enabled:
            return
        await self.store.charge_tokens(key, request_id, total_tokens)


@dataclass
class _Tats:
    requests: float = 0.0
    tokens: float = 0.0


class LocalRateLimitStore:
    """TATs in this process; right for a single replica."""

    def __init__(
        self, limits: RateLimits, charge_ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = limits
        self._charge_ttl_s = charge_ttl_s
        self._clock = clock
        self._tats: dict[ApiKey, _Tats] = {}
        # Request id to (estimated tokens, expiry); insertion order is expiry order
        # because the TTL is the same for every entry.
        self._charged: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = asyncio.Lock()

    async def acquire(self, key: ApiKey, request_id: str, tokens: int) -> Decision:
        async with self._lock:
            now = self._clock()
            self._forget_expired(now)
            if request_id in self._charged:
                return Decision(True)
            tats = self._tats.setdefault(key, _Tats())
            rpm, tpm = self._limits.requests_per_minute, self._limits.tokens_per_minute

            new_requests = advance(tats.requests, now, 1, rpm) if rpm else tats.requests
            new_tokens = advance(tats.tokens, now, tokens, tpm) if tpm and tokens else tats.tokens
            requests_over = overshoot(new_requests, now) if rpm else 0.0
            tokens_over = overshoot(new_tokens, now) if tpm and tokens else 0.0
            if requests_over > _TOLERANCE_S or tokens_over > _TOLERANCE_S:
                limit = "requests" if requests_over >= tokens_over else "tokens"
                return Decision(False, max(requests_over, tokens_over), limit)

            tats.requests, tats.tokens = new_requests, new_tokens
            self._charged[request_id] = (tokens, now + self._charge_ttl_s)
            return Decision(True)

    async def charge_tokens(self, key: ApiKey, request_id: str, tokens: int) -> None:
        async with self._lock:
            now = self._clock()
            estimated, _ = self._charged.pop(request_id, (0, 0.0))
            extra = tokens - estimated
            tpm = self._limits.tokens_per_minute
            if tpm and extra > 0:
                tats = self._tats.setdefault(key, _Tats())
                tats.tokens = advance(tats.tokens, now, extra, tpm)

    def _forget_expired(self, now: float) -> None:
        while self._charged:
            request_id, (_, expires) = next(iter(self._charged.items()))
            if expires > now:
                break
            del self._charged[request_id]
        # TATs in the past carry no state: drop them so the map does not grow with every key.
        if len(self._tats) > 10_000:
            stale = [
                key for key, tats in self._tats.items() if max(tats.requests, tats.tokens) <= now
            ]
            for key in stale:
                del self._tats[key]


# KEYS: hash of TATs in ms (requests, tokens), charged-request marker.
# ARGV: RPM, TPM, tokens, marker TTL ms, tolerance ms.
# Returns {1, 0, 0} when admitted, {0, retry after ms, 1 for requests | 2 for tokens} otherwise.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {1, 0, 0}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local period = 60000
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[5])
local new_requests, new_tokens = nil, nil
local requests_over, tokens_over = 0, 0
if rpm > 0 then
  local tat = tonumber(redis.call('HGET', KEYS[1], 'requests') or '0')
  new_requests = math.max(tat, now) + period / rpm
  requests_over = new_requests - now - period
end
if tpm > 0 and tokens > 0 then
  local tat = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '0')
  new_tokens = math.max(tat, now) + tokens * period / tpm
  tokens_over = new_tokens - now - period
end
if requests_over > tolerance or tokens_over > tolerance then
  if requests_over >= tokens_over then
    return {0, math.ceil(requests_over), 1}
  end
  return {0, math.ceil(tokens_over), 2}
end
local latest = now
if new_requests then
  redis.call('HSET', KEYS[1], 'requests', new_requests)
  latest = math.max(latest, new_requests)
end
if new_tokens then
  redis.call('HSET', KEYS[1], 'tokens', new_tokens)
  latest = math.max(latest, new_tokens)
end
redis.call('PEXPIRE', KEYS[1], math.ceil(latest - now) + 1000)
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return {1, 0, 0}
"""

# KEYS: hash of TATs, charged-request marker. ARGV: TPM, tokens used.
_CHARGE_TOKENS = """
local estimated = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('DEL', KEYS[2])
local tpm = tonumber(ARGV[1])
local extra = tonumber(ARGV[2]) - estimated
if tpm > 0 and extra > 0 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
  local tat = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '0')
  local new_tokens = math.max(tat, now) + extra * 60000 / tpm
  redis.call('HSET', KEYS[1], 'tokens', new_tokens)
  local requests = tonumber(redis.call('HGET', KEYS[1], 'requests') or '0')
  redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(new_tokens, requests) - now) + 1000)
end
return 1
"""


class RedisRateLimitStore:
    """TATs in Redis, shared by every replica; Redis's clock is the one clock they share."""

    def __init__(self, redis: Redis, prefix: str, limits: RateLimits, charge_ttl_s: float) -> None:
        self._prefix = prefix
        self._limits = limits
        self._charge_ttl_ms = str(int(charge_ttl_s * 1000))
        self._acquire = redis.register_script(_ACQUIRE)
        self._charge_tokens = redis.register_script(_CHARGE_TOKENS)

    def _keys(self, key: ApiKey, request_id: str) -> list[str]:
        tag = key.redis_tag
        return [f"{self._prefix}rate:{tag}", f"{self._prefix}charged:{tag}:{request_id}"]

    async def acquire(self, key: ApiKey, request_id: str, tokens: int) -> Decision:
        try:
            allowed, retry_ms, limit = await self._acquire(
                keys=self._keys(key, request_id),
                args=[
                    self._limits.requests_per_minute,
                    self._limits.tokens_per_minute,
                    tokens,
                    self._charge_ttl_ms,
                    _TOLERANCE_S * 1000,
                ],
            )
        except RedisError as exc:
            logger.warning("rate-limit check failed in Redis", extra={"error": repr(exc)})
            raise store_unavailable() from exc
        if allowed == 1:
            return Decision(True)
        return Decision(False, int(retry_ms) / 1000, "requests" if limit == 1 else "tokens")

    async def charge_tokens(self, key: ApiKey, request_id: str, tokens: int) -> None:
        try:
            await self._charge_tokens(
                keys=self._keys(key, request_id), args=[self._limits.tokens_per_minute, tokens]
            )
        except RedisError as exc:
            logger.warning("token charge failed in Redis", extra={"error": repr(exc)})
            raise store_unavailable() from exc
