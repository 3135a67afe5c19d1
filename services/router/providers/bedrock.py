"""Adapter for the Amazon Bedrock Converse API, with SigV4 signing and event-stream decoding."""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

from services.router.catalog import Deployment
from services.router.providers.base import (
    CODE_BAD_RESPONSE,
    CODE_MISCONFIGURED,
    CODE_STREAM_INTERRUPTED,
    CODE_UNSUPPORTED_REQUEST,
    ProviderError,
)
from services.router.providers.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    EventStreamMessage,
)
from services.router.providers.transport import api_key, post_json, stream_bytes, stream_error
from services.router.translators.common import TranslationError
from services.router.translators.openai_bedrock import (
    BedrockStreamTranslator,
    to_converse_request,
    to_openai_completion,
)

__all__ = ["EVENT_STREAM_TYPE", "SIGNING_SERVICE", "BedrockAdapter"]

logger = logging.getLogger(__name__)

EVENT_STREAM_TYPE = "application/vnd.amazon.eventstream"
"""Content type of ``converse-stream`` responses."""
SIGNING_SERVICE = "bedrock"
"""Service name in the SigV4 credential scope of bedrock-runtime endpoints."""

# HTTP statuses that the Bedrock API reference gives for the exceptions a stream can carry.
_EXCEPTION_STATUSES = {
    "validationException": 400,
    "accessDeniedException": 403,
    "resourceNotFoundException": 404,
    "modelTimeoutException": 408,
    "modelStreamErrorException": 424,
    "throttlingException": 429,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}


class BedrockAdapter:
    """Call ``{base_url}/model/{modelId}/converse`` and ``/converse-stream``.

    ``base_url`` is the runtime endpoint (``https://bedrock-runtime.us-east-1.amazonaws.com``).
    Requests are signed with SigV4 from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
    AWS_SESSION_TOKEN (optional) in the deployment's ``region``, else AWS_REGION or
    AWS_DEFAULT_REGION. A deployment with ``api_key_env`` sends that Bedrock API key as
    a bearer token instead of signing.
    """

    async def complete(self, request: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        """Return the response as an OpenAI ``chat.completion`` dict."""
        payload = orjson.dumps(_body(request, deployment))
        url = _url(deployment, "converse")
        headers = _signed_headers(deployment, url, payload, accept="application/json")

        answer = await post_json(URL(url, encoded=True), headers, payload, deployment, request)
        if not isinstance((answer.get("output") or {}).get("message"), dict):
            raise ProviderError(
                f"deployment {deployment.id} returned a Converse response without output.message",
                code=CODE_BAD_RESPONSE,
                status=200,
                retryable=True,
                deployment_id=deployment.id,
            )
        return to_openai_completion(answer, model=deployment.upstream_model)

    async def stream(self, request: dict[str, Any], deployment: Deployment) -> AsyncIterator[dict[str, Any]]:
        """Yield OpenAI chunks; the last one has empty ``choices`` and the usage."""
        payload = orjson.dumps(_body(request, deployment))
        url = _url(deployment, "converse-stream")
        headers = _signed_headers(deployment, url, payload, accept=EVENT_STREAM_TYPE)

        translator = BedrockStreamTranslator(model=deployment.upstream_model)
        decoder = EventStreamDecoder()
        reads = stream_bytes(URL(url, encoded=True), headers, payload, deployment, request, EVENT_STREAM_TYPE)
        try:
            async for data in reads:
                try:
                    messages = decoder.feed(data)
                except EventStreamError as error:
                    raise ProviderError(
                        f"deployment {deployment.id} sent an invalid event-stream message ({error})",
                        code=CODE_BAD_RESPONSE,
                        retryable=True,
                        deployment_id=deployment.id,
                    ) from None
                if messages:
                    reads.mark_received()
                for message in messages:
                    for chunk in _translate(translator, message, deployment, request):
                        yield chunk
                    if translator.finished:
                        return
        finally:
            await reads.aclose()

        if not translator.stopped:
            raise ProviderError(
                f"deployment {deployment.id} ended the stream before messageStop",
                code=CODE_STREAM_INTERRUPTED,
                retryable=True,
                deployment_id=deployment.id,
            )
        # NOTE: Bedrock sends the metadata event with the usage after messageStop; a stream
        # without it is whole, but its usage is reported as zero.
        logger.debug("deployment %s ended the stream without a metadata event", deployment.id)
        yield translator.usage_chunk()


def _translate(
    translator: BedrockStreamTranslator,
    message: EventStreamMessage,
    deployment: Deployment,
    request: Mapping[str, Any],
) -> list[dict[str, Any]]:
    try:
        payload = orjson.loads(message.payload) if message.payload else {}
    except orjson.JSONDecodeError:
        raise ProviderError(
            f"deployment {deployment.id} sent a stream event that is not JSON",
            code=CODE_BAD_RESPONSE,
            retryable=True,
            deployment_id=deployment.id,
        ) from None
    if not isinstance(payload, dict):
        payload = {}
    if message.message_type in ("exception", "error"):
        kind = message.headers.get(":exception-type") or message.headers.get(":error-code")
        error = {"message": payload.get("message") or message.headers.get(":error-message"), "type": kind}
        status = _EXCEPTION_STATUSES.get(kind, 500) if isinstance(kind, str) else 500
        raise stream_error(deployment, error, request, status=status)
    return translator.translate(message.event_type, payload)


def _body(request: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    try:
        return to_converse_request(request)
    except TranslationError as error:
        # Retryable so that a deployment in another format can serve the request.
        raise ProviderError(
            f"deployment {deployment.id} cannot serve this request: {error}",
            code=CODE_UNSUPPORTED_REQUEST,
            retryable=True,
            deployment_id=deployment.id,
        ) from None


def _url(deployment: Deployment, operation: str) -> str:
    # Model ids and ARNs contain ":" and "/", which must be percent-encoded in the path.
    model = urllib.parse.quote(deployment.upstream_model, safe="")
    return f"{deployment.base_url}/model/{model}/{operation}"


def _signed_headers(deployment: Deployment, url: str, payload: bytes, *, accept: str) -> dict[str, str]:
    """Return the request headers with SigV4 authorization (or a Bedrock API key)."""
    headers = {"Content-Type": "application/json", "Accept": accept}
    if deployment.api_key_env is not None:
        headers["Authorization"] = f"Bearer {api_key(deployment)}"
        return headers

    access_key = os.environ.get("AWS_ACCESS_KEY_ID")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY")
    region = deployment.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    missing = [
        name
        for name, value in (
            ("AWS_ACCESS_KEY_ID", access_key),
            ("AWS_SECRET_ACCESS_KEY", secret_key),
            ("AWS_REGION (or the deployment's region)", region),
        )
        if not value
    ]
    if missing:
        raise ProviderError(
            f"deployment {deployment.id} cannot sign its request: {', '.join(missing)} not set",
            code=CODE_MISCONFIGURED,
            retryable=True,
            deployment_id=deployment.id,
        )

    credentials = Credentials(access_key, secret_key, os.environ.get("AWS_SESSION_TOKEN") or None)
    signed = AWSRequest(method="POST", url=url, data=payload, headers=headers)
    SigV4Auth(credentials, SIGNING_SERVICE, region).add_auth(signed)
    return dict(signed.headers.items())
