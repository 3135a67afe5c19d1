"""Calls from the router to the security, cache and metering services.

Each client owns one channel, puts a deadline on every call and turns failures into
GatewayError. Policy differs by dependency: security and metering fail closed (no
screening or budget check means no provider call), the cache fails open (a miss).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import grpc
from aigateway.cache.v1 import cache_service_pb2 as cache_pb
from aigateway.cache.v1 import cache_service_pb2_grpc as cache_grpc
from aigateway.metering.v1 import metering_service_pb2 as metering_pb
from aigateway.metering.v1 import metering_service_pb2_grpc as metering_grpc
from aigateway.security.v1 import security_service_pb2 as security_pb
from aigateway.security.v1 import security_service_pb2_grpc as security_grpc
from aigateway.type.v1 import principal_pb2

from libs.errors import GatewayError, from_rpc_error
from libs.grpcserver import insecure_channel
from libs.logs import request_id_var
from libs.principal import Principal

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class CacheAnswer:
    """A cached response."""

    body: bytes
    """The stored OpenAI chat.completion JSON."""
    kind: str
    """``exact`` or ``semantic``."""
    similarity: float


class CacheClient:
    """Exact and semantic cache lookups. Failures count as misses and log a warning."""

    def __init__(self, address: str, timeout_s: float = 1.0) -> None:
        self.channel = insecure_channel(address)
        self.stub = cache_grpc.CacheServiceStub(self.channel)
        self.timeout_s = timeout_s

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

    async def store(self, tenant: str, request_json: bytes, response_json: bytes, allow_semantic: bool = True) -> None:
        """Store a complete response; failures are logged, never raised."""
        try:
            await self.stub.Store(
                cache_pb.StoreRequest(
                    tenant=tenant, request_json=request_json, response_json=response_json, allow_semantic=allow_semantic
                ),
                timeout=self.timeout_s * 5,
                metadata=_request_metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            logger.warning("cache store failed", extra={"grpc_code": exc.code().name})

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()


class MeteringClient:
    """Admission (budgets, rate limits) and durable settlement of usage.

    Settlements go through an outbox: a failed Settle is retried with backoff in the
    background, so usage is not lost while the metering service is down for a while.
    """

    def __init__(self, address: str, timeout_s: float = 2.0, outbox_limit: int = 100_000) -> None:
        self.channel = insecure_channel(address)
        self.stub = metering_grpc.MeteringServiceStub(self.channel)
        self.timeout_s = timeout_s
        self.outbox: deque[metering_pb.SettleRequest] = deque()
        self.outbox_limit = outbox_limit
        self.dropped = 0
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def admit(self, message: metering_pb.AdmitRequest) -> None:
        """Admit the request or raise ResourceExhaustedError (or UnavailableError)."""
        try:
            await self.stub.Admit(message, timeout=self.timeout_s, metadata=_request_metadata())
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "metering") from None

    def settle(self, message: metering_pb.SettleRequest) -> None:
        """Send the settlement in the background; keep it in the outbox until it is written."""
        task = asyncio.get_running_loop().create_task(self._settle_once(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_once(self, message: metering_pb.SettleRequest) -> None:
        try:
            await self.stub.Settle(message, timeout=self.timeout_s, metadata=_request_metadata())
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc, "metering")
            if isinstance(error, GatewayError) and error.grpc_code == grpc.StatusCode.INVALID_ARGUMENT:
                logger.error("settlement rejected", extra={"reason": error.reason})
                return
            self._enqueue(message)
            logger.warning(
                "settlement failed; queued for retry", extra={"grpc_code": exc.code().name, "outbox": len(self.outbox)}
            )

    def _enqueue(self, message: metering_pb.SettleRequest) -> None:
        if len(self.outbox) >= self.outbox_limit:
            self.outbox.popleft()
            self.dropped += 1
            logger.error("settlement outbox full; oldest settlement dropped", extra={"dropped": self.dropped})
        self.outbox.append(message)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        delay = 0.2
        while self.outbox:
            message = self.outbox[0]
            try:
                await self.stub.Settle(message, timeout=self.timeout_s)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.outbox.popleft()
            delay = 0.2

    async def close(self, flush_timeout_s: float = 5.0) -> None:
        """Wait for pending settlements (bounded), then close the channel."""
        pending = [*self._tasks] + ([self._worker] if self._worker else [])
        if pending:
            await asyncio.wait(pending, timeout=flush_timeout_s)
        if self.outbox:
            # NOTE: settlements still queued here are lost with the process; a disk spool
            # would keep them across restarts.
            logger.error("settlements not delivered at shutdown", extra={"count": len(self.outbox)})
        await self.channel.close()
