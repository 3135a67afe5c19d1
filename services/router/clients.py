"""Calls from the router to the security, cache and metering services.

Each client owns one channel, puts a deadline on every call and turns failures into
GatewayError. Policy differs by dependency: security and metering fail closed (no
screening or budget check means no provider call), the cache fails open (a miss).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from aigateway.cache.v1 import cache_service_pb2 as cache_pb
from aigateway.cache.v1 import cache_service_pb2_grpc as cache_grpc
from aigateway.metering.v1 import metering_service_pb2 as metering_pb
from aigateway.metering.v1 import metering_service_pb2_grpc as metering_grpc
from aigateway.security.v1 import security_service_pb2 as security_pb
from aigateway.security.v1 import security_service_pb2_grpc as security_grpc
from aigateway.type.v1 import principal_pb2

from libs.cachekeys import exact_key, semantic_scope
from libs.errors import from_rpc_error
from libs.grpcserver import insecure_channel
from libs.keydigest import DIGEST_VERSION, KeyDigest, entry_items
from libs.logs import request_id_var
from libs.principal import Principal
from services.router.spool import SettlementSpool

logger = logging.getLogger(__name__)

T = TypeVar("T")


# Settlements per SettleBatch call and responses per StoreBatch call. The services take
# at most 1,000, and store batches are smaller because each response can be large.
SETTLE_BATCH_SIZE = 256
# Extra deadline per settlement of a SettleBatch call, on top of the client's timeout.
SETTLE_SECONDS_PER_ITEM = 0.01
STORE_BATCH_SIZE = 32

# Bytes of requests and responses per StoreBatch call, at most, unless one entry is larger.
STORE_CALL_BYTES = 8 * 1024 * 1024

# Maximum number of responses waiting for StoreBatch. Beyond it, responses are not
# cached, because the cache service is slow or down.
MAX_PENDING_STORES = 10_000

# Own stores are set again in every digest read for this long, because the cache may
# apply a queued store after the read it would have been in.
DIGEST_RECENT_S = 10.0
# Seconds between reads of the key digest from a cache service that does not serve one.
DIGEST_RETRY_S = 30.0

# How long the router relies on the metering service's report that it sets no rate
# limit. A limit configured later applies to keys without a budget after at most this.
LIMITS_TTL_S = 10.0

# A conservative screening rate for the deadline: measured near 2 MB/s on one core.
SCREEN_BYTES_PER_SECOND = 500_000


def _request_metadata() -> tuple[tuple[str, str], ...]:
    """Return the metadata that carries this request's id to the next service."""
    request_id = request_id_var.get()
    return (("x-request-id", request_id),) if request_id else ()


def principal_message(principal: Principal) -> principal_pb2.Principal:
    """Return the principal as its protobuf message."""
    message = principal_pb2.Principal(
        tenant=principal.tenant,
        key_id=principal.key_id,
        roles=principal.roles,
        allowed_models=principal.allowed_models,
    )
    if principal.budget_usd is not None:
        message.budget_usd = principal.budget_usd
    return message


@dataclass(frozen=True)
class Screening:
    """The outcome of screening a prompt that was allowed."""

    texts: list[str] | None
    """Redacted texts in request order, or None when nothing changed."""
    placeholders: dict[str, str]
    """Placeholder to original value, for restoring the response."""


class SecurityClient:
    """Prompt screening: policy, PII redaction, injection blocking."""

    def __init__(self, address: str, timeout_s: float = 2.0) -> None:
        self.channel = insecure_channel(address)
        self.stub = security_grpc.SecurityServiceStub(self.channel)
        self.timeout_s = timeout_s

    async def screen(
        self,
        request_id: str,
        principal: Principal,
        model: str,
        model_attributes: dict[str, str],
        texts: list[tuple[str, str]],
    ) -> Screening:
        """Screen the prompt's ``(role, text)`` pairs; raise PermissionDeniedError or
        InvalidRequestError when blocked."""
        message = security_pb.ScreenPromptRequest(
            request_id=request_id,
            principal=principal_message(principal),
            model=model,
            model_attributes=model_attributes,
            texts=[security_pb.PromptText(role=role, text=text) for role, text in texts],
        )
        try:
            response = await self.stub.ScreenPrompt(
                message, timeout=self._screen_timeout_s(texts), metadata=_request_metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "security") from None
        if not response.redacted:
            return Screening(texts=None, placeholders={})
        return Screening(texts=[item.text for item in response.texts], placeholders=dict(response.placeholders))

    def _screen_timeout_s(self, texts: list[tuple[str, str]]) -> float:
        # Screening is linear in the prompt's size (about a second for 2 MB on one core),
        # so large prompts get more time than the base deadline.
        size = sum(len(text) for _, text in texts)
        return self.timeout_s + size / SCREEN_BYTES_PER_SECOND

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()


