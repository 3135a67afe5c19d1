"""One request through the gateway: screen, admit and look up concurrently, then answer
from the cache or a provider, restore redacted values, store and settle.

Requests and answers are OpenAI-shaped dicts here; the servicers turn them into HTTP
bytes or typed messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aigateway.metering.v1 import metering_service_pb2 as metering_pb
from aigateway.type.v1 import chat_pb2
from google.protobuf import timestamp_pb2

from libs.errors import (
    DeadlineExceededError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from libs.openai_chat import validate
from libs.principal import Principal
from libs.redaction import StreamRestorer, restore
from libs.screening import iter_prompt_texts, screened_digest
from services.router import metrics
from services.router.catalog import Catalog, Deployment, ModelGroup, ModelNotFoundError, Price
from services.router.clients import CacheClient, MeteringClient, Screening, SecurityClient, principal_message
from services.router.convert import usage_message
from services.router.openai_request import (
    ROUTE_DEPLOYMENT_KEY,
    ROUTE_MAX_PRICE_KEY,
    ROUTE_PROVIDER_KEY,
    replace_prompt_texts,
    routing_preferences,
)
from services.router.providers.base import ProviderError
from services.router.routing import AllDeploymentsFailedError, NoMatchingDeploymentError, RoutePreferences, Router

logger = logging.getLogger(__name__)

# Output tokens assumed for the budget reservation when the request sets no maximum.
DEFAULT_OUTPUT_ESTIMATE = 512
# Characters per token for estimates made before the provider reports usage.
CHARS_PER_TOKEN = 4


@dataclass
class RequestContext:
    """Per-request facts that the servicer has before the pipeline runs."""

    request_id: str
    principal: Principal
    started: float = field(default_factory=time.perf_counter)
    start_time: float = field(default_factory=time.time)
    time_limit_s: float | None = None
    """Seconds the caller gave the request (its gRPC deadline), counted from ``started``."""

    def remaining_s(self) -> float | None:
        """Return the seconds left before the caller's deadline, or None without one."""
        if self.time_limit_s is None:
            return None
        return self.time_limit_s - (time.perf_counter() - self.started)


@dataclass
class Outcome:
    """The way a request was served, for response headers and typed responses."""

    deployment: str = ""
    provider: str = ""
    attempts: int = 0
    cost_usd: float = 0.0
    cache: str = "miss"
    """``miss``, ``exact``, ``semantic`` or ``bypass``."""

    def headers(self, request_id: str, *, with_cost: bool = True) -> tuple[tuple[str, str], ...]:
        """Return the response headers that describe this outcome."""
        headers = [("x-request-id", request_id), ("x-aigw-cache", self.cache), ("x-aigw-attempts", str(self.attempts))]
        if self.deployment:
            headers.append(("x-aigw-deployment", self.deployment))
        if with_cost:
            headers.append(("x-aigw-cost-usd", f"{self.cost_usd:.8f}"))
        return tuple(headers)


@dataclass
class Prepared:
    """A request that passed screening and admission."""

    context: RequestContext
    request: dict[str, Any]
    """The request sent to the provider: the client's request with redacted texts."""
    request_json: bytes
    """The client's request as sent, the cache key's source."""
    group: ModelGroup
    placeholders: dict[str, str]
    cached: bytes | None
    cache_kind: str
    preferences: RoutePreferences = field(default_factory=RoutePreferences)
    """Routing choices the request made in its ``metadata``."""
    digest_items: tuple[bytes, ...] = ()
    """The request's items in the cache's key digest, set there when the response is stored."""


_CLEAN_SCREENING = Screening(texts=None, placeholders={})
"""The screening of a prompt that the security service found clean at the edge."""


async def _gather(calls: list[Awaitable[Any]]) -> list[Any]:
    """Await ``calls`` concurrently and return their results, an exception in place of a result."""
    if not calls:
        return []
    if len(calls) == 1:
        try:
            return [await calls[0]]
        except Exception as exc:
            return [exc]
    return list(await asyncio.gather(*calls, return_exceptions=True))


