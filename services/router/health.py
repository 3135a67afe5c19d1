"""Deployment health: a circuit breaker per deployment and Retry-After cooldowns.

Each deployment has a breaker with three states:

- closed: requests pass. It opens after ``failure_threshold`` consecutive failures, or
  when at least ``min_requests`` attempts in the current ``window_s`` failed at a rate
  of ``failure_rate`` or more.
- open: requests skip the deployment for a cooldown that doubles each time the breaker
  opens again without a success in between (``cooldown_s`` up to ``max_cooldown_s``).
- half-open: after the cooldown, at most ``half_open_probes`` requests may try the
  deployment within ``probe_timeout_s``. A success closes the breaker; a failure opens
  it again with the next, longer cooldown.

Separately, a 429 with Retry-After (or ``retry-after-ms``) makes the deployment wait
that long, capped at ``max_cooldown_s``, without counting as a breaker failure.

Failures that count are the deployment's own: retryable errors (5xx, timeouts,
connection and stream breaks) and rejected credentials. A 429, an invalid request and a
request the wire format cannot express do not count.

Two trackers implement the same state machine: :class:`InMemoryHealth` for one router
replica and :class:`RedisHealth`, which keeps the state in Redis so that every replica
reads the same breakers. The Redis tracker runs each transition as one Lua script, so
concurrent replicas cannot interleave inside one; it fails open (the deployment counts
as healthy) while Redis is unreachable. Times come from the caller's wall clock, so
replicas need clocks synchronised to well under the cooldowns (NTP does that).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from services.router.providers.base import (
    CODE_AUTH_FAILED,
    CODE_RATE_LIMITED,
    CODE_UNSUPPORTED_REQUEST,
    ProviderError,
)

__all__ = [
    "BreakerSettings",
    "HealthTracker",
    "InMemoryHealth",
    "RedisHealth",
    "counts_as_failure",
]

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSettings:
    """Thresholds and timings of every deployment's circuit breaker."""

    failure_threshold: int = 5
    """Consecutive failures that open the breaker."""
    failure_rate: float = 0.5
    """Share of failed attempts in one window, 0 to 1, that opens the breaker."""
    min_requests: int = 20
    """Attempts a window needs before its failure rate counts."""
    window_s: float = 30.0
    """Length of the fixed window for the failure rate, in seconds."""
    cooldown_s: float = 5.0
    """First open period, in seconds; it doubles on each reopening."""
    max_cooldown_s: float = 300.0
    """Upper bound of an open period and of a Retry-After cooldown, in seconds."""
    half_open_probes: int = 1
    """Requests allowed to try a half-open deployment at the same time."""
    probe_timeout_s: float = 60.0
    """Seconds after which an unfinished probe gives its slot up."""

    def cooldown(self, opens: int) -> float:
        """Return the open period after the breaker opened ``opens`` times in a row."""
        return min(self.cooldown_s * 2 ** max(opens - 1, 0), self.max_cooldown_s)


def counts_as_failure(error: ProviderError) -> bool:
    """Return whether an error counts against the deployment's breaker."""
    if error.code in (CODE_RATE_LIMITED, CODE_UNSUPPORTED_REQUEST):
        return False
    return error.retryable or error.code == CODE_AUTH_FAILED


class HealthTracker(Protocol):
    """Deployment health shared by every request of a router, or of all its replicas."""

    async def acquire(self, deployment_id: str) -> float:
        """Return 0 when a request may try the deployment now, else the seconds to wait.

        In the half-open state a 0 takes one of the probe slots.
        """
        ...

    async def record_success(self, deployment_id: str, latency_ms: float) -> None:
        """Note a successful attempt."""
        ...

    async def record_failure(self, deployment_id: str, error: ProviderError, latency_ms: float) -> None:
        """Note a failed attempt; a Retry-After starts a cooldown."""
        ...

    async def state(self, deployment_id: str) -> str:
        """Return the breaker state: ``closed``, ``open`` or ``half_open``."""
        ...


@dataclass
class _Breaker:
    state: str = CLOSED
    failures: int = 0
    """Consecutive failures while closed."""
    window_start: float = 0.0
    window_total: int = 0
    window_failed: int = 0
    open_until: float = 0.0
    opens: int = 0
    probes: int = 0
    probe_until: float = 0.0
    limited_until: float = 0.0


