"""Adapters for OpenAI's Chat Completions API, the many servers that copy it, Azure
OpenAI and Mistral."""

from __future__ import annotations

import logging
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
from services.router.translators.openai_mistral import (
    normalize_chunk,
    normalize_completion,
    to_mistral_request,
)

__all__ = ["AzureOpenAIAdapter", "MistralAdapter", "OpenAICompatibleAdapter"]

logger = logging.getLogger(__name__)

_DONE = "[DONE]"


class OpenAICompatibleAdapter:
    """Send the client's request as it came, with the deployment's model and key.

    Fields the gateway does not model pass through unchanged. ``base_url`` is the API
    root that ends in ``/v1``, as the OpenAI SDK takes it.
    """

    async def complete(self, request: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        """Return the provider's ``chat.completion`` dict."""
        body = self._body(request, deployment, stream=False)

        answer = await post_json(
            self._url(deployment),
            self._headers(deployment, stream=False),
            orjson.dumps(body),
            deployment,
            request,
        )
        if not isinstance(answer.get("choices"), list):
            raise ProviderError(
                f"deployment {deployment.id} returned a completion without choices",
                code=CODE_BAD_RESPONSE,
                status=200,
                retryable=True,
                deployment_id=deployment.id,
            )
        return self._completion(answer)

    async def stream(
        self, request: dict[str, Any], deployment: Deployment
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the provider's chunks; usage is always requested so the gateway can meter."""
        body = self._body(request, deployment, stream=True)

        finished = False
        events = stream_events(
            self._url(deployment),
            self._headers(deployment, stream=True),
            orjson.dumps(body),
            deployment,
            request,
        )
        async for event in events:
            if event.data == _DONE:
                return
            try:
                chunk = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise ProviderError(
                    f"deployment {deployment.id} sent a stream event that is not JSON",
                    code=CODE_BAD_RESPONSE,
                    retryable=True,
                    deployment_id=deployment.id,
                ) from None
            if not isinstance(chunk, dict):
                continue
            if "error" in chunk:
                raise stream_error(deployment, chunk["error"], request)
            for translated in self._chunks(chunk):
                for choice in translated.get("choices") or ():
                    if isinstance(choice, dict) and choice.get("finish_reason"):
                        finished = True
                yield translated

        # Some compatible servers omit [DONE]; a stream that reached a finish reason is whole.
        if not finished:
            raise ProviderError(
                f"deployment {deployment.id} ended the stream before it finished",
                code=CODE_STREAM_INTERRUPTED,
                retryable=True,
                deployment_id=deployment.id,
            )
        logger.debug("deployment %s ended the stream without [DONE]", deployment.id)

    def _body(
        self, request: dict[str, Any], deployment: Deployment, *, stream: bool
    ) -> dict[str, Any]:
        body = dict(request)
        body["model"] = deployment.upstream_model
        if stream:
            body["stream"] = True
            options = request.get("stream_options")
            body["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        if deployment.max_tokens_field is not None:
            _rename_limit(body, deployment.max_tokens_field)
        return body

    def _url(self, deployment: Deployment) -> str:
        return deployment.base_url + "/chat/completions"

    def _headers(self, deployment: Deployment, *, stream: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        key = api_key(deployment)
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _completion(self, answer: dict[str, Any]) -> dict[str, Any]:
        return answer

    def _chunks(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        return [chunk]


class AzureOpenAIAdapter(OpenAICompatibleAdapter):
    """Call an Azure OpenAI deployment.

    ``base_url`` is the resource endpoint (``https://NAME.openai.azure.com``) and
    ``upstream_model`` the Azure deployment name. The key goes in the ``api-key``
    header and ``api_version`` in the ``api-version`` query parameter.
    """

    def _url(self, deployment: Deployment) -> str:
        name = urllib.parse.quote(deployment.upstream_model, safe="")
        version = urllib.parse.quote(deployment.api_version or "", safe="")
        return (
            f"{deployment.base_url}/openai/deployments/{name}/chat/completions"
            f"?api-version={version}"
        )

    def _headers(self, deployment: Deployment, *, stream: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        key = api_key(deployment)
        if key is not None:
            headers["api-key"] = key
        return headers


class MistralAdapter(OpenAICompatibleAdapter):
    """Call Mistral's chat completions API; ``base_url`` ends in ``/v1``."""

    def _body(
        self, request: dict[str, Any], deployment: Deployment, *, stream: bool
    ) -> dict[str, Any]:
        try:
            return to_mistral_request(request, model=deployment.upstream_model, stream=stream)
        except TranslationError as error:
            # Retryable so that a deployment in another format may serve the request.
            raise ProviderError(
                f"deployment {deployment.id} cannot serve this request: {error}",
                code=CODE_UNSUPPORTED_REQUEST,
                retryable=True,
                deployment_id=deployment.id,
            ) from None

    def _completion(self, answer: dict[str, Any]) -> dict[str, Any]:
        return normalize_completion(answer)

    def _chunks(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        return normalize_chunk(chunk)


def _rename_limit(body: dict[str, Any], field: str) -> None:
    """Send the output limit under the one name the model accepts."""
    limit = body.pop("max_completion_tokens", None)
    legacy = body.pop("max_tokens", None)
    # max_completion_tokens is OpenAI's current name, so it wins when both are set.
    value = limit if limit is not None else legacy
    if value is not None:
        body[field] = value