def cost_usd(price: Price, usage: dict[str, Any] | None) -> float:
    """Return the cost of ``usage`` at ``price`` (USD per million tokens)."""
    if not usage:
        return 0.0
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = min(int(details.get("cached_tokens") or 0), prompt)
    return (
        (prompt - cached) * price.input_per_mtok
        + cached * price.cached_input_per_mtok
        + completion * price.output_per_mtok
    ) / 1_000_000


def provider_error_to_gateway(error: ProviderError | AllDeploymentsFailedError) -> GatewayError:
    """Map a routing failure to the error returned to the client."""
    if isinstance(error, ProviderError):
        return _single_provider_error(error)
    last = error.last_error
    attempts = str(len(error.attempts))
    if last is None:
        # Every deployment was cooling down after earlier failures; none was called.
        return UnavailableError(
            "every deployment of the model is cooling down after failures; retry later",
            reason="ALL_DEPLOYMENTS_COOLING_DOWN",
            retry_after_s=error.retry_after_s or 1.0,
            metadata={"attempts": attempts},
        )
    if last.code == "UPSTREAM_UNSUPPORTED_REQUEST":
        return InvalidRequestError(
            f"no deployment of the model supports this request: {last.message}",
            reason=last.code,
            openai_code="unsupported_request",
            metadata={"attempts": attempts},
        )
    if last.status == 429:
        return ResourceExhaustedError(
            "every deployment of the model is rate limited; retry later",
            reason="UPSTREAM_RATE_LIMITED",
            subject="provider",
            retry_after_s=last.retry_after_s or 1.0,
            metadata={"attempts": attempts},
        )
    if last.code == "UPSTREAM_TIMEOUT":
        return DeadlineExceededError(
            "every deployment of the model timed out", reason="UPSTREAM_TIMEOUT", metadata={"attempts": attempts}
        )
    return UnavailableError(
        "every deployment of the model failed; retry later",
        reason=last.code,
        retry_after_s=1.0,
        metadata={"attempts": attempts},
    )


def _no_matching_deployment(error: NoMatchingDeploymentError) -> InvalidRequestError:
    param = {
        "deployment": ROUTE_DEPLOYMENT_KEY,
        "provider": ROUTE_PROVIDER_KEY,
        "max_price_usd": ROUTE_MAX_PRICE_KEY,
    }[error.preference]
    return InvalidRequestError(
        error.message,
        reason="NO_MATCHING_DEPLOYMENT",
        param=f"metadata.{param}",
        openai_code="no_matching_deployment",
        metadata={"model": error.model},
    )


def _single_provider_error(error: ProviderError) -> GatewayError:
    if error.status is not None and 400 <= error.status < 500 and error.status not in (401, 403, 429):
        return InvalidRequestError(
            f"the provider rejected the request: {error.message}", reason=error.code, openai_code=error.code.lower()
        )
    return UnavailableError(f"the provider failed: {error.message}", reason=error.code, retry_after_s=1.0)