class Batcher(Generic[T]):
    """Queue of items that one task sends in batches.

    The task waits ``linger_s`` after the first item of an idle queue, then sends whatever
    queued meanwhile. It starts at most one call per ``linger_s`` unless a full batch is
    waiting. A busy gateway thus sends many items per call rather than a stream of small
    calls, and a small call costs both services about as much CPU as a large one.
    """

    def __init__(self, send: Callable[[list[T]], Awaitable[None]], batch_size: int, linger_s: float = 0.0) -> None:
        """``send`` sends one batch and handles its own failures."""
        self.send = send
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.pending: list[T] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, item: T) -> None:
        """Queue ``item`` and start the sending task when it is not running."""
        self.pending.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send_pending())

    async def _send_pending(self) -> None:
        loop = asyncio.get_running_loop()
        if self.linger_s > 0 and len(self.pending) < self.batch_size:
            await asyncio.sleep(self.linger_s)
        while self.pending:
            started = loop.time()
            batch = self.pending[: self.batch_size]
            del self.pending[: self.batch_size]
            try:
                await self.send(batch)
            except Exception:
                # ``send`` handles the failures it expects; anything else is a bug to see.
                logger.exception("sending a batch failed", extra={"items": len(batch)})
            rest = started + self.linger_s - loop.time()
            if self.pending and len(self.pending) < self.batch_size and rest > 0:
                await asyncio.sleep(rest)

    async def flush(self, timeout_s: float) -> None:
        """Wait (bounded) until the queued items are sent."""
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task], timeout=timeout_s)


@dataclass(frozen=True)
class CacheAnswer:
    """A cached response."""

    body: bytes
    """The stored OpenAI chat.completion JSON."""
    kind: str
    """``exact`` or ``semantic``."""
    similarity: float