class InMemoryHealth:
    """Breakers kept in this process, right for a single router replica."""

    def __init__(
        self,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_cooldown_s: float | None = None,
    ) -> None:
        settings = settings or BreakerSettings()
        if max_cooldown_s is not None:
            settings = BreakerSettings(**{**settings.__dict__, "max_cooldown_s": max_cooldown_s})
        self.settings = settings
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}

    async def acquire(self, deployment_id: str) -> float:
        """Return 0 when the deployment may be tried now, else the seconds to wait."""
        breaker = self._breakers.get(deployment_id)
        if breaker is None:
            return 0.0
        now = self._clock()
        if breaker.limited_until > now:
            return breaker.limited_until - now
        if breaker.state == OPEN:
            if now < breaker.open_until:
                return breaker.open_until - now
            breaker.state, breaker.probes, breaker.probe_until = HALF_OPEN, 0, 0.0
            logger.info("deployment %s is half-open: sending a probe", deployment_id)
        if breaker.state == HALF_OPEN:
            if breaker.probe_until <= now:
                breaker.probes = 0
            if breaker.probes >= self.settings.half_open_probes:
                return breaker.probe_until - now
            breaker.probes += 1
            breaker.probe_until = now + self.settings.probe_timeout_s
        return 0.0

    async def record_success(self, deployment_id: str, latency_ms: float) -> None:
        """Close a half-open breaker, reset the failure count and end any Retry-After wait."""
        breaker = self._breakers.get(deployment_id)
        if breaker is None:
            return
        now = self._clock()
        breaker.limited_until = 0.0
        if breaker.state == HALF_OPEN:
            self._breakers[deployment_id] = _Breaker()
            logger.info("deployment %s recovered: breaker closed", deployment_id)
            return
        if breaker.state == CLOSED:
            breaker.failures = 0
            self._roll_window(breaker, now)
            breaker.window_total += 1

    async def record_failure(self, deployment_id: str, error: ProviderError, latency_ms: float) -> None:
        """Count the failure and open the breaker when a threshold is reached."""
        breaker = self._breakers.setdefault(deployment_id, _Breaker())
        now = self._clock()
        settings = self.settings
        if error.retry_after_s is not None and error.retry_after_s > 0 and error.retryable:
            until = now + min(error.retry_after_s, settings.max_cooldown_s)
            breaker.limited_until = max(breaker.limited_until, until)
            logger.info("deployment %s cooling down for %.1f s after Retry-After", deployment_id, until - now)
        if not counts_as_failure(error):
            return

        if breaker.state == HALF_OPEN:
            self._open(deployment_id, breaker, now, "its probe failed")
            return
        if breaker.state == OPEN:
            return
        breaker.failures += 1
        self._roll_window(breaker, now)
        breaker.window_total += 1
        breaker.window_failed += 1
        if breaker.failures >= settings.failure_threshold:
            self._open(deployment_id, breaker, now, f"{breaker.failures} consecutive failures")
        elif (
            breaker.window_total >= settings.min_requests
            and breaker.window_failed >= settings.failure_rate * breaker.window_total
        ):
            self._open(
                deployment_id,
                breaker,
                now,
                f"{breaker.window_failed} of {breaker.window_total} attempts failed",
            )

    async def state(self, deployment_id: str) -> str:
        """Return the breaker state; an open breaker past its cooldown reads as half-open."""
        breaker = self._breakers.get(deployment_id)
        if breaker is None:
            return CLOSED
        if breaker.state == OPEN and self._clock() >= breaker.open_until:
            return HALF_OPEN
        return breaker.state

    def _roll_window(self, breaker: _Breaker, now: float) -> None:
        if now - breaker.window_start >= self.settings.window_s:
            breaker.window_start, breaker.window_total, breaker.window_failed = now, 0, 0

    def _open(self, deployment_id: str, breaker: _Breaker, now: float, reason: str) -> None:
        breaker.opens += 1
        cooldown = self.settings.cooldown(breaker.opens)
        breaker.state, breaker.open_until = OPEN, now + cooldown
        breaker.failures, breaker.probes, breaker.probe_until = 0, 0, 0.0
        breaker.window_start, breaker.window_total, breaker.window_failed = now, 0, 0
        logger.warning("deployment %s breaker opened for %.1f s: %s", deployment_id, cooldown, reason)