class Pipeline:
    """The router's request orchestration."""

    def __init__(
        self,
        catalog: Catalog,
        router: Router,
        security: SecurityClient,
        cache: CacheClient | None,
        metering: MeteringClient,
        *,
        semantic_cache: bool = True,
    ) -> None:
        self.catalog = catalog
        self.router = router
        self.security = security
        self.cache = cache
        self.metering = metering
        self.semantic_cache = semantic_cache

    @staticmethod
    def new_context(
        request_id: str | None, principal: Principal, time_limit_s: float | None = None
    ) -> RequestContext:
        """Return the context of a new request; ``time_limit_s`` is the caller's remaining time."""
        return RequestContext(
            request_id=request_id or uuid.uuid4().hex, principal=principal, time_limit_s=time_limit_s
        )

    def group(self, model: str) -> ModelGroup:
        """Return the catalog's model group or raise NotFoundError."""
        try:
            return self.catalog.get(model)
        except ModelNotFoundError:
            raise NotFoundError(
                f"the model `{model}` does not exist or you do not have access to it",
                reason="MODEL_NOT_FOUND",
                param="model",
                openai_code="model_not_found",
                metadata={"model": model},
            ) from None

    async def prepare(
        self, context: RequestContext, request: dict[str, Any], edge_screening: str | None = None
    ) -> Prepared:
        """Validate, then screen, admit and look the request up concurrently.

        ``edge_screening`` is the digest the security service set at the edge after it
        found nothing to block or redact. When it names this model, its attributes and
        these prompt texts, the ScreenPrompt call is skipped.
        """
        validate(request)
        group = self.group(request["model"])
        preferences, routed_request = routing_preferences(request)
        try:
            # Fails before screening and admission when the preferences rule out every deployment.
            self.router.candidates(routed_request, group, preferences)
        except NoMatchingDeploymentError as error:
            raise _no_matching_deployment(error) from None
        located = list(iter_prompt_texts(request))
        slots = [slot for slot, _ in located]
        texts = [text for _, text in located]
        roles = [str(request["messages"][index].get("role")) for (index, _, _), _ in located]
        request_json = orjson.dumps(request)

        admit_message = None
        if self.metering.admission_needed(context.principal.budget_usd is not None):
            admit_message = self._admit_message(context, request, group, texts)
        lookups = []
        digest_items: tuple[bytes, ...] = ()
        if self.cache is not None and (request.get("n") or 1) == 1:
            digest_items = self.cache.digest_items(context.principal.tenant, request, self.semantic_cache)
            if self.cache.must_miss(digest_items):
                metrics.LOOKUPS_SKIPPED.inc()
            else:
                lookups.append(self.cache.lookup(context.principal.tenant, request_json, self.semantic_cache))
        pairs = list(zip(roles, texts, strict=True))
        screen = None
        if edge_screening and edge_screening == screened_digest(group.name, group.attributes, pairs):
            metrics.SCREENINGS.labels("edge").inc()
        else:
            metrics.SCREENINGS.labels("router").inc()
            screen = self.security.screen(
                context.request_id, context.principal, group.name, dict(group.attributes), pairs
            )
        # Most requests have nothing to wait for here (screened at the edge, admission not
        # needed, a Lookup that must miss), and then no task is started.
        admit = self.metering.admit(admit_message) if admit_message is not None else None
        calls = [call for call in (screen, admit) if call is not None] + lookups
        results = iter(await _gather(calls))
        screening = next(results) if screen is not None else _CLEAN_SCREENING
        admission = next(results) if admit is not None else None
        for result in (screening, admission):
            if isinstance(result, BaseException):
                if not isinstance(admission, BaseException):
                    self.settle(context, group.name, None, None, None, "rejected", stream=False)
                raise result
        looked_up = next(results, None)
        cached = None if isinstance(looked_up, BaseException) else looked_up

        assert not isinstance(screening, BaseException)
        provider_request = routed_request
        if screening.texts is not None:
            provider_request = replace_prompt_texts(routed_request, slots, screening.texts)
        if cached is not None:
            cache_kind = cached.kind
        elif lookups or digest_items:
            cache_kind = "miss"
        else:
            cache_kind = "bypass"
        return Prepared(
            context=context,
            request=provider_request,
            request_json=request_json,
            group=group,
            placeholders=screening.placeholders,
            cached=cached.body if cached is not None else None,
            cache_kind=cache_kind,
            preferences=preferences,
            digest_items=digest_items,
        )

    def _admit_message(
        self, context: RequestContext, request: dict[str, Any], group: ModelGroup, texts: list[str]
    ) -> metering_pb.AdmitRequest:
        prompt_tokens = sum(len(text) for text in texts) // CHARS_PER_TOKEN + 4 * len(request["messages"])
        output_tokens = int(
            request.get("max_completion_tokens") or request.get("max_tokens") or DEFAULT_OUTPUT_ESTIMATE
        )
        price = max((d.price for d in group.deployments), key=lambda p: p.input_per_mtok + p.output_per_mtok)
        estimate = cost_usd(price, {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens})
        return metering_pb.AdmitRequest(
            request_id=context.request_id,
            principal=principal_message(context.principal),
            model=group.name,
            estimated_prompt_tokens=prompt_tokens,
            estimated_cost_usd=estimate,
        )

    async def complete(self, prepared: Prepared) -> tuple[dict[str, Any] | bytes, Outcome]:
        """Serve a non-streaming request: cached bytes, or the provider's completion."""
        context = prepared.context
        if prepared.cached is not None:
            outcome = Outcome(cache=prepared.cache_kind)
            metrics.CACHE_RESULTS.labels(prepared.group.name, prepared.cache_kind).inc()
            self.settle(context, prepared.group.name, None, None, None, "cache_hit", stream=False)
            return prepared.cached, outcome

        try:
            routed = await self.router.complete(
                prepared.request,
                prepared.group,
                preferences=prepared.preferences,
                deadline_s=context.remaining_s(),
            )
        except (ProviderError, AllDeploymentsFailedError) as exc:
            self.settle(context, prepared.group.name, None, None, None, "error", stream=False)
            raise provider_error_to_gateway(exc) from None
        body = routed.body
        if prepared.placeholders:
            _restore_completion(body, prepared.placeholders)
        usage = body.get("usage")
        cost = cost_usd(routed.deployment.price, usage)
        outcome = Outcome(
            deployment=routed.deployment.id,
            provider=routed.deployment.provider,
            attempts=len(routed.attempts),
            cost_usd=cost,
            cache=prepared.cache_kind,
        )
        metrics.CACHE_RESULTS.labels(prepared.group.name, prepared.cache_kind).inc()
        self.settle(context, prepared.group.name, routed.deployment, usage, cost, "ok", stream=False)
        if self.cache is not None and prepared.cache_kind != "bypass" and _complete_answer(body):
            self.cache.store(
                context.principal.tenant,
                prepared.request_json,
                orjson.dumps(body),
                self.semantic_cache,
                prepared.digest_items,
            )
        return body, outcome

    async def stream(self, prepared: Prepared, include_usage: bool) -> StreamRun:
        """Start a streaming response; the returned run yields OpenAI chunks."""
        if prepared.cached is not None:
            return StreamRun(self, prepared, None, include_usage)
        try:
            routed = await self.router.stream(
                prepared.request,
                prepared.group,
                preferences=prepared.preferences,
                deadline_s=prepared.context.remaining_s(),
            )
        except (ProviderError, AllDeploymentsFailedError) as exc:
            self.settle(prepared.context, prepared.group.name, None, None, None, "error", stream=True)
            raise provider_error_to_gateway(exc) from None
        return StreamRun(self, prepared, routed, include_usage)

    def settle(
        self,
        context: RequestContext,
        model: str,
        deployment: Deployment | None,
        usage: dict[str, Any] | None,
        cost: float | None,
        outcome: str,
        *,
        stream: bool,
    ) -> None:
        """Send the request's usage to metering in the background (durably)."""
        start = timestamp_pb2.Timestamp()
        start.FromNanoseconds(int(context.start_time * 1e9))
        message = metering_pb.SettleRequest(
            request_id=context.request_id,
            principal=principal_message(context.principal),
            model=model,
            deployment=deployment.id if deployment else "",
            provider=deployment.provider if deployment else "",
            usage=usage_message(usage) or chat_pb2.Usage(),
            cost_usd=cost or 0.0,
            outcome=outcome,
            start_time=start,
            latency_ms=(time.perf_counter() - context.started) * 1000,
            stream=stream,
        )
        self.metering.settle(message)
        if deployment is not None and usage:
            metrics.record_usage(model, deployment.provider, usage, cost or 0.0)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for queued cache stores to be sent."""
        if self.cache is not None:
            await self.cache.flush(timeout_s)


class StreamRun:
    """A streaming response in progress: restores placeholders, gathers the whole response for
    the cache, hides the usage chunk unless the client asked for it, and settles usage
    when it ends, however it ends."""

    def __init__(self, pipeline: Pipeline, prepared: Prepared, routed: Any, include_usage: bool) -> None:
        self.pipeline = pipeline
        self.prepared = prepared
        self.routed = routed
        self.include_usage = include_usage
        self.outcome = Outcome(cache=prepared.cache_kind if routed is None else prepared.cache_kind)
        if routed is not None:
            self.outcome.deployment = routed.deployment.id if routed.deployment else ""
            self.outcome.attempts = len(routed.attempts)
        self._restorers: dict[int, StreamRestorer] = {}
        self._assembly = _Assembly()

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """Yield the chunks to send. Raises GatewayError when the provider fails mid-stream."""
        if self.routed is None:
            async for chunk in self._cached_chunks():
                yield chunk
            return
        prepared = self.prepared
        state = "error"
        try:
            async for chunk in self.routed:
                self._assembly.add(chunk)
                if prepared.placeholders:
                    self._restore_chunk(chunk)
                if not self.include_usage and chunk.get("usage") is not None:
                    # The router always requests usage from providers, to meter it; the
                    # client gets the usage chunk only when it requested one.
                    if not chunk.get("choices"):
                        continue
                    chunk = {key: value for key, value in chunk.items() if key != "usage"}
                yield chunk
            state = "ok"
        except (ProviderError, AllDeploymentsFailedError) as exc:
            raise provider_error_to_gateway(exc) from None
        except (asyncio.CancelledError, GeneratorExit):
            state = "cancelled"
            raise
        finally:
            await self.routed.aclose()
            self._finish(state)

    async def _cached_chunks(self) -> AsyncIterator[dict[str, Any]]:
        assert self.prepared.cached is not None
        body = orjson.loads(self.prepared.cached)
        metrics.CACHE_RESULTS.labels(self.prepared.group.name, self.prepared.cache_kind).inc()
        self.pipeline.settle(
            self.prepared.context, self.prepared.group.name, None, None, None, "cache_hit", stream=True
        )
        for chunk in completion_to_chunks(body, self.include_usage):
            yield chunk

    def _restore_chunk(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            restorer = self._restorers.get(index)
            if restorer is None:
                restorer = self._restorers[index] = StreamRestorer(self.prepared.placeholders)
            delta = choice.get("delta") or {}
            text = delta.get("content")
            emitted = restorer.feed(text) if isinstance(text, str) else ""
            if choice.get("finish_reason"):
                emitted += restorer.flush()
            if isinstance(text, str) or emitted:
                delta["content"] = emitted
                choice["delta"] = delta
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                if isinstance(function.get("arguments"), str):
                    # NOTE: arguments are restored per fragment, so a placeholder split
                    # across two argument fragments reaches the client unrestored.
                    function["arguments"] = restore(function["arguments"], self.prepared.placeholders)

    def _finish(self, state: str) -> None:
        prepared = self.prepared
        routed = self.routed
        deployment = routed.deployment if routed is not None else None
        usage = self._assembly.usage
        if usage is None and deployment is not None:
            usage = self._assembly.estimated_usage(prepared.request)
        cost = cost_usd(deployment.price, usage) if deployment is not None else 0.0
        self.outcome.cost_usd = cost
        if deployment is not None:
            self.outcome.deployment = deployment.id
            self.outcome.provider = deployment.provider
            self.outcome.attempts = len(routed.attempts)
        metrics.CACHE_RESULTS.labels(prepared.group.name, prepared.cache_kind).inc()
        self.pipeline.settle(prepared.context, prepared.group.name, deployment, usage, cost, state, stream=True)
        cache = self.pipeline.cache
        if state == "ok" and cache is not None and prepared.cache_kind != "bypass":
            body = self._assembly.completion()
            if prepared.placeholders:
                _restore_completion(body, prepared.placeholders)
            if _complete_answer(body):
                cache.store(
                    prepared.context.principal.tenant,
                    prepared.request_json,
                    orjson.dumps(body),
                    self.pipeline.semantic_cache,
                    prepared.digest_items,
                )


class _Assembly:
    """Builds the complete chat.completion from stream chunks, for the cache and metering."""

    def __init__(self) -> None:
        self.meta: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        for key in ("id", "created", "model", "system_fingerprint"):
            if chunk.get(key) is not None:
                self.meta[key] = chunk[key]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            entry = self.choices.setdefault(index, {"content": [], "tool_calls": {}, "finish_reason": None})
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                entry["content"].append(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = entry["tool_calls"].setdefault(
                    call.get("index", 0), {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                if call.get("id"):
                    slot["id"] = call["id"]
                function = call.get("function") or {}
                if function.get("name"):
                    slot["function"]["name"] = function["name"]
                if isinstance(function.get("arguments"), str):
                    slot["function"]["arguments"] += function["arguments"]
            if choice.get("finish_reason"):
                entry["finish_reason"] = choice["finish_reason"]

    def completion(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self.choices):
            entry = self.choices[index]
            message: dict[str, Any] = {"role": "assistant", "content": "".join(entry["content"]) or None}
            if entry["tool_calls"]:
                message["tool_calls"] = [entry["tool_calls"][i] for i in sorted(entry["tool_calls"])]
            choices.append({"index": index, "message": message, "finish_reason": entry["finish_reason"]})
        body = {
            "id": self.meta.get("id", ""),
            "object": "chat.completion",
            "created": self.meta.get("created", 0),
            "model": self.meta.get("model", ""),
            "choices": choices,
        }
        if self.usage:
            body["usage"] = self.usage
        return body

    def estimated_usage(self, request: dict[str, Any]) -> dict[str, Any]:
        """Estimate usage from the text produced, for streams that ended without a usage report."""
        produced = sum(len("".join(entry["content"])) for entry in self.choices.values())
        produced += sum(
            len(call["function"]["arguments"])
            for entry in self.choices.values()
            for call in entry["tool_calls"].values()
        )
        prompt = sum(len(text) for _, text in iter_prompt_texts(request)) // CHARS_PER_TOKEN
        completion = (produced + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _complete_answer(body: dict[str, Any]) -> bool:
    choices = body.get("choices") or []
    return bool(choices) and all(choice.get("finish_reason") in ("stop", "tool_calls") for choice in choices)


def _restore_completion(body: dict[str, Any], placeholders: dict[str, str]) -> None:
    for choice in body.get("choices") or ():
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            message["content"] = restore(message["content"], placeholders)
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            if isinstance(function.get("arguments"), str):
                function["arguments"] = restore(function["arguments"], placeholders)


def completion_to_chunks(body: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """Turn a complete chat.completion into the chunks a stream of it would have sent."""
    base = {
        "id": body.get("id", ""),
        "object": "chat.completion.chunk",
        "created": body.get("created", 0),
        "model": body.get("model", ""),
    }
    chunks: list[dict[str, Any]] = []
    for choice in body.get("choices") or ():
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        chunks.append({**base, "choices": [{"index": choice.get("index", 0), "delta": delta, "finish_reason": None}]})
        chunks.append(
            {
                **base,
                "choices": [
                    {"index": choice.get("index", 0), "delta": {}, "finish_reason": choice.get("finish_reason")}
                ],
            }
        )
    if include_usage and body.get("usage"):
        chunks.append({**base, "choices": [], "usage": body["usage"]})
    return chunks
