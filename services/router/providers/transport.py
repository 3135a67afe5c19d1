"""HTTP calls shared by the adapters: deadlines, error mapping and SSE reading."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from libs.sse import SSEEvent, SSEParser
from services.router.catalog import Deployment
from services.router.providers.base import (
    CODE_BAD_RESPONSE,
    CODE_CONNECTION_FAILED,
    CODE_MISCONFIGURED,
    CODE_STREAM_INTERRUPTED,
    CODE_TIMEOUT,
    ProviderError,
    error_from_status,
    safe_provider_message,
)
from services.router.upstream import get_session

__all__ = ["ByteStream", "api_key", "post_json", "stream_bytes", "stream_error", "stream_events"]

logger = logging.getLogger(__name__)

# After the last event a provider normally ends the body at once. Waiting this long for
# the end keeps the connection reusable without holding up the caller.
_DRAIN_TIMEOUT_S = 0.2
_MAX_ERROR_BODY_BYTES = 64 * 1024


@functools.lru_cache(maxsize=1024)
def _parsed_url(url: str) -> URL:
    return URL(url)


def _parsed(url: str | URL) -> URL:
    """Return ``url`` as a URL, parsed once per text: a deployment calls the same few URLs."""
    return _parsed_url(url) if isinstance(url, str) else url


def api_key(deployment: Deployment) -> str | None:
    """Read the deployment's key from the environment at call time.

    Raises ProviderError (retryable, so another deployment is tried) when the
    variable is named but not set.
    """
    if deployment.api_key_env is None:
        return None
    value = os.environ.get(deployment.api_key_env)
    if not value:
        raise ProviderError(
            f"deployment {deployment.id} has no API key: "
            f"environment variable {deployment.api_key_env} is not set",
            code=CODE_MISCONFIGURED,
            retryable=True,
            deployment_id=deployment.id,
        )
    return value


async def post_json(
    url: str | URL,
    headers: Mapping[str, str],
    payload: bytes,
    deployment: Deployment,
    request: Mapping[str, Any],
) -> dict[str, Any]:
    """POST ``payload`` and return the JSON object of the response, within the attempt timeout."""
    session = await get_session()
    try:
        async with asyncio.timeout(deployment.timeout_s):
            async with session.post(_parsed(url), data=payload, headers=headers) as response:
                status = response.status
                body = await response.read()
                response_headers = response.headers
    except TimeoutError:
        raise _timeout(deployment, "no response") from None
    except aiohttp.ClientError as error:
        raise _connection_failed(deployment, error) from None

    if status >= 400:
        raise _status_error(status, body, response_headers, deployment, request)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ProviderError(
            f"deployment {deployment.id} returned HTTP {status} "
            "with a body that is not a JSON object",
            code=CODE_BAD_RESPONSE,
            status=status,
            retryable=True,
            deployment_id=deployment.id,
        )
    return parsed


async def stream_events(
    url: str | URL,
    headers: Mapping[str, str],
    payload: bytes,
    deployment: Deployment,
    request: Mapping[str, Any],
) -> AsyncIterator[SSEEvent]:
    """POST ``payload`` and yield the server-sent events of the response.

    The first event must arrive within ``deployment.timeout_s`` of the call and each
    later read within ``deployment.idle_timeout_s``. A broken connection raises
    ProviderError with code UPSTREAM_STREAM_INTERRUPTED; the adapter decides whether
    an end of stream without its final event is an error.
    """
    parser = SSEParser()
    reads = stream_bytes(url, headers, payload, deployment, request, "text/event-stream")
    try:
        async for data in reads:
            events = parser.feed(data)
            if events:
                reads.mark_received()
            for event in events:
                yield event
    finally:
        # Closing here, not at garbage collection, returns the connection to the pool
        # as soon as the caller stops reading.
        await reads.aclose()


class ByteStream:
    """Async iterator over the body of a streamed POST, with the deadlines of :func:`stream_events`.

    Until :meth:`mark_received` is called, every read counts against the first-event
    deadline, so a provider that sends only keep-alive bytes still times out.
    """

    def __init__(
        self,
        url: str | URL,
        headers: Mapping[str, str],
        payload: bytes,
        deployment: Deployment,
        request: Mapping[str, Any],
        content_type: str,
    ) -> None:
        self._iterator = self._read(url, headers, payload, deployment, request, content_type)
        self._received = False

    def mark_received(self) -> None:
        """Switch from the first-event deadline to the idle timeout between reads."""
        self._received = True

    def __aiter__(self) -> ByteStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        """Close the response early and release its connection."""
        await self._iterator.aclose()

    async def _read(
        self,
        url: str | URL,
        headers: Mapping[str, str],
        payload: bytes,
        deployment: Deployment,
        request: Mapping[str, Any],
        content_type: str,
    ) -> AsyncGenerator[bytes, None]:
        session = await get_session()
        loop = asyncio.get_running_loop()
        first_deadline = loop.time() + deployment.timeout_s
        try:
            async with asyncio.timeout_at(first_deadline):
                response = await session.post(_parsed(url), data=payload, headers=headers)
        except TimeoutError:
            raise _timeout(deployment, "no response") from None
        except aiohttp.ClientError as error:
            raise _connection_failed(deployment, error) from None

        try:
            if response.status >= 400:
                try:
                    async with asyncio.timeout_at(first_deadline):
                        body = await response.content.read(_MAX_ERROR_BODY_BYTES)
                except (TimeoutError, aiohttp.ClientError):
                    body = b""
                raise _status_error(response.status, body, response.headers, deployment, request)
            if response.content_type != content_type:
                raise ProviderError(
                    f"deployment {deployment.id} responded to a stream request with "
                    f"{response.content_type or 'no content type'}, not {content_type}",
                    code=CODE_BAD_RESPONSE,
                    status=response.status,
                    retryable=True,
                    deployment_id=deployment.id,
                )

            while True:
                try:
                    if self._received:
                        async with asyncio.timeout(deployment.idle_timeout_s):
                            data = await response.content.readany()
                    else:
                        async with asyncio.timeout_at(first_deadline):
                            data = await response.content.readany()
                except TimeoutError:
                    what = "no next chunk" if self._received else "no first chunk"
                    raise _timeout(deployment, what) from None
                except (aiohttp.ClientError, ConnectionError) as error:
                    raise ProviderError(
                        f"deployment {deployment.id} broke off the stream ({type(error).__name__})",
                        code=CODE_STREAM_INTERRUPTED,
                        retryable=True,
                        deployment_id=deployment.id,
                    ) from None
                if not data:
                    return
                yield data
        finally:
            await _finish(response)


def stream_bytes(
    url: str | URL,
    headers: Mapping[str, str],
    payload: bytes,
    deployment: Deployment,
    request: Mapping[str, Any],
    content_type: str,
) -> ByteStream:
    """POST ``payload`` and iterate over the raw body of a ``content_type`` response.

    Status errors, timeouts and broken connections raise ProviderError as in
    :func:`stream_events`. The caller calls ``mark_received()`` once the first whole
    event has arrived.
    """
    return ByteStream(url, headers, payload, deployment, request, content_type)


async def _finish(response: aiohttp.ClientResponse) -> None:
    """Release the connection, reading the rest of a body that is about to end."""
    if not response.content.is_eof() and not response.closed:
        try:
            async with asyncio.timeout(_DRAIN_TIMEOUT_S):
                while await response.content.readany():
                    pass
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            pass
    # release() returns a fully read connection to the pool and closes any other.
    response.release()


def stream_error(
    deployment: Deployment, error: Any, request: Mapping[str, Any], status: int | None = None
) -> ProviderError:
    """Build the error for an error event that a provider sent inside a stream."""
    message: Any = None
    kind: Any = None
    if isinstance(error, Mapping):
        message = error.get("message")
        kind = error.get("type") or error.get("code")
    safe = safe_provider_message(message, request, api_key_or_none(deployment))
    text = f"deployment {deployment.id} sent an error in the stream"
    if isinstance(kind, str) and kind.isidentifier():
        text += f" ({kind})"
    if safe:
        text += f": {safe}"
    return ProviderError(
        text,
        code=CODE_STREAM_INTERRUPTED,
        status=status,
        retryable=True,
        deployment_id=deployment.id,
        provider_type=kind if isinstance(kind, str) else None,
    )


def api_key_or_none(deployment: Deployment) -> str | None:
    """Read the deployment's key, or None when it has none or it is not set."""
    return os.environ.get(deployment.api_key_env) if deployment.api_key_env else None


