"""gRPC servicers of the router: the OpenAI-compatible HttpBody surface and the typed
chat API. Both hand the request to the same pipeline."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
from aigateway.chat.v1 import chat_service_pb2 as chat_pb
from aigateway.chat.v1 import chat_service_pb2_grpc as chat_grpc
from aigateway.router.v1 import router_service_pb2 as router_pb
from aigateway.router.v1 import router_service_pb2_grpc as router_grpc
from google.api import httpbody_pb2

from libs.errors import ERROR_BODY_METADATA, AuthenticationError, GatewayError, InternalError, InvalidRequestError
from libs.grpcserver import invocation_metadata
from libs.openai_chat import parse_body
from libs.principal import Principal
from libs.screening import SCREENED_HEADER
from services.router.convert import chunk_to_message, completion_to_message, params_to_request
from services.router.pipeline import Outcome, Pipeline, RequestContext, StreamRun
from services.router.translators.anthropic_openai import (
    AnthropicStreamWriter,
    anthropic_error_body,
    to_anthropic_message,
    to_openai_request,
)

logger = logging.getLogger(__name__)

JSON = "application/json"
SSE = "text/event-stream"
_CACHE_STATUS = {
    "miss": chat_pb.CACHE_STATUS_MISS,
    "exact": chat_pb.CACHE_STATUS_EXACT_HIT,
    "semantic": chat_pb.CACHE_STATUS_SEMANTIC_HIT,
    "bypass": chat_pb.CACHE_STATUS_BYPASS,
}


def _context(pipeline: Pipeline, context: grpc.aio.ServicerContext) -> RequestContext:
    metadata = invocation_metadata(context)
    principal = Principal.from_metadata(metadata)
    if principal is None:
        raise AuthenticationError(
            "missing credentials: send `Authorization: Bearer <API key>` through the gateway's edge",
            reason="MISSING_CREDENTIALS",
            openai_code="invalid_api_key",
        )
    request_id = next((value for key, value in metadata if key == "x-request-id"), None)
    return pipeline.new_context(str(request_id) if request_id else None, principal, context.time_remaining())


def _sse(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def _set_cost_trailer(context: grpc.aio.ServicerContext, run: StreamRun) -> None:
    # A stream's cost is known only at its end, after the headers went out. gRPC clients
    # read it from this trailer; HTTP/1.1 clients through the edge do not get trailers.
    context.set_trailing_metadata((("x-aigw-cost-usd", f"{run.outcome.cost_usd:.8f}"),))


async def _abort_anthropic(context: grpc.aio.ServicerContext, error: GatewayError) -> None:
    """End the call with the error, giving the edge Anthropic's error body to send."""
    status = error.to_status()
    await context.abort(
        error.grpc_code,
        error.message,
        trailing_metadata=(
            ("grpc-status-details-bin", status.SerializeToString()),
            (ERROR_BODY_METADATA, anthropic_error_body(error).decode("ascii")),
        ),
    )