# One script for every transition, so that the Redis state machine matches the in-process
# one step for step. KEYS[1] is the deployment's hash; ARGV: operation, now, then the
# settings. Returns {wait_seconds_as_string, state, event}; event is "" or what changed.
_SCRIPT = """
local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local rate = tonumber(ARGV[4])
local min_requests = tonumber(ARGV[5])
local window_s = tonumber(ARGV[6])
local cooldown_s = tonumber(ARGV[7])
local max_cooldown_s = tonumber(ARGV[8])
local probes_max = tonumber(ARGV[9])
local probe_timeout_s = tonumber(ARGV[10])
local retry_after = tonumber(ARGV[11])
local counts = ARGV[12] == "1"
local ttl = tonumber(ARGV[13])

local raw = redis.call("HGETALL", key)
local exists = #raw > 0
local b = {state = "closed", failures = 0, window_start = 0, window_total = 0, window_failed = 0,
           open_until = 0, opens = 0, probes = 0, probe_until = 0, limited_until = 0}
for i = 1, #raw, 2 do
  local field = raw[i]
  if field == "state" then b.state = raw[i + 1] else b[field] = tonumber(raw[i + 1]) end
end

local function save()
  redis.call("HSET", key, "state", b.state, "failures", b.failures, "window_start", tostring(b.window_start),
    "window_total", b.window_total, "window_failed", b.window_failed, "open_until", tostring(b.open_until),
    "opens", b.opens, "probes", b.probes, "probe_until", tostring(b.probe_until),
    "limited_until", tostring(b.limited_until))
  redis.call("PEXPIRE", key, ttl)
end

local function roll()
  if now - b.window_start >= window_s then
    b.window_start = now
    b.window_total = 0
    b.window_failed = 0
  end
end

local function open_breaker()
  b.opens = b.opens + 1
  local cooldown = math.min(cooldown_s * 2 ^ math.max(b.opens - 1, 0), max_cooldown_s)
  b.state = "open"
  b.open_until = now + cooldown
  b.failures = 0
  b.probes = 0
  b.probe_until = 0
  b.window_start = now
  b.window_total = 0
  b.window_failed = 0
  return "opened:" .. tostring(cooldown)
end

if op == "acquire" then
  if not exists then return {"0", "closed", ""} end
  if b.limited_until > now then return {tostring(b.limited_until - now), b.state, ""} end
  local event = ""
  if b.state == "open" then
    if now < b.open_until then return {tostring(b.open_until - now), b.state, ""} end
    b.state = "half_open"
    b.probes = 0
    b.probe_until = 0
    event = "half_open"
  end
  if b.state == "half_open" then
    if b.probe_until <= now then b.probes = 0 end
    if b.probes >= probes_max then
      save()
      return {tostring(b.probe_until - now), b.state, event}
    end
    b.probes = b.probes + 1
    b.probe_until = now + probe_timeout_s
    save()
  end
  return {"0", b.state, event}
end

if op == "success" then
  if not exists then return {"0", "closed", ""} end
  b.limited_until = 0
  if b.state == "half_open" then
    redis.call("DEL", key)
    return {"0", "closed", "closed"}
  end
  if b.state == "closed" then
    b.failures = 0
    roll()
    b.window_total = b.window_total + 1
  end
  save()
  return {"0", b.state, ""}
end

if op == "failure" then
  local event = ""
  if retry_after > 0 then
    local until_ = now + math.min(retry_after, max_cooldown_s)
    if until_ > b.limited_until then b.limited_until = until_ end
    event = "limited"
  end
  if counts then
    if b.state == "half_open" then
      event = open_breaker()
    elseif b.state == "closed" then
      b.failures = b.failures + 1
      roll()
      b.window_total = b.window_total + 1
      b.window_failed = b.window_failed + 1
      if b.failures >= threshold then
        event = open_breaker()
      elseif b.window_total >= min_requests and b.window_failed >= rate * b.window_total then
        event = open_breaker()
      end
    end
  end
  save()
  return {"0", b.state, event}
end

if op == "state" then
  if b.state == "open" and now >= b.open_until then return {"0", "half_open", ""} end
  return {"0", b.state, ""}
end
return redis.error_reply("unknown operation " .. op)
"""