class CacheClient:
    """Exact and semantic cache lookups. Failures count as misses and log a warning.

    With ``digest_refresh_s`` above 0 the client reads the cache's key digest (a Bloom
    filter of the keys that may have an entry) that often, and ``must_miss`` returns True
    for a Lookup the pipeline can skip. The client sets its own stores in its copy at
    once, and the stores of other routers show after the next read. A digest older than
    three reads (at least 3 s) is not used, so while the cache cannot serve one, every
    request is looked up.
    """

    def __init__(
        self,
        address: str,
        timeout_s: float = 1.0,
        batch_size: int = STORE_BATCH_SIZE,
        linger_s: float = 0.0,
        digest_refresh_s: float = 0.0,
    ) -> None:
        self.channel = insecure_channel(address)
        self.stub = cache_grpc.CacheServiceStub(self.channel)
        self.timeout_s = timeout_s
        self.stores = Batcher(self._store_batch, batch_size, linger_s)
        self.dropped = 0
        self.digest_refresh_s = digest_refresh_s
        self.digest_max_age_s = max(3.0, 3 * digest_refresh_s)
        self.digest: KeyDigest | None = None
        self._digest_read_at = float("-inf")
        self._recent: deque[tuple[float, bytes]] = deque()
        self._digest_task: asyncio.Task[None] | None = None
        self._digest_problem: str | None = None

    def digest_items(self, tenant: str, request: dict[str, Any], allow_semantic: bool) -> tuple[bytes, ...]:
        """Return the key digest items of ``request``: its exact key and its semantic scope.

        The result is empty when the digest is off or the request has no key, so that the
        request is looked up.
        """
        if self.digest_refresh_s <= 0:
            return ()
        try:
            key = exact_key(tenant, request)
            scope = semantic_scope(request) if allow_semantic else None
        except (TypeError, ValueError):
            return ()
        return entry_items(tenant, request, key, scope.context_hash if scope is not None else None)

    def must_miss(self, items: tuple[bytes, ...]) -> bool:
        """Return whether a recent key digest lacks every item, so that a Lookup would miss."""
        if self.digest_refresh_s <= 0 or not items:
            return False
        if self._digest_task is None:
            self._digest_task = asyncio.get_running_loop().create_task(self._read_digests())
        digest = self.digest
        if digest is None or time.monotonic() - self._digest_read_at > self.digest_max_age_s:
            return False
        return not any(item in digest for item in items)

    async def _read_digests(self) -> None:
        while True:
            started = time.monotonic()
            problem = await self._read_digest(started)
            if problem != self._digest_problem:
                if problem is not None:
                    logger.warning(
                        "cache key digest unavailable; every request is looked up", extra={"reason": problem}
                    )
                elif self._digest_problem is not None:
                    logger.info("cache key digest available again")
                self._digest_problem = problem
            # A cache service without the digest may be upgraded later, so it is asked again
            # every DIGEST_RETRY_S.
            await asyncio.sleep(DIGEST_RETRY_S if problem == "UNIMPLEMENTED" else self.digest_refresh_s)

    async def _read_digest(self, started: float) -> str | None:
        """Read a new digest and use it; return a description of the failure, or None."""
        try:
            response = await self.stub.GetKeyDigest(cache_pb.GetKeyDigestRequest(), timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        if response.key_version != DIGEST_VERSION:
            return f"key version {response.key_version!r} is not this router's {DIGEST_VERSION!r}"
        try:
            digest = KeyDigest(response.bit_count, response.hash_count, response.bits)
        except ValueError as exc:
            return str(exc)
        self._prune_recent(started)
        for _, item in self._recent:
            digest.add(item)
        self.digest = digest
        # Stores queued after the call began are in _recent, not necessarily in the read.
        self._digest_read_at = started
        return None

    def _prune_recent(self, now: float) -> None:
        """Forget own stores older than DIGEST_RECENT_S before ``now``."""
        while self._recent and self._recent[0][0] < now - DIGEST_RECENT_S:
            self._recent.popleft()

    async def lookup(self, tenant: str, request_json: bytes, allow_semantic: bool) -> CacheAnswer | None:
        """Return the cached response, or None on a miss or when the cache is unavailable."""
        try:
            response = await self.stub.Lookup(
                cache_pb.LookupRequest(tenant=tenant, request_json=request_json, allow_semantic=allow_semantic),
                timeout=self.timeout_s,
                metadata=_request_metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            logger.warning("cache lookup failed; serving without cache", extra={"grpc_code": exc.code().name})
            return None
        if response.result == cache_pb.LOOKUP_RESULT_EXACT_HIT:
            return CacheAnswer(response.response_json, "exact", 1.0)
        if response.result == cache_pb.LOOKUP_RESULT_SEMANTIC_HIT:
            return CacheAnswer(response.response_json, "semantic", response.similarity)
        return None

    def store(
        self,
        tenant: str,
        request_json: bytes,
        response_json: bytes,
        allow_semantic: bool = True,
        digest_items: tuple[bytes, ...] = (),
    ) -> None:
        """Queue a complete response for the cache. A failed store is logged, not raised.

        ``digest_items`` (from ``digest_items``) are set in the key digest at once, so that
        a repeat of the request is looked up. While MAX_PENDING_STORES wait, new responses
        are dropped: the cache is an optimisation.
        """
        if len(self.stores.pending) >= MAX_PENDING_STORES:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.warning("cache store queue full; responses dropped", extra={"dropped": self.dropped})
            return
        if digest_items:
            now = time.monotonic()
            self._prune_recent(now)
            for item in digest_items:
                self._recent.append((now, item))
                if self.digest is not None:
                    self.digest.add(item)
        self.stores.add(
            cache_pb.StoreRequest(
                tenant=tenant, request_json=request_json, response_json=response_json, allow_semantic=allow_semantic
            )
        )

    async def _store_batch(self, batch: list[cache_pb.StoreRequest]) -> None:
        # Large responses go in calls of their own, so that no call nears the gRPC message limit.
        call: list[cache_pb.StoreRequest] = []
        size = 0
        for entry in batch:
            entry_size = len(entry.request_json) + len(entry.response_json)
            if call and size + entry_size > STORE_CALL_BYTES:
                await self._store_call(call)
                call, size = [], 0
            call.append(entry)
            size += entry_size
        if call:
            await self._store_call(call)

    async def _store_call(self, entries: list[cache_pb.StoreRequest]) -> None:
        try:
            response = await self.stub.StoreBatch(
                cache_pb.StoreBatchRequest(entries=entries), timeout=self.timeout_s * 5
            )
        except grpc.aio.AioRpcError as exc:
            logger.warning("cache store failed", extra={"grpc_code": exc.code().name, "entries": len(entries)})
            return
        failed = sum(1 for result in response.results if result.HasField("error"))
        if failed:
            logger.warning("cache store failed", extra={"entries": failed})

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until the queued responses are sent."""
        await self.stores.flush(timeout_s)

    async def close(self) -> None:
        """Send what is queued (bounded), then close the channel."""
        if self._digest_task is not None:
            self._digest_task.cancel()
        await self.flush()
        await self.channel.close()


class MeteringClient:
    """Admission (budgets, rate limits) and durable settlement of usage.

    Settlements are sent in batches (see Batcher). A batch that fails goes to an outbox
    that is retried with backoff in the background, so usage is not lost while the
    metering service is down for a while. With a ``spool``, each settlement is also
    written to disk until it is delivered, so that a restarted router sends what the
    stopped one could not (``recover``).
    """

    def __init__(
        self,
        address: str,
        timeout_s: float = 2.0,
        outbox_limit: int = 100_000,
        batch_size: int = SETTLE_BATCH_SIZE,
        linger_s: float = 0.0,
        spool: SettlementSpool | None = None,
    ) -> None:
        self.channel = insecure_channel(address)
        self.stub = metering_grpc.MeteringServiceStub(self.channel)
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.settlements = Batcher(self._send_settlements, batch_size, linger_s)
        self.outbox: deque[metering_pb.SettleRequest] = deque()
        self.outbox_limit = outbox_limit
        self.dropped = 0
        self._worker: asyncio.Task[None] | None = None
        self._limits_checked_at = -LIMITS_TTL_S
        self._limits_task: asyncio.Task[None] | None = None
        self._unlimited_until = 0.0
        self.spool = spool
        # Spool segment of each settlement in memory, by object identity: the queue and
        # the outbox hold the objects until they are delivered.
        self._segments: dict[int, int] = {}

    async def admit(self, message: metering_pb.AdmitRequest) -> None:
        """Admit the request or raise ResourceExhaustedError (or UnavailableError).

        A key without a budget is admitted here without a call while the metering service
        reported, within LIMITS_TTL_S, that it sets no rate limit: Admit could not refuse it.
        """
        if not self.admission_needed(message.principal.HasField("budget_usd")):
            return
        try:
            await self.stub.Admit(message, timeout=self.timeout_s, metadata=_request_metadata())
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "metering") from None

    def admission_needed(self, has_budget: bool) -> bool:
        """Return whether Admit could reject a request, given whether its key has a budget."""
        return has_budget or not self._unlimited()

    def _unlimited(self) -> bool:
        """Return whether the metering service sets no rate limit, as last reported."""
        now = time.monotonic()
        if now >= self._limits_checked_at + LIMITS_TTL_S and (self._limits_task is None or self._limits_task.done()):
            # Refreshed in the background. Until the first response, and after a failed
            # refresh, every request goes through Admit.
            self._limits_checked_at = now
            self._limits_task = asyncio.get_running_loop().create_task(self._refresh_limits())
        return self._unlimited_until > now

    async def _refresh_limits(self) -> None:
        try:
            limits = await self.stub.GetLimits(metering_pb.GetLimitsRequest(), timeout=self.timeout_s)
        except grpc.aio.AioRpcError:
            self._unlimited_until = 0.0
            return
        unlimited = limits.requests_per_minute == 0 and limits.tokens_per_minute == 0
        self._unlimited_until = time.monotonic() + LIMITS_TTL_S if unlimited else 0.0

    def recover(self) -> int:
        """Queue the settlements an earlier router left in the spool and return their count."""
        if self.spool is None:
            return 0
        recovered = self.spool.recover()
        for message, segment in recovered:
            self._segments[id(message)] = segment
            self._enqueue(message)
        return len(recovered)

    def settle(self, message: metering_pb.SettleRequest) -> None:
        """Send the settlement in the background; keep it in the outbox until it is written."""
        if self.spool is not None:
            segment = self.spool.append(message)
            if segment is not None:
                self._segments[id(message)] = segment
        self.settlements.add(message)

    def _delivered(self, batch: list[metering_pb.SettleRequest], unsent: list[metering_pb.SettleRequest]) -> None:
        """Release the spool records of the batch's settlements that metering now has."""
        if not self._segments:
            return
        unsent_ids = {id(message) for message in unsent}
        for message in batch:
            if id(message) not in unsent_ids:
                segment = self._segments.pop(id(message), None)
                if segment is not None and self.spool is not None:
                    self.spool.delivered(segment)

    async def _send_settlements(self, batch: list[metering_pb.SettleRequest]) -> None:
        unsent = await self._settle_batch(batch)
        self._delivered(batch, unsent)
        for message in unsent:
            self._enqueue(message)
        if unsent:
            logger.warning("settlements failed; queued for retry", extra={"outbox": len(self.outbox)})

    async def _settle_batch(self, batch: list[metering_pb.SettleRequest]) -> list[metering_pb.SettleRequest]:
        """Send one batch and return the settlements that must be retried (none on success)."""
        # The metering service updates budgets one settlement at a time after the insert.
        timeout_s = self.timeout_s + len(batch) * SETTLE_SECONDS_PER_ITEM
        try:
            response = await self.stub.SettleBatch(
                metering_pb.SettleBatchRequest(settlements=batch), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                # A metering service older than SettleBatch, during a rolling upgrade.
                return await self._settle_one_by_one(batch)
            logger.warning("settlement batch failed", extra={"grpc_code": exc.code().name, "settlements": len(batch)})
            return batch
        except Exception:
            logger.exception("settlement batch failed", extra={"settlements": len(batch)})
            return batch
        for message, result in zip(batch, response.results, strict=False):
            if result.HasField("error"):
                # Invalid settlements cannot succeed later; the metering service logged the field.
                logger.error(
                    "settlement rejected",
                    extra={"settlement_request_id": message.request_id, "grpc_code": result.error.code},
                )
        return []

    async def _settle_one_by_one(self, batch: list[metering_pb.SettleRequest]) -> list[metering_pb.SettleRequest]:
        for index, message in enumerate(batch):
            try:
                await self.stub.Settle(message, timeout=self.timeout_s)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    logger.error("settlement rejected", extra={"settlement_request_id": message.request_id})
                    continue
                # The ones before this settlement are written; retry from it on.
                logger.warning("settlement failed", extra={"grpc_code": exc.code().name})
                return batch[index:]
        return []

    def _enqueue(self, message: metering_pb.SettleRequest) -> None:
        if len(self.outbox) >= self.outbox_limit:
            oldest = self.outbox.popleft()
            self.dropped += 1
            # A spooled settlement stays on disk and is sent after the next start.
            spooled = self._segments.pop(id(oldest), None) is not None
            logger.error(
                "settlement outbox full; oldest settlement dropped from memory",
                extra={"dropped": self.dropped, "kept_in_spool": spooled},
            )
        self.outbox.append(message)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        delay = 0.2
        while self.outbox:
            batch = list(itertools.islice(self.outbox, self.batch_size))
            unsent = await self._settle_batch(batch)
            self._delivered(batch, unsent)
            # By identity: while the call was in flight, a full outbox may have dropped its head.
            batch_ids = {id(message) for message in batch}
            while self.outbox and id(self.outbox[0]) in batch_ids:
                self.outbox.popleft()
            if not unsent:
                delay = 0.2
                continue
            self.outbox.extendleft(reversed(unsent))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def close(self, flush_timeout_s: float = 5.0) -> None:
        """Wait for pending settlements (bounded), then close the channel."""
        started = time.monotonic()
        await self.settlements.flush(flush_timeout_s)
        if self._worker is not None and not self._worker.done():
            remaining_s = max(0.0, flush_timeout_s - (time.monotonic() - started))
            await asyncio.wait([self._worker], timeout=remaining_s)
        undelivered = len(self.outbox) + len(self.settlements.pending)
        if undelivered and self.spool is not None:
            logger.warning(
                "settlements not delivered at shutdown; the spool keeps them for the next start",
                extra={"count": undelivered, "spool": str(self.spool.directory)},
            )
        elif undelivered:
            logger.error(
                "settlements not delivered at shutdown and lost: set ROUTER_SPOOL_DIR to keep them",
                extra={"count": undelivered},
            )
        if self.spool is not None:
            self.spool.close()
        await self.channel.close()
