"""Choose deployments for a request, fail over between them and retry with backoff.

For each request the router:

1. keeps the group's deployments that match the request's routing preferences (a pinned
   provider or deployment, a maximum estimated price);
2. orders them with the group's strategy (``STRATEGIES``);
3. walks the order. Each deployment's health tracker may hold it back (an open circuit
   breaker, a Retry-After cooldown), and then the next one is tried at once. A
   retryable ProviderError moves on to the next deployment at once. A non-retryable
   one is raised at once;
4. when every deployment of a round failed, waits an exponential backoff with jitter
   and starts another round, as long as the round limit, the attempt limit and the
   total deadline allow, and unless every failure asked for a longer Retry-After.
   A round in which every deployment was held back ends the request with the soonest
   time one becomes free as its retry delay.

Strategies:

- ``priority``: lowest ``priority`` value first, ties in catalog order.
- ``lowest_cost``: cheapest first for the request's estimated tokens (prompt characters
  divided by four, plus the requested maximum output, or 512 tokens when unset).
- ``lowest_latency``: lowest moving average (EWMA) first: of time to first content for
  stream requests, of the whole response otherwise. Deployments not yet measured come
  first, so that each gets measured.
- ``least_busy``: fewest requests in flight from this replica first.
- ``weighted``: a random order drawn by ``weight``, so that each deployment comes first
  in proportion to its weight.

Every order contains all the matching deployments, so each strategy fails over to the
rest. Latency averages and in-flight counts are kept per replica. Breakers and cooldowns
live in the health tracker, which can be shared between replicas (see ``health.py``).

Exception tree::

    RoutingError
        AllDeploymentsFailedError   every attempt failed, or every deployment was held back
        NoMatchingDeploymentError   no deployment fits the request's routing preferences
    ProviderError                   non-retryable failure, raised as the adapter raised it
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from services.router import metrics
from services.router.catalog import STRATEGIES as CATALOG_STRATEGIES
from services.router.catalog import Catalog, Deployment, ModelGroup
from services.router.health import HealthTracker, InMemoryHealth
from services.router.providers import adapter_for
from services.router.providers.base import CODE_TIMEOUT, ProviderAdapter, ProviderError

__all__ = [
    "DEFAULT_OUTPUT_ESTIMATE",
    "STRATEGIES",
    "AllDeploymentsFailedError",
    "Attempt",
    "HealthTracker",
    "InMemoryHealth",
    "LoadStats",
    "NoMatchingDeploymentError",
    "RetryPolicy",
    "RoutePreferences",
    "RoutedCompletion",
    "RoutedStream",
    "Router",
    "RoutingError",
    "RoutingStrategy",
    "estimate_tokens",
    "estimated_cost_usd",
]

logger = logging.getLogger(__name__)

OK_CODE = "OK"
DEFAULT_OUTPUT_ESTIMATE = 512
"""Output tokens assumed when the request sets no maximum."""
CHARS_PER_TOKEN = 4
"""Characters per token for estimates made before a provider reports usage."""
TOKENS_PER_MESSAGE = 4
"""Tokens a chat format adds per message (role and separators), as an estimate."""


@dataclass
class Attempt:
    """One call to one deployment for a request."""

    deployment_id: str
    status: int | None
    """Upstream HTTP status: 200 on success, None for timeouts and connection errors."""
    code: str
    """"OK" or the ProviderError code."""
    latency_ms: float
    """Time until the response (complete), the first content (stream) or the error."""


@dataclass(frozen=True)
class RoutePreferences:
    """Routing choices a request makes for itself."""

    provider: str | None = None
    """Only deployments of this provider wire format ("openai", "anthropic")."""
    deployment: str | None = None
    """Only the deployment with this id, such as "gpt-4o-mini/backup"."""
    max_price_usd: float | None = None
    """Only deployments whose estimated cost of this request is at most this many USD."""

    def is_empty(self) -> bool:
        """Return whether the request made no routing choice."""
        return self.provider is None and self.deployment is None and self.max_price_usd is None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on the attempts of one request."""

    max_attempts: int = 3
    """Provider calls per request, failovers and retries together."""
    rounds: int = 1
    """Walks over the deployment list; 1 fails over once through the list and never
    retries a deployment. The router service sets 2 (``ROUTER_RETRY_ROUNDS``)."""
    backoff_base_s: float = 0.25
    """Backoff before the second round; each later round doubles it."""
    backoff_max_s: float = 2.0
    """Upper bound of one backoff before jitter."""
    deadline_s: float = 120.0
    """Time for the whole request to get a response (a stream: its first content)."""

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Return the wait before round ``retry + 1``: half to all of the exponential step."""
        step = min(self.backoff_base_s * 2 ** (retry - 1), self.backoff_max_s)
        return step * rng.uniform(0.5, 1.0)


class RoutingError(Exception):
    """Base of the router's own errors."""


