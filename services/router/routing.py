"""Choose deployments for a request and fail over between them.

A strategy orders a group's deployments for one request. A health tracker reports which
deployments are cooling down and records each attempt's outcome. The router walks the
order: a retryable ProviderError moves on to the next deployment at once, and any other
error is raised at once. New strategies (lowest cost, latency, least busy, weighted)
register in ``STRATEGIES``. A health tracker shared between replicas (Redis, say)
implements ``HealthTracker`` and is passed to the Router.

Exception tree::

    RoutingError
        AllDeploymentsFailedError   every deployment failed or was cooling down
    ProviderError                   non-retryable failure, raised as the adapter raised it
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.router.catalog import STRATEGIES as CATALOG_STRATEGIES
from services.router.catalog import Catalog, Deployment, ModelGroup
from services.router.providers import adapter_for
from services.router.providers.base import ProviderAdapter, ProviderError

__all__ = [
    "STRATEGIES",
    "AllDeploymentsFailedError",
    "Attempt",
    "HealthTracker",
    "InMemoryHealth",
    "PriorityStrategy",
    "RoutedCompletion",
    "RoutedStream",
    "Router",
    "RoutingError",
    "RoutingStrategy",
]

logger = logging.getLogger(__name__)

OK_CODE = "OK"


@dataclass
class Attempt:
    """One call to one deployment for a request."""

    deployment_id: str
    status: int | None
    """Upstream HTTP status: 200 on success, None for timeouts and connection errors."""
    code: str
    """"OK" or the ProviderError code."""
    latency_ms: float
    """Time until the response (complete), the first chunk (stream) or the error."""


class RoutingError(Exception):
    """Base of the router's own errors."""


class AllDeploymentsFailedError(RoutingError):
    """No deployment of the group served the request.

    ``last_error`` is None when every deployment was cooling down and none was tried;
    ``retry_after_s`` is then the time until the first becomes free again.
    """

    def __init__(
        self,
        model: str,
        attempts: Sequence[Attempt],
        last_error: ProviderError | None,
        retry_after_s: float | None = None,
    ) -> None:
        if last_error is None:
            message = f"every deployment of model {model!r} is cooling down after rate limiting"
        else:
            message = (
                f"all {len(attempts)} attempted deployments of model {model!r} failed; "
                f"last error: {last_error.message}"
            )
        super().__init__(message)
        self.model = model
        self.attempts = list(attempts)
        self.last_error = last_error
        self.retry_after_s = retry_after_s


@dataclass
class RoutedCompletion:
    """A non-streaming response with the deployment that returned it."""

    body: dict[str, Any]
    """OpenAI ``chat.completion`` dict."""
    deployment: Deployment
    attempts: list[Attempt]
    """Every attempt, the successful one last."""


class RoutingStrategy(Protocol):
    """Orders a group's deployments for one request."""

    def order(self, group: ModelGroup, request: Mapping[str, Any]) -> Sequence[Deployment]:
        """Return the deployments to try, first choice first."""
        ...


class PriorityStrategy:
    """Lowest ``priority`` value first; ties keep catalog order."""

    def order(self, group: ModelGroup, request: Mapping[str, Any]) -> Sequence[Deployment]:
        """Return the group's deployments sorted by priority."""
        return sorted(group.deployments, key=lambda deployment: deployment.priority)


STRATEGIES: dict[str, RoutingStrategy] = {"priority": PriorityStrategy()}
"""Strategy by the name a model group gives in the catalog."""

if set(STRATEGIES) != set(CATALOG_STRATEGIES):
    raise RuntimeError("routing strategies and the catalog's STRATEGIES list disagree")


class HealthTracker(Protocol):
    """Deployment health shared by every request (in process now; Redis later)."""

    async def cooldowns(self, deployment_ids: Sequence[str]) -> dict[str, float]:
        """Return the remaining cooldown in seconds of each listed deployment cooling down."""
        ...

    async def record_success(self, deployment_id: str, latency_ms: float) -> None:
        """Note a successful attempt."""
        ...

    async def record_failure(
        self, deployment_id: str, error: ProviderError, latency_ms: float
    ) -> None:
        """Note a failed attempt; a Retry-After starts a cooldown."""
        ...