# Redis errors are logged at most this often, so an outage does not flood the log.
_ERROR_LOG_INTERVAL_S = 10.0


class RedisHealth:
    """Breakers kept in Redis and shared by every router replica that uses the same prefix."""

    def __init__(
        self,
        client: Any,
        settings: BreakerSettings | None = None,
        *,
        key_prefix: str = "aigw:router:health:",
        clock: Callable[[], float] = time.time,
        ttl_s: float = 86_400.0,
    ) -> None:
        """``client`` is a ``redis.asyncio.Redis``; keys expire ``ttl_s`` after their last change."""
        self.settings = settings or BreakerSettings()
        self._client = client
        self._prefix = key_prefix
        self._clock = clock
        self._ttl_ms = int(ttl_s * 1000)
        self._script = client.register_script(_SCRIPT)
        self._last_error_log = -math.inf

    @classmethod
    def from_url(cls, url: str, settings: BreakerSettings | None = None, **kwargs: Any) -> RedisHealth:
        """Connect lazily to the Redis at ``url``, with short socket timeouts."""
        import redis.asyncio as redis

        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        return cls(client, settings, **kwargs)

    async def acquire(self, deployment_id: str) -> float:
        """Return 0 when the deployment may be tried now, else the seconds to wait."""
        result = await self._run(deployment_id, "acquire")
        if result is None:
            return 0.0
        wait, _state, event = result
        if event == "half_open":
            logger.info("deployment %s is half-open: sending a probe", deployment_id)
        return max(wait, 0.0)

    async def record_success(self, deployment_id: str, latency_ms: float) -> None:
        """Close a half-open breaker, reset the failure count and end any Retry-After wait."""
        result = await self._run(deployment_id, "success")
        if result is not None and result[2] == "closed":
            logger.info("deployment %s recovered: breaker closed", deployment_id)

    async def record_failure(self, deployment_id: str, error: ProviderError, latency_ms: float) -> None:
        """Count the failure and open the breaker when a threshold is reached."""
        retry_after = error.retry_after_s if error.retryable and error.retry_after_s else 0.0
        result = await self._run(
            deployment_id, "failure", retry_after=max(retry_after, 0.0), counts=counts_as_failure(error)
        )
        if result is not None and result[2].startswith("opened:"):
            logger.warning(
                "deployment %s breaker opened for %s s", deployment_id, result[2].removeprefix("opened:")
            )

    async def state(self, deployment_id: str) -> str:
        """Return the breaker state; an open breaker past its cooldown reads as half-open."""
        result = await self._run(deployment_id, "state")
        return CLOSED if result is None else result[1]

    async def reset(self, deployment_id: str) -> None:
        """Forget a deployment's state, closing its breaker."""
        await self._client.delete(self._prefix + deployment_id)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def _run(
        self, deployment_id: str, operation: str, *, retry_after: float = 0.0, counts: bool = False
    ) -> tuple[float, str, str] | None:
        import redis

        settings = self.settings
        arguments = [
            operation,
            repr(self._clock()),
            settings.failure_threshold,
            repr(settings.failure_rate),
            settings.min_requests,
            repr(settings.window_s),
            repr(settings.cooldown_s),
            repr(settings.max_cooldown_s),
            settings.half_open_probes,
            repr(settings.probe_timeout_s),
            repr(retry_after),
            "1" if counts else "0",
            self._ttl_ms,
        ]
        try:
            wait, state, event = await self._script(keys=[self._prefix + deployment_id], args=arguments)
        except (redis.RedisError, OSError) as error:
            now = time.monotonic()
            if now - self._last_error_log >= _ERROR_LOG_INTERVAL_S:
                self._last_error_log = now
                logger.warning(
                    "deployment health in Redis is unavailable; treating deployments as healthy: %s",
                    type(error).__name__,
                )
            return None
        return float(wait), _text(state), _text(event)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