class AllDeploymentsFailedError(RoutingError):
    """No deployment of the group served the request.

    ``last_error`` is None when the health tracker held every deployment back, so that
    none was tried. ``retry_after_s`` is then the time until the first is free again.
    """

    def __init__(
        self,
        model: str,
        attempts: Sequence[Attempt],
        last_error: ProviderError | None,
        retry_after_s: float | None = None,
    ) -> None:
        if last_error is None:
            message = f"every deployment of model {model!r} is cooling down after failures or rate limiting"
        else:
            message = (
                f"all {len(attempts)} attempts at deployments of model {model!r} failed; "
                f"last error: {last_error.message}"
            )
        super().__init__(message)
        self.model = model
        self.attempts = list(attempts)
        self.last_error = last_error
        self.retry_after_s = retry_after_s


class NoMatchingDeploymentError(RoutingError):
    """The request's routing preferences rule out every deployment of the model."""

    def __init__(self, model: str, preferences: RoutePreferences, preference: str, message: str) -> None:
        super().__init__(message)
        self.model = model
        self.preferences = preferences
        self.preference = preference
        """The preference that ruled out the rest: "deployment", "provider" or "max_price_usd"."""
        self.message = message


@dataclass
class RoutedCompletion:
    """A non-streaming response with the deployment that returned it."""

    body: dict[str, Any]
    """OpenAI ``chat.completion`` dict."""
    deployment: Deployment
    attempts: list[Attempt]
    """Every attempt, the successful one last."""


def estimate_tokens(request: Mapping[str, Any]) -> tuple[int, int]:
    """Return estimated (prompt, completion) tokens of an OpenAI-shaped request."""
    characters = 0
    messages = request.get("messages") or ()
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            characters += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    characters += len(part["text"])
    prompt = characters // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * len(messages)
    completion = request.get("max_completion_tokens") or request.get("max_tokens") or DEFAULT_OUTPUT_ESTIMATE
    return prompt, int(completion)


def estimated_cost_usd(deployment: Deployment, prompt_tokens: int, completion_tokens: int) -> float:
    """Return the list-price cost of the tokens at the deployment, in USD."""
    price = deployment.price
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1_000_000


@dataclass
class _DeploymentLoad:
    in_flight: int = 0
    latency_ms: float | None = None
    first_content_ms: float | None = None


class LoadStats:
    """In-flight counts and latency averages per deployment, for this replica."""

    def __init__(self, alpha: float = 0.3) -> None:
        """``alpha`` is the weight of the newest sample in the moving averages."""
        self.alpha = alpha
        self._loads: dict[str, _DeploymentLoad] = {}

    def _load(self, deployment_id: str) -> _DeploymentLoad:
        return self._loads.setdefault(deployment_id, _DeploymentLoad())

    def started(self, deployment_id: str) -> None:
        """Count a call that began."""
        self._load(deployment_id).in_flight += 1

    def ended(self, deployment_id: str) -> None:
        """Count a call that ended, however it ended."""
        load = self._load(deployment_id)
        load.in_flight = max(load.in_flight - 1, 0)

    def observe(self, deployment_id: str, milliseconds: float, *, stream: bool) -> None:
        """Fold one latency sample into the deployment's average."""
        load = self._load(deployment_id)
        if stream:
            load.first_content_ms = self._average(load.first_content_ms, milliseconds)
        else:
            load.latency_ms = self._average(load.latency_ms, milliseconds)

    def in_flight(self, deployment_id: str) -> int:
        """Return the calls to the deployment in progress."""
        load = self._loads.get(deployment_id)
        return load.in_flight if load else 0

    def latency_ms(self, deployment_id: str, *, stream: bool) -> float | None:
        """Return the average time to first content (streams) or to the response, or None."""
        load = self._loads.get(deployment_id)
        if load is None:
            return None
        preferred, other = (
            (load.first_content_ms, load.latency_ms) if stream else (load.latency_ms, load.first_content_ms)
        )
        return preferred if preferred is not None else other

    def _average(self, current: float | None, sample: float) -> float:
        return sample if current is None else self.alpha * sample + (1 - self.alpha) * current


class RoutingStrategy(Protocol):
    """Orders a group's deployments for one request."""

    def order(self, group: ModelGroup, request: Mapping[str, Any], stats: LoadStats) -> list[Deployment]:
        """Return every deployment of the group, first choice first."""
        ...