class InMemoryHealth:
    """Cooldowns kept in this process, right for a single router replica."""

    def __init__(
        self,
        *,
        max_cooldown_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # An unbounded Retry-After (a date far ahead, or a bad value) would take a
        # deployment out for good; the cap bounds that.
        self._max_cooldown_s = max_cooldown_s
        self._clock = clock
        self._cooling_until: dict[str, float] = {}

    async def cooldowns(self, deployment_ids: Sequence[str]) -> dict[str, float]:
        """Return the remaining cooldown of each listed deployment cooling down."""
        if not self._cooling_until:
            return {}
        now = self._clock()
        remaining: dict[str, float] = {}
        for deployment_id in deployment_ids:
            until = self._cooling_until.get(deployment_id)
            if until is None:
                continue
            if until > now:
                remaining[deployment_id] = until - now
            else:
                del self._cooling_until[deployment_id]
        return remaining

    async def record_success(self, deployment_id: str, latency_ms: float) -> None:
        """End any cooldown of the deployment, because it responded."""
        self._cooling_until.pop(deployment_id, None)

    async def record_failure(
        self, deployment_id: str, error: ProviderError, latency_ms: float
    ) -> None:
        """Start a cooldown when a retryable error carried a Retry-After."""
        if error.retryable and error.retry_after_s and error.retry_after_s > 0:
            seconds = min(error.retry_after_s, self._max_cooldown_s)
            self._cooling_until[deployment_id] = self._clock() + seconds
            logger.info("deployment %s cooling down for %.1f s", deployment_id, seconds)


class RoutedStream:
    """An answer stream bound to the deployment that started it.

    Iterate it for OpenAI ``chat.completion.chunk`` dicts. Errors raised while
    iterating come after chunks were already delivered, so the caller reports them in
    band. Call :meth:`aclose` (or use ``async with``) when stopping early, which closes
    the upstream connection.
    """

    def __init__(
        self,
        deployment: Deployment,
        attempts: list[Attempt],
        buffered: list[dict[str, Any]],
        chunks: AsyncIterator[dict[str, Any]],
        health: HealthTracker,
    ) -> None:
        self.deployment = deployment
        self.attempts = attempts
        """Every attempt, the one streaming now last."""
        self._buffered = buffered
        self._chunks = chunks
        self._health = health
        self._started = time.perf_counter()

    def __aiter__(self) -> RoutedStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._buffered:
            return self._buffered.pop(0)
        try:
            return await self._chunks.__anext__()
        except ProviderError as error:
            error.attempts = tuple(self.attempts)
            latency_ms = (time.perf_counter() - self._started) * 1000.0
            await self._health.record_failure(self.deployment.id, error, latency_ms)
            logger.warning(
                "deployment %s failed mid-stream: code=%s status=%s",
                self.deployment.id,
                error.code,
                error.status,
            )
            raise

    async def aclose(self) -> None:
        """Stop reading and release the upstream connection."""
        self._buffered.clear()
        closer = getattr(self._chunks, "aclose", None)
        if closer is not None:
            await closer()

    async def __aenter__(self) -> RoutedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@dataclass
class _Plan:
    """Deployments to try for one request, and the cooldowns that removed others."""

    candidates: list[Deployment]
    skipped: dict[str, float] = field(default_factory=dict)


class Router:
    """Serve a request from a model group, failing over between its deployments."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        health: HealthTracker | None = None,
        adapters: Callable[[str], ProviderAdapter] = adapter_for,
        strategies: Mapping[str, RoutingStrategy] | None = None,
    ) -> None:
        self._catalog = catalog
        self._health: HealthTracker = health if health is not None else InMemoryHealth()
        self._adapters = adapters
        self._strategies = dict(STRATEGIES if strategies is None else strategies)
        for group in catalog.models():
            if group.strategy not in self._strategies:
                raise ValueError(
                    f"model {group.name!r} names strategy {group.strategy!r}, "
                    f"which is not one of {sorted(self._strategies)}"
                )

    @property
    def catalog(self) -> Catalog:
        """The catalog this router serves."""
        return self._catalog

    async def complete(self, request: dict[str, Any], group: ModelGroup) -> RoutedCompletion:
        """Return the first successful answer in strategy order.

        Raises ProviderError at once for a non-retryable error, with ``attempts`` set,
        and AllDeploymentsFailedError when no deployment answered.
        """
        plan = await self._plan(request, group)
        attempts: list[Attempt] = []
        last_error: ProviderError | None = None

        for deployment in plan.candidates:
            adapter = self._adapters(deployment.provider)
            started = time.perf_counter()
            try:
                body = await adapter.complete(request, deployment)
            except ProviderError as error:
                await self._failed(deployment, error, started, attempts)
                last_error = error
                continue
            latency_ms = _elapsed_ms(started)
            attempts.append(Attempt(deployment.id, 200, OK_CODE, latency_ms))
            await self._health.record_success(deployment.id, latency_ms)
            return RoutedCompletion(body=body, deployment=deployment, attempts=attempts)

        raise self._exhausted(group, plan, attempts, last_error)

    async def stream(self, request: dict[str, Any], group: ModelGroup) -> RoutedStream:
        """Open a stream on the first deployment that delivers content, in strategy order.

        Returns once a chunk with content (or a finish reason or usage) arrived. Chunks
        before it that carry only the role are held back, so that a deployment that
        stalls or fails before its first token is still failed over. Raises like
        :meth:`complete`. Errors after this returns come from iterating the stream.
        """
        plan = await self._plan(request, group)
        attempts: list[Attempt] = []
        last_error: ProviderError | None = None

        for deployment in plan.candidates:
            adapter = self._adapters(deployment.provider)
            started = time.perf_counter()
            chunks = adapter.stream(request, deployment)
            buffered: list[dict[str, Any]] = []
            try:
                async for chunk in chunks:
                    buffered.append(chunk)
                    if _has_content(chunk):
                        break
            except ProviderError as error:
                await _close(chunks)
                await self._failed(deployment, error, started, attempts)
                last_error = error
                continue
            except BaseException:
                await _close(chunks)
                raise

            latency_ms = _elapsed_ms(started)
            attempts.append(Attempt(deployment.id, 200, OK_CODE, latency_ms))
            await self._health.record_success(deployment.id, latency_ms)
            return RoutedStream(deployment, attempts, buffered, chunks, self._health)

        raise self._exhausted(group, plan, attempts, last_error)

    async def _plan(self, request: Mapping[str, Any], group: ModelGroup) -> _Plan:
        ordered = self._strategies[group.strategy].order(group, request)
        cooling = await self._health.cooldowns([deployment.id for deployment in ordered])
        candidates = [deployment for deployment in ordered if deployment.id not in cooling]
        return _Plan(candidates=candidates, skipped=cooling)

    async def _failed(
        self,
        deployment: Deployment,
        error: ProviderError,
        started: float,
        attempts: list[Attempt],
    ) -> None:
        latency_ms = _elapsed_ms(started)
        attempts.append(Attempt(deployment.id, error.status, error.code, latency_ms))
        await self._health.record_failure(deployment.id, error, latency_ms)
        if not error.retryable:
            error.attempts = tuple(attempts)
            raise error
        logger.warning(
            "deployment %s failed, trying the next one: code=%s status=%s latency_ms=%.0f",
            deployment.id,
            error.code,
            error.status,
            latency_ms,
        )

    def _exhausted(
        self,
        group: ModelGroup,
        plan: _Plan,
        attempts: list[Attempt],
        last_error: ProviderError | None,
    ) -> AllDeploymentsFailedError:
        retry_after = last_error.retry_after_s if last_error is not None else None
        if plan.skipped:
            soonest = min(plan.skipped.values())
            retry_after = soonest if retry_after is None else min(retry_after, soonest)
        if last_error is not None:
            last_error.attempts = tuple(attempts)
        return AllDeploymentsFailedError(group.name, attempts, last_error, retry_after)


def _has_content(chunk: Mapping[str, Any]) -> bool:
    """Return whether a chunk carries more than the opening role announcement."""
    if chunk.get("usage"):
        return True
    for choice in chunk.get("choices") or ():
        if choice.get("finish_reason"):
            return True
        delta = choice.get("delta") or {}
        for key, value in delta.items():
            if key != "role" and value not in (None, "", [], {}):
                return True
    return False


async def _close(chunks: AsyncIterator[dict[str, Any]]) -> None:
    closer = getattr(chunks, "aclose", None)
    if closer is not None:
        await closer()


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