class RouterServicer(router_grpc.RouterServiceServicer):
    """OpenAI-compatible REST surface: exact OpenAI bytes in and out."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def CreateOpenAIChatCompletion(  # noqa: N802 - name fixed by the proto
        self, request: httpbody_pb2.HttpBody, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        """Serve `POST /v1/chat/completions` with one JSON body or an SSE stream."""
        request_context = _context(self.pipeline, context)
        body = parse_body(request.data)

        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise InvalidRequestError(
                "invalid type for `stream`: expected a boolean",
                reason="INVALID_REQUEST",
                param="stream",
                openai_code="invalid_type",
            )
        edge_screening = next(
            (str(value) for key, value in invocation_metadata(context) if key == SCREENED_HEADER), None
        )
        prepared = await self.pipeline.prepare(request_context, body, edge_screening)

        if not stream:
            answer, outcome = await self.pipeline.complete(prepared)
            data = answer if isinstance(answer, bytes) else orjson.dumps(answer)
            await context.send_initial_metadata(outcome.headers(request_context.request_id))
            yield httpbody_pb2.HttpBody(content_type=JSON, data=data)
            return

        options = body.get("stream_options") or {}
        run = await self.pipeline.stream(prepared, include_usage=bool(options.get("include_usage")))
        await context.send_initial_metadata(run.outcome.headers(request_context.request_id, with_cost=False))
        first = True
        try:
            async for chunk in run.chunks():
                data = _sse(orjson.dumps(chunk))
                if first:
                    yield httpbody_pb2.HttpBody(content_type=SSE, data=data)
                    first = False
                else:
                    yield httpbody_pb2.HttpBody(data=data)
        except GatewayError as error:
            # Headers and maybe content have gone out: report the error in-band and end
            # without [DONE], so clients do not take a cut-off response for a complete one.
            logger.warning("stream failed after it started", extra={"reason": error.reason})
            yield httpbody_pb2.HttpBody(content_type=SSE, data=_sse(error.openai_body()))
            return
        _set_cost_trailer(context, run)
        yield httpbody_pb2.HttpBody(content_type=SSE if first else "", data=b"data: [DONE]\n\n")

    async def CreateAnthropicMessage(  # noqa: N802 - name fixed by the proto
        self, request: httpbody_pb2.HttpBody, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        """Serve Anthropic's `POST /v1/messages` with one JSON message or its SSE events."""
        try:
            request_context = _context(self.pipeline, context)
            body = parse_body(request.data)
            openai_request = to_openai_request(body)
            prepared = await self.pipeline.prepare(request_context, openai_request)
            if openai_request.get("stream"):
                run = await self.pipeline.stream(prepared, include_usage=True)
            else:
                answer, outcome = await self.pipeline.complete(prepared)
        except GatewayError as error:
            await _abort_anthropic(context, error)
            return
        except Exception:
            logger.exception("messages request failed")
            await _abort_anthropic(context, InternalError("internal error; see the gateway logs", reason="INTERNAL"))
            return

        model = str(body["model"])
        if not openai_request.get("stream"):
            completion = orjson.loads(answer) if isinstance(answer, bytes) else answer
            await context.send_initial_metadata(outcome.headers(request_context.request_id))
            message = to_anthropic_message(completion, model)
            yield httpbody_pb2.HttpBody(content_type=JSON, data=orjson.dumps(message))
            return

        await context.send_initial_metadata(run.outcome.headers(request_context.request_id, with_cost=False))
        writer = AnthropicStreamWriter(model)
        started = False
        try:
            async for chunk in run.chunks():
                data = b""
                if not started:
                    data = writer.start(chunk.get("id"))
                    started = True
                data += writer.feed(chunk)
                if data:
                    yield httpbody_pb2.HttpBody(content_type=SSE, data=data)
        except GatewayError as error:
            # Content may have gone out: report the error in-band, as Anthropic does, and
            # end without message_stop so clients do not take a cut-off response for a complete one.
            logger.warning("stream failed after it started", extra={"reason": error.reason})
            yield httpbody_pb2.HttpBody(content_type=SSE, data=writer.error(error))
            return
        closing = b"" if started else writer.start()
        _set_cost_trailer(context, run)
        yield httpbody_pb2.HttpBody(content_type=SSE, data=closing + writer.finish())

    async def ListOpenAIModels(  # noqa: N802 - name fixed by the proto
        self, request: router_pb.ListOpenAIModelsRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        """Serve `GET /v1/models` in OpenAI's list shape."""
        _context(self.pipeline, context)
        models: list[dict[str, Any]] = [
            {"id": group.name, "object": "model", "created": 0, "owned_by": group.owned_by}
            for group in sorted(self.pipeline.catalog.models(), key=lambda g: g.name)
        ]
        return httpbody_pb2.HttpBody(content_type=JSON, data=orjson.dumps({"object": "list", "data": models}))


def _gateway_info(request_id: str, outcome: Outcome) -> chat_pb.GatewayInfo:
    return chat_pb.GatewayInfo(
        request_id=request_id,
        deployment=outcome.deployment,
        provider=outcome.provider,
        attempts=outcome.attempts,
        cost_usd=outcome.cost_usd,
        cache=_CACHE_STATUS.get(outcome.cache, 0),
    )


class ChatServicer(chat_grpc.ChatServiceServicer):
    """Typed chat API for gRPC clients."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def CreateChatCompletion(  # noqa: N802 - name fixed by the proto
        self, request: chat_pb.CreateChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb.CreateChatCompletionResponse:
        """Create a completion and return it whole."""
        request_context = _context(self.pipeline, context)
        body = params_to_request(request.params)
        body.pop("stream", None)

        prepared = await self.pipeline.prepare(request_context, body)
        answer, outcome = await self.pipeline.complete(prepared)

        completion = orjson.loads(answer) if isinstance(answer, bytes) else answer
        await context.send_initial_metadata(outcome.headers(request_context.request_id))
        return chat_pb.CreateChatCompletionResponse(
            completion=completion_to_message(completion),
            gateway=_gateway_info(request_context.request_id, outcome),
        )

    async def StreamChatCompletion(  # noqa: N802 - name fixed by the proto
        self, request: chat_pb.StreamChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb.StreamChatCompletionResponse]:
        """Create a completion and stream it; the last message carries the gateway info."""
        request_context = _context(self.pipeline, context)
        body = params_to_request(request.params)
        body["stream"] = True

        prepared = await self.pipeline.prepare(request_context, body)
        include_usage = request.params.stream_options.include_usage
        run = await self.pipeline.stream(prepared, include_usage=include_usage)
        await context.send_initial_metadata(run.outcome.headers(request_context.request_id, with_cost=False))
        async for chunk in run.chunks():
            yield chat_pb.StreamChatCompletionResponse(chunk=chunk_to_message(chunk))
        yield chat_pb.StreamChatCompletionResponse(gateway=_gateway_info(request_context.request_id, run.outcome))

    async def ListModels(  # noqa: N802 - name fixed by the proto
        self, request: chat_pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb.ListModelsResponse:
        """List the catalog's models, a page at a time."""
        _context(self.pipeline, context)
        if request.page_size < 0 or request.page_size > 1000:
            raise InvalidRequestError(
                f"page_size is {request.page_size}; use 1 to 1000, or 0 for the default",
                reason="INVALID_PAGE_SIZE",
                param="page_size",
            )
        size = request.page_size or 100
        groups = sorted(self.pipeline.catalog.models(), key=lambda g: g.name)
        start = 0
        if request.page_token:
            start = next((i for i, g in enumerate(groups) if g.name > request.page_token), len(groups))
        page = groups[start : start + size]
        next_token = page[-1].name if start + size < len(groups) and page else ""
        return chat_pb.ListModelsResponse(
            models=[
                chat_pb.Model(id=g.name, owned_by=g.owned_by, providers=sorted({d.provider for d in g.deployments}))
                for g in page
            ],
            next_page_token=next_token,
        )