def _by_priority(deployments: Sequence[Deployment]) -> list[Deployment]:
    return sorted(deployments, key=lambda deployment: deployment.priority)


class PriorityStrategy:
    """Lowest ``priority`` value first; ties keep catalog order."""

    def order(self, group: ModelGroup, request: Mapping[str, Any], stats: LoadStats) -> list[Deployment]:
        """Return the group's deployments sorted by priority."""
        return _by_priority(group.deployments)


class LowestCostStrategy:
    """Cheapest estimated cost of this request first; ties by priority."""

    def order(self, group: ModelGroup, request: Mapping[str, Any], stats: LoadStats) -> list[Deployment]:
        """Return the group's deployments sorted by estimated cost."""
        prompt, completion = estimate_tokens(request)
        return sorted(
            _by_priority(group.deployments),
            key=lambda deployment: estimated_cost_usd(deployment, prompt, completion),
        )


class LowestLatencyStrategy:
    """Unmeasured deployments first, then the lowest latency average; ties by priority."""

    def order(self, group: ModelGroup, request: Mapping[str, Any], stats: LoadStats) -> list[Deployment]:
        """Return the group's deployments sorted by their latency average."""
        stream = bool(request.get("stream"))

        def key(deployment: Deployment) -> float:
            latency = stats.latency_ms(deployment.id, stream=stream)
            return -1.0 if latency is None else latency

        return sorted(_by_priority(group.deployments), key=key)


class LeastBusyStrategy:
    """Fewest in-flight requests first; ties by priority."""

    def order(self, group: ModelGroup, request: Mapping[str, Any], stats: LoadStats) -> list[Deployment]:
        """Return the group's deployments sorted by in-flight requests."""
        return sorted(_by_priority(group.deployments), key=lambda deployment: stats.in_flight(deployment.id))


class WeightedStrategy:
    """A random order in which each deployment comes first in proportion to its weight."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def order(self, group: ModelGroup, request: Mapping[str, Any], stats: LoadStats) -> list[Deployment]:
        """Draw deployments one by one without replacement, each by its share of the weight left."""
        remaining = _by_priority(group.deployments)
        ordered: list[Deployment] = []
        while remaining:
            total = sum(deployment.weight for deployment in remaining)
            point = self._rng.uniform(0, total)
            for index, deployment in enumerate(remaining):
                point -= deployment.weight
                if point <= 0 or index == len(remaining) - 1:
                    ordered.append(remaining.pop(index))
                    break
        return ordered


STRATEGIES: dict[str, RoutingStrategy] = {
    "priority": PriorityStrategy(),
    "lowest_cost": LowestCostStrategy(),
    "lowest_latency": LowestLatencyStrategy(),
    "least_busy": LeastBusyStrategy(),
    "weighted": WeightedStrategy(),
}
"""Strategy by the name a model group gives in the catalog."""

if set(STRATEGIES) != set(CATALOG_STRATEGIES):
    raise RuntimeError("routing strategies and the catalog's STRATEGIES list disagree")


class RoutedStream:
    """A response stream bound to the deployment that started it.

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
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.deployment = deployment
        self.attempts = attempts
        """Every attempt, the one streaming now last."""
        self._buffered = buffered
        self._chunks = chunks
        self._health = health
        self._started = time.perf_counter()
        self._on_end = on_end

    def __aiter__(self) -> RoutedStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._buffered:
            return self._buffered.pop(0)
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self._ended()
            raise
        except ProviderError as error:
            self._ended()
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
        self._ended()
        closer = getattr(self._chunks, "aclose", None)
        if closer is not None:
            await closer()

    def _ended(self) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()

    async def __aenter__(self) -> RoutedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@dataclass
class _Run:
    """The state of one request's walk over the deployments."""

    group: ModelGroup
    deadline: float
    """Event-loop time by which a response (a stream: its first content) must arrive."""
    attempts: list[Attempt] = field(default_factory=list)
    last_error: ProviderError | None = None
    held_back: dict[str, float] = field(default_factory=dict)
    """Seconds until each held-back deployment is free again, from the latest round."""


