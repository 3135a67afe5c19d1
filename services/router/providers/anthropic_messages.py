"""Adapter for Anthropic's Messages API, translating from and to OpenAI's shapes."""

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
from services.router.translators.openai_anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicStreamTranslator,
    TranslationError,
    anthropic_error_status,
    to_anthropic_request,
    to_openai_completion,
)

__all__ = ["ANTHROPIC_VERSION", "AnthropicAdapter"]

ANTHROPIC_VERSION = "2023-06-01"
"""Value of the ``anthropic-version`` header; the current version of the Messages API."""


class AnthropicAdapter:
    """Call ``{base_url}/v1/messages``; ``base_url`` is the API root without ``/v1``,
    as Anthropic's SDK takes it."""

    def __init__(self, *, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self._default_max_tokens = default_max_tokens

    async def complete(self, request: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        """Return the response as an OpenAI ``chat.completion`` dict."""
        body = self._body(request, deployment)
        body.pop("stream", None)

        answer = await post_json(
            _url(deployment),
            _headers(deployment, stream=False),
            orjson.dumps(body),
            deployment,
            request,
        )
        if not isinstance(answer.get("content"), list):
            raise ProviderError(
                f"deployment {deployment.id} returned a message without content",
                code=CODE_BAD_RESPONSE,
                status=200,
                retryable=True,
                deployment_id=deployment.id,
            )
        return to_openai_completion(answer)

    async def stream(
        self, request: dict[str, Any], deployment: Deployment
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield OpenAI chunks; the last one has empty ``choices`` and the usage."""
        body = self._body(request, deployment)
        body["stream"] = True

        translator = AnthropicStreamTranslator()
        events = stream_events(
            _url(deployment),
            _headers(deployment, stream=True),
            orjson.dumps(body),
            deployment,
            request,
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
            if data.get("type") == "error" or event.event == "error":
                error = data.get("error") or {}
                status = anthropic_error_status(
                    error.get("type") if isinstance(error, dict) else None
                )
                raise stream_error(deployment, error, request, status=status)
            for chunk in translator.translate(data):
                yield chunk
            if translator.finished:
                return

        raise ProviderError(
            f"deployment {deployment.id} ended the stream before message_stop",
            code=CODE_STREAM_INTERRUPTED,
            retryable=True,
            deployment_id=deployment.id,
        )

    def _body(self, request: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        try:
            return to_anthropic_request(
                request,
                model=deployment.upstream_model,
                default_max_tokens=self._default_max_tokens,
            )
        except TranslationError as error:
            # Retryable so that an OpenAI-format deployment of the same model can serve it.
            raise ProviderError(
                f"deployment {deployment.id} cannot serve this request: {error}",
                code=CODE_UNSUPPORTED_REQUEST,
                retryable=True,
                deployment_id=deployment.id,
            ) from None


def _url(deployment: Deployment) -> str:
    return deployment.base_url + "/v1/messages"


def _headers(deployment: Deployment, *, stream: bool) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "anthropic-version": ANTHROPIC_VERSION,
    }
    key = api_key(deployment)
    if key is not None:
        headers["x-api-key"] = key
    return headers
