"""Adapter for Cohere's Chat API v2, translating from and to OpenAI's shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from services.router.catalog import Deployment
from services.router.providers.base import (
    CODE_BAD_RESPONSE,
    CODE_STREAM_INTERRUPTED,
    CODE_UNSUPPORTED_REQUEST,
    ProviderError,
)
from services.router.providers.transport import api_key, post_json, stream_error, stream_events
from services.router.translators.common import TranslationError
from services.router.translators.openai_cohere import (
    FAILED_FINISH_REASONS,
    CohereStreamTranslator,
    to_cohere_request,
    to_openai_completion,
)

__all__ = ["CohereAdapter"]


class CohereAdapter:
    """Call ``{base_url}/v2/chat``; ``base_url`` is the API root (``https://api.cohere.com``)."""

    async def complete(self, request: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        """Return the response as an OpenAI ``chat.completion`` dict."""
        body = _body(request, deployment)
        body.pop("stream", None)

        answer = await post_json(
            _url(deployment), _headers(deployment, stream=False), orjson.dumps(body), deployment, request
        )
        if not isinstance(answer.get("message"), dict):
            raise ProviderError(
                f"deployment {deployment.id} returned a chat response without a message",
                code=CODE_BAD_RESPONSE,
                status=200,
                retryable=True,
                deployment_id=deployment.id,
            )
        if answer.get("finish_reason") in FAILED_FINISH_REASONS:
            raise _failed(deployment, answer["finish_reason"])
        return to_openai_completion(answer, model=deployment.upstream_model)

    async def stream(self, request: dict[str, Any], deployment: Deployment) -> AsyncIterator[dict[str, Any]]:
        """Yield OpenAI chunks; the last one has empty ``choices`` and the usage."""
        body = _body(request, deployment)
        body["stream"] = True

        translator = CohereStreamTranslator(model=deployment.upstream_model)
        events = stream_events(
            _url(deployment), _headers(deployment, stream=True), orjson.dumps(body), deployment, request
        )
        async for event in events:
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise ProviderError(
                    f"deployment {deployment.id} sent a stream event that is not JSON",
                    code=CODE_BAD_RESPONSE,
                    retryable=True,
                    deployment_id=deployment.id,
                ) from None
            if not isinstance(data, dict):
                continue
            if data.get("type") is None and isinstance(data.get("message"), str):
                # An error inside the stream has Cohere's error shape: {"message": ...}.
                raise stream_error(deployment, data, request)
            for chunk in translator.translate(data):
                yield chunk
            if translator.failed_reason is not None:
                raise _failed(deployment, translator.failed_reason)
            if translator.finished:
                return

        raise ProviderError(
            f"deployment {deployment.id} ended the stream before message-end",
            code=CODE_STREAM_INTERRUPTED,
            retryable=True,
            deployment_id=deployment.id,
        )


def _body(request: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    try:
        return to_cohere_request(request, model=deployment.upstream_model)
    except TranslationError as error:
        # Retryable so that a deployment in another format can serve the request.
        raise ProviderError(
            f"deployment {deployment.id} cannot serve this request: {error}",
            code=CODE_UNSUPPORTED_REQUEST,
            retryable=True,
            deployment_id=deployment.id,
        ) from None


def _failed(deployment: Deployment, reason: str) -> ProviderError:
    return ProviderError(
        f"deployment {deployment.id} reported a failed generation (finish reason {reason})",
        code=CODE_BAD_RESPONSE,
        status=200,
        retryable=True,
        deployment_id=deployment.id,
        provider_type=reason,
    )


def _url(deployment: Deployment) -> str:
    return deployment.base_url + "/v2/chat"


def _headers(deployment: Deployment, *, stream: bool) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
    }
    key = api_key(deployment)
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return headers
