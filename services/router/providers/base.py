"""The provider adapter contract and the error every adapter raises.

Exception tree::

    ProviderError                 any failed call to a provider, with a safe message
"""

from __future__ import annotations

import email.utils
import os
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Protocol

from services.router.catalog import Deployment

__all__ = [
    "CODE_AUTH_FAILED",
    "CODE_BAD_REQUEST",
    "CODE_BAD_RESPONSE",
    "CODE_CONNECTION_FAILED",
    "CODE_MISCONFIGURED",
    "CODE_NOT_FOUND",
    "CODE_RATE_LIMITED",
    "CODE_STREAM_INTERRUPTED",
    "CODE_TIMEOUT",
    "CODE_UNAVAILABLE",
    "CODE_UNSUPPORTED_REQUEST",
    "ProviderAdapter",
    "ProviderError",
    "error_from_status",
    "parse_retry_after",
    "safe_provider_message",
]

CODE_BAD_REQUEST = "UPSTREAM_BAD_REQUEST"
"""The provider rejected the request as invalid (400, 413, 422)."""
CODE_AUTH_FAILED = "UPSTREAM_AUTH_FAILED"
"""The provider rejected the gateway's key for this deployment (401, 403)."""
CODE_NOT_FOUND = "UPSTREAM_NOT_FOUND"
"""The provider does not know the upstream model or endpoint (404)."""
CODE_RATE_LIMITED = "UPSTREAM_RATE_LIMITED"
"""429 from the provider."""
CODE_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
"""5xx from the provider (Anthropic's 529 "overloaded" included), or 408 and 409."""
CODE_TIMEOUT = "UPSTREAM_TIMEOUT"
"""No response, or no next stream chunk, within the deployment's timeout."""
CODE_CONNECTION_FAILED = "UPSTREAM_CONNECTION_FAILED"
"""The connection could not be opened or broke before a response arrived."""
CODE_STREAM_INTERRUPTED = "UPSTREAM_STREAM_INTERRUPTED"
"""The stream broke off or the provider sent an error event in it."""
CODE_BAD_RESPONSE = "UPSTREAM_BAD_RESPONSE"
"""The provider returned 2xx with a body that is not the expected JSON."""
CODE_MISCONFIGURED = "UPSTREAM_MISCONFIGURED"
"""The deployment's API key variable is not set in the router's environment."""
CODE_UNSUPPORTED_REQUEST = "UPSTREAM_UNSUPPORTED_REQUEST"
"""The request uses a feature this deployment's wire format cannot express."""

# Same set that the official OpenAI SDK retries: timeouts, lock conflicts, 429 and 5xx.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})

_MAX_MESSAGE_CHARS = 300
_OVERLAP_WINDOW = 20
# Keys whose values are identifiers or enum words, not prompt text ("assistant", "object").
_STRUCTURAL_KEYS = frozenset({"role", "type", "name", "id", "tool_call_id", "detail", "format"})
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class ProviderError(Exception):
    """A call to a provider failed.

    ``message`` is safe to show a client: it never contains the provider key, and it
    contains the provider's own error message only when that message carries no text
    from the prompt.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
        deployment_id: str | None = None,
        provider_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        """Upstream HTTP status; None for timeouts, connection errors and local checks."""
        self.retryable = retryable
        """Whether another deployment may succeed with the same request."""
        self.retry_after_s = retry_after_s
        self.deployment_id = deployment_id
        self.provider_type = provider_type
        """The provider's error type or code, such as "rate_limit_error", when it sent one."""
        self.attempts: tuple[Any, ...] = ()
        """Set by the router: every attempt made for the request, this one included."""

    def __repr__(self) -> str:
        return (
            f"ProviderError(code={self.code!r}, status={self.status!r}, "
            f"retryable={self.retryable!r}, deployment_id={self.deployment_id!r})"
        )


class ProviderAdapter(Protocol):
    """Speaks one provider wire format; requests and results are OpenAI-shaped dicts."""

    async def complete(self, request: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        """Send a non-streaming request and return an OpenAI ``chat.completion`` dict."""
        ...

    def stream(
        self, request: dict[str, Any], deployment: Deployment
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield OpenAI ``chat.completion.chunk`` dicts; a last chunk carries the usage."""
        ...


def error_from_status(
    status: int,
    *,
    deployment: Deployment,
    provider_message: str | None,
    provider_type: str | None,
    request: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    """Build the error for an HTTP error status from a provider."""
    retry_after = parse_retry_after(headers) if headers is not None else None
    retryable = status in _RETRYABLE_STATUSES or status >= 500

    if status == 429:
        code = CODE_RATE_LIMITED
    elif status in (401, 403):
        code = CODE_AUTH_FAILED
    elif status == 404:
        code = CODE_NOT_FOUND
    elif retryable:
        code = CODE_UNAVAILABLE
    else:
        code = CODE_BAD_REQUEST

    kind = provider_type if provider_type and _IDENTIFIER.fullmatch(provider_type) else None
    summary = f"deployment {deployment.id} returned HTTP {status}"
    if kind:
        summary += f" ({kind})"
    if code == CODE_AUTH_FAILED:
        # Providers echo part of a rejected key in these messages, so none of it is kept.
        message = summary + ": the provider rejected the gateway's credentials"
    else:
        safe = safe_provider_message(provider_message, request, _api_key(deployment))
        message = f"{summary}: {safe}" if safe else summary

    return ProviderError(
        message,
        code=code,
        status=status,
        retryable=retryable,
        retry_after_s=retry_after,
        deployment_id=deployment.id,
        provider_type=kind,
    )


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Read a retry delay in seconds from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be seconds or an HTTP date. Returns None when absent or invalid.
    """
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            value = float(milliseconds) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value

    raw = headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - time.time()
    return max(seconds, 0.0)


def safe_provider_message(
    message: str | None, request: Mapping[str, Any], api_key: str | None
) -> str | None:
    """Return the provider's message when it is safe to show a client, else None.

    A message is dropped when it contains the key, when any prompt text of eight or more
    characters occurs in it, or when any 20-character stretch of it occurs in the
    prompt. Providers quote parts of invalid requests in their messages, and the
    gateway must not hand those back through logs or error reports.
    """
    if not message or not isinstance(message, str):
        return None
    text = " ".join(message.split())
    if not text:
        return None
    if api_key and api_key in text:
        return None

    prompt_texts = [part for part in _request_texts(request) if len(part) >= 8]
    if prompt_texts:
        joined = "\n".join(prompt_texts)
        if any(part in text for part in prompt_texts):
            return None
        flat_prompt = " ".join(joined.split())
        step = _OVERLAP_WINDOW // 2
        for start in range(0, max(len(text) - _OVERLAP_WINDOW, 0) + 1, step):
            if text[start : start + _OVERLAP_WINDOW] in flat_prompt:
                return None

    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[: _MAX_MESSAGE_CHARS - 1] + "…"
    return text


def _request_texts(request: Mapping[str, Any]) -> Iterator[str]:
    """Yield the free text in the request's messages and tool definitions."""
    stack: list[Any] = [request.get("messages"), request.get("tools"), request.get("prompt")]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(value for key, value in item.items() if key not in _STRUCTURAL_KEYS)
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _api_key(deployment: Deployment) -> str | None:
    return os.environ.get(deployment.api_key_env) if deployment.api_key_env else None
