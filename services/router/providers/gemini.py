"""Adapter for the Gemini API's ``generateContent``, translating from and to OpenAI's shapes."""

from __future__ import annotations

import urllib.parse
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
from services.router.translators.openai_gemini import (
    GeminiStreamTranslator,
    to_gemini_request,
    to_openai_completion,
)

__all__ = ["DEFAULT_API_VERSION", "GeminiAdapter"]

DEFAULT_API_VERSION = "v1beta"
"""API version in the path when the deployment sets none; tools and JSON schemas need it."""


class GeminiAdapter:
    """Call ``{base_url}/{api_version}/models/{model}:generateContent``.

    ``base_url`` is the API root (``https://generativelanguage.googleapis.com``) and the
    key goes in the ``x-goog-api-key`` header.
    """

    async def complete(self, request: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        """Return the response as an OpenAI ``chat.completion`` dict."""
        body = _body(request, deployment)
        answer = await post_json(
            _url(deployment, "generateContent"),
            _headers(deployment, stream=False),
            orjson.dumps(body),
            deployment,
            request,
        )
        if not isinstance(answer.get("candidates"), list) and "promptFeedback" not in answer:
            raise ProviderError(
                f"deployment {deployment.id} returned a response without candidates",
                code=CODE_BAD_RESPONSE,
                status=200,
                retryable=True,
                deployment_id=deployment.id,
            )
        return to_openai_completion(answer, model=deployment.upstream_model)

    async def stream(self, request: dict[str, Any], deployment: Deployment) -> AsyncIterator[dict[str, Any]]:
        """Yield OpenAI chunks; the last one has empty ``choices`` and the usage."""
        body = _body(request, deployment)
        translator = GeminiStreamTranslator(model=deployment.upstream_model)
        events = stream_events(
            _url(deployment, "streamGenerateContent") + "?alt=sse",
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
            if "error" in data:
                error = data["error"] if isinstance(data["error"], dict) else {}
                status = error.get("code") if isinstance(error.get("code"), int) else None
                raise stream_error(deployment, _error_fields(error), request, status=status)
            for chunk in translator.translate(data):
                yield chunk

        # Gemini ends the body after the event with the last finishReason; there is no
        # closing event, so a body that ends before one is a broken stream.
        if not translator.finished:
            raise ProviderError(
                f"deployment {deployment.id} ended the stream before a finish reason",
                code=CODE_STREAM_INTERRUPTED,
                retryable=True,
                deployment_id=deployment.id,
            )
        yield translator.finish()


def _body(request: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    try:
        return to_gemini_request(request)
    except TranslationError as error:
        # Retryable so that a deployment in another format can serve the request.
        raise ProviderError(
            f"deployment {deployment.id} cannot serve this request: {error}",
            code=CODE_UNSUPPORTED_REQUEST,
            retryable=True,
            deployment_id=deployment.id,
        ) from None


def _error_fields(error: dict[str, Any]) -> dict[str, Any]:
    # Gemini's error has a numeric code and a status word such as RESOURCE_EXHAUSTED.
    return {"message": error.get("message"), "type": error.get("status")}


def _url(deployment: Deployment, method: str) -> str:
    model = deployment.upstream_model
    # The model may be given as "gemini-2.5-flash", "models/gemini-2.5-flash" or a
    # tuned model's "tunedModels/NAME".
    if "/" not in model:
        model = "models/" + model
    path = urllib.parse.quote(model, safe="/")
    version = deployment.api_version or DEFAULT_API_VERSION
    return f"{deployment.base_url}/{version}/{path}:{method}"


def _headers(deployment: Deployment, *, stream: bool) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
    }
    key = api_key(deployment)
    if key is not None:
        headers["x-goog-api-key"] = key
    return headers