class Router:
    """Serve a request from a model group, failing over between its deployments."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        health: HealthTracker | None = None,
        adapters: Callable[[str], ProviderAdapter] = adapter_for,
        strategies: Mapping[str, RoutingStrategy] | None = None,
        retry: RetryPolicy | None = None,
        stats: LoadStats | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._catalog = catalog
        self._health: HealthTracker = health if health is not None else InMemoryHealth()
        self._adapters = adapters
        self._strategies = dict(STRATEGIES if strategies is None else strategies)
        self.retry = retry or RetryPolicy()
        self.stats = stats or LoadStats()
        self._rng = rng or random.Random()
        self._sleep = sleep
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

    @property
    def health(self) -> HealthTracker:
        """The health tracker that decides which deployments a request skips."""
        return self._health

    def candidates(
        self, request: Mapping[str, Any], group: ModelGroup, preferences: RoutePreferences | None = None
    ) -> list[Deployment]:
        """Return the deployments that fit the preferences, in strategy order.

        Raises NoMatchingDeploymentError when the preferences rule out every deployment.
        """
        deployments = _matching(request, group, preferences or RoutePreferences())
        return self._strategies[group.strategy].order(replace(group, deployments=deployments), request, self.stats)

    async def complete(
        self,
        request: dict[str, Any],
        group: ModelGroup,
        *,
        preferences: RoutePreferences | None = None,
        deadline_s: float | None = None,
    ) -> RoutedCompletion:
        """Return the first successful completion in strategy order.

        ``deadline_s`` (the caller's remaining time) shortens the policy's deadline.
        Raises ProviderError at once for a non-retryable error, with ``attempts`` set,
        AllDeploymentsFailedError when no deployment answered, and
        NoMatchingDeploymentError.
        """

        async def call(deployment: Deployment, run: _Run) -> RoutedCompletion:
            adapter = self._adapters(deployment.provider)
            started = time.perf_counter()
            self.stats.started(deployment.id)
            try:
                async with asyncio.timeout_at(run.deadline):
                    body = await adapter.complete(request, deployment)
            except TimeoutError:
                raise _deadline_error(deployment) from None
            finally:
                self.stats.ended(deployment.id)
            latency_ms = _elapsed_ms(started)
            self.stats.observe(deployment.id, latency_ms, stream=False)
            await self._succeeded(deployment, latency_ms, run)
            return RoutedCompletion(body=body, deployment=deployment, attempts=run.attempts)

        return await self._serve(request, group, preferences, deadline_s, call)

    async def stream(
        self,
        request: dict[str, Any],
        group: ModelGroup,
        *,
        preferences: RoutePreferences | None = None,
        deadline_s: float | None = None,
    ) -> RoutedStream:
        """Open a stream on the first deployment that delivers content, in strategy order.

        Returns once a chunk with content (or a finish reason or usage) arrived. Chunks
        before it that carry only the role are held back, so that a deployment that
        stalls or fails before its first token (an error event inside a 200 stream
        included) is still failed over. Raises like :meth:`complete`. Errors after this
        returns come from iterating the stream.
        """

        async def call(deployment: Deployment, run: _Run) -> RoutedStream:
            adapter = self._adapters(deployment.provider)
            started = time.perf_counter()
            self.stats.started(deployment.id)
            chunks = adapter.stream(request, deployment)
            buffered: list[dict[str, Any]] = []
            try:
                async with asyncio.timeout_at(run.deadline):
                    async for chunk in chunks:
                        buffered.append(chunk)
                        if _has_content(chunk):
                            break
            except TimeoutError:
                self.stats.ended(deployment.id)
                await _close(chunks)
                raise _deadline_error(deployment) from None
            except BaseException:
                self.stats.ended(deployment.id)
                await _close(chunks)
                raise

            latency_ms = _elapsed_ms(started)
            self.stats.observe(deployment.id, latency_ms, stream=True)
            await self._succeeded(deployment, latency_ms, run)
            return RoutedStream(
                deployment,
                run.attempts,
                buffered,
                chunks,
                self._health,
                on_end=lambda: self.stats.ended(deployment.id),
            )

        return await self._serve(request, group, preferences, deadline_s, call)

    async def _serve(
        self,
        request: dict[str, Any],
        group: ModelGroup,
        preferences: RoutePreferences | None,
        deadline_s: float | None,
        call: Callable[[Deployment, _Run], Awaitable[Any]],
    ) -> Any:
        loop = asyncio.get_running_loop()
        budget = self.retry.deadline_s if deadline_s is None else min(deadline_s, self.retry.deadline_s)
        run = _Run(group=group, deadline=loop.time() + budget)
        retry = 0

        while True:
            run.held_back = {}
            tried = False
            # The shortest Retry-After among this round's failures; 0 when one failed without it.
            round_retry_after = float("inf")
            for deployment in self.candidates(request, group, preferences):
                if len(run.attempts) >= self.retry.max_attempts or loop.time() >= run.deadline:
                    break
                wait = await self._health.acquire(deployment.id)
                if wait > 0:
                    run.held_back[deployment.id] = wait
                    continue
                tried = True
                started = time.perf_counter()
                try:
                    return await call(deployment, run)
                except ProviderError as error:
                    await self._failed(deployment, error, started, run)
                    round_retry_after = min(round_retry_after, error.retry_after_s or 0.0)

            if not tried or len(run.attempts) >= self.retry.max_attempts or retry + 1 >= self.retry.rounds:
                break
            retry += 1
            delay = self.retry.backoff(retry, self._rng)
            if loop.time() + delay >= run.deadline or round_retry_after > delay:
                # Past the deadline, or every deployment tried asked for a longer wait.
                break
            logger.info("every deployment of %s failed; retrying in %.0f ms", group.name, delay * 1000)
            await self._sleep(delay)

        raise self._exhausted(run)

    async def _succeeded(self, deployment: Deployment, latency_ms: float, run: _Run) -> None:
        run.attempts.append(Attempt(deployment.id, 200, OK_CODE, latency_ms))
        metrics.PROVIDER_ATTEMPTS.labels(deployment.id, deployment.provider, OK_CODE).inc()
        metrics.PROVIDER_LATENCY.labels(deployment.id, deployment.provider).observe(latency_ms / 1000.0)
        await self._health.record_success(deployment.id, latency_ms)

    async def _failed(self, deployment: Deployment, error: ProviderError, started: float, run: _Run) -> None:
        latency_ms = _elapsed_ms(started)
        run.attempts.append(Attempt(deployment.id, error.status, error.code, latency_ms))
        run.last_error = error
        metrics.PROVIDER_ATTEMPTS.labels(deployment.id, deployment.provider, error.code).inc()
        if not isinstance(error, _DeadlineError):
            # A caller's short deadline would otherwise open the breaker of a healthy deployment.
            await self._health.record_failure(deployment.id, error, latency_ms)
        if not error.retryable:
            error.attempts = tuple(run.attempts)
            raise error
        logger.warning(
            "deployment %s failed, trying the next one: code=%s status=%s latency_ms=%.0f",
            deployment.id,
            error.code,
            error.status,
            latency_ms,
        )

    def _exhausted(self, run: _Run) -> AllDeploymentsFailedError:
        last_error = run.last_error
        retry_after = last_error.retry_after_s if last_error is not None else None
        if run.held_back:
            soonest = min(run.held_back.values())
            retry_after = soonest if retry_after is None else min(retry_after, soonest)
        if last_error is not None:
            last_error.attempts = tuple(run.attempts)
        return AllDeploymentsFailedError(run.group.name, run.attempts, last_error, retry_after)


def _matching(request: Mapping[str, Any], group: ModelGroup, preferences: RoutePreferences) -> tuple[Deployment, ...]:
    deployments = tuple(group.deployments)
    if preferences.deployment is not None:
        deployments = tuple(d for d in deployments if d.id == preferences.deployment)
        if not deployments:
            raise NoMatchingDeploymentError(
                group.name,
                preferences,
                "deployment",
                f"model {group.name!r} has no deployment {preferences.deployment!r}; "
                f"its deployments are {sorted(d.id for d in group.deployments)}",
            )
    if preferences.provider is not None:
        deployments = tuple(d for d in deployments if d.provider == preferences.provider)
        if not deployments:
            raise NoMatchingDeploymentError(
                group.name,
                preferences,
                "provider",
                f"model {group.name!r} has no deployment of provider {preferences.provider!r}; "
                f"its providers are {sorted({d.provider for d in group.deployments})}",
            )
    if preferences.max_price_usd is not None:
        prompt, completion = estimate_tokens(request)
        costs = {d.id: estimated_cost_usd(d, prompt, completion) for d in deployments}
        affordable = tuple(d for d in deployments if costs[d.id] <= preferences.max_price_usd)
        if not affordable:
            cheapest = min(costs.values())
            raise NoMatchingDeploymentError(
                group.name,
                preferences,
                "max_price_usd",
                f"no deployment of model {group.name!r} serves this request for at most "
                f"{preferences.max_price_usd:g} USD: the cheapest estimate is {cheapest:.8f} USD "
                f"for {prompt} prompt and {completion} completion tokens; raise the maximum price "
                "or lower max_tokens",
            )
        deployments = affordable
    return deployments


class _DeadlineError(ProviderError):
    """The request's own deadline cut an attempt short, which tells little about the deployment."""


def _deadline_error(deployment: Deployment) -> ProviderError:
    return _DeadlineError(
        f"deployment {deployment.id} timed out: the request's deadline passed",
        code=CODE_TIMEOUT,
        retryable=True,
        deployment_id=deployment.id,
    )


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
