"""Adapter for OpenAI's Chat Completions API and the many servers that copy it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from services.router.catalog import Deployment
from services.router.providers.base import CODE_BAD_RESPONSE, CODE_STREAM_INTERRUPTED, ProviderError
from services.router.providers.transport import api_key, post_json, stream_error, stream_events

__all__ = ["OpenAICompatibleAdapter"]

logger = logging.getLogger(__name__)

_DONE = "[DONE]"


class OpenAICompatibleAdapter:
    """Send the client's request as it came, with the deployment's model and key.

    Fields the gateway does not model pass through unchanged. ``base_url`` is the API
    root that ends in ``/v1``, as the OpenAI SDK takes it.
    """

    async def complete(self, request: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        """Return the provider's ``chat.completion`` dict."""
        body = dict(request)
        body["model"] = deployment.upstream_model
        body.pop("stream", None)
        body.pop("stream_options", None)

        answer = await post_json(
            _url(deployment),
            _headers(deployment, stream=False),
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
        return answer

    async def stream(
        self, request: dict[str, Any], deployment: Deployment
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the provider's chunks; usage is always requested so the gateway can meter."""
        body = dict(request)
        body["model"] = deployment.upstream_model
        body["stream"] = True
        options = request.get("stream_options")
        body["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }

        finished = False
        events = stream_events(
            _url(deployment),
            _headers(deployment, stream=True),
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
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    finished = True
            yield chunk

        # Some compatible servers omit [DONE]; a stream that reached a finish reason is whole.
        if not finished:
            raise ProviderError(
                f"deployment {deployment.id} ended the stream before it finished",
                code=CODE_STREAM_INTERRUPTED,
                retryable=True,
                deployment_id=deployment.id,
            )
        logger.debug("deployment %s ended the stream without [DONE]", deployment.id)


def _url(deployment: Deployment) -> str:
    return deployment.base_url + "/chat/completions"


def _headers(deployment: Deployment, *, stream: bool) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
    }
    key = api_key(deployment)
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return headers