def _status_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    deployment: Deployment,
    request: Mapping[str, Any],
) -> ProviderError:
    message, kind = _parse_error_body(body)
    error = error_from_status(
        status,
        deployment=deployment,
        provider_message=message,
        provider_type=kind,
        request=request,
        headers=headers,
    )
    logger.debug("deployment %s error body: %r", deployment.id, body[:2048])
    return error


def _parse_error_body(body: bytes) -> tuple[str | None, str | None]:
    """Read the message and type of OpenAI's, Anthropic's and Google's error shapes, and a few others."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    error = parsed.get("error")
    if isinstance(error, dict):
        # Google puts a numeric "code" and a word in "status" (RESOURCE_EXHAUSTED).
        kinds = (error.get("type"), error.get("code"), error.get("status"))
        kind = next((value for value in kinds if isinstance(value, str)), None)
        return _string(error.get("message")), kind
    if isinstance(error, str):
        return error, None
    return _string(parsed.get("message") or parsed.get("detail")), None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _timeout(deployment: Deployment, what: str) -> ProviderError:
    return ProviderError(
        f"deployment {deployment.id} timed out: {what} within its timeout",
        code=CODE_TIMEOUT,
        retryable=True,
        deployment_id=deployment.id,
    )


def _connection_failed(deployment: Deployment, error: BaseException) -> ProviderError:
    # The caller gets only the exception type, and the exception text (which may contain
    # the URL) goes to the debug log.
    logger.debug("deployment %s connection failed: %r", deployment.id, error)
    return ProviderError(
        f"deployment {deployment.id} could not be reached ({type(error).__name__})",
        code=CODE_CONNECTION_FAILED,
        retryable=True,
        deployment_id=deployment.id,
    )
