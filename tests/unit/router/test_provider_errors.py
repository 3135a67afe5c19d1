"""Tests for provider error mapping, Retry-After parsing and message redaction."""

from __future__ import annotations

import email.utils
import time

import pytest

from services.router.catalog import Deployment, Price
from services.router.providers import adapter_for
from services.router.providers.anthropic_messages import AnthropicAdapter
from services.router.providers.base import (
    error_from_status,
    parse_retry_after,
    safe_provider_message,
)
from services.router.providers.openai_compatible import OpenAICompatibleAdapter

DEPLOYMENT = Deployment(
    id="m/primary",
    provider="openai",
    upstream_model="u",
    base_url="http://127.0.0.1:9/v1",
    api_key_env="TEST_PROVIDER_KEY",
    price=Price(1, 1, 1),
    timeout_s=5,
    priority=0,
    weight=1,
)
REQUEST = {"messages": [{"role": "user", "content": "My name is Jane Doe and my card is 4111"}]}


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "UPSTREAM_BAD_REQUEST", False),
        (401, "UPSTREAM_AUTH_FAILED", False),
        (403, "UPSTREAM_AUTH_FAILED", False),
        (404, "UPSTREAM_NOT_FOUND", False),
        (408, "UPSTREAM_UNAVAILABLE", True),
        (422, "UPSTREAM_BAD_REQUEST", False),
        (429, "UPSTREAM_RATE_LIMITED", True),
        (500, "UPSTREAM_UNAVAILABLE", True),
        (503, "UPSTREAM_UNAVAILABLE", True),
        (529, "UPSTREAM_UNAVAILABLE", True),
    ],
)
def test_status_mapping(status: int, code: str, retryable: bool) -> None:
    error = error_from_status(
        status,
        deployment=DEPLOYMENT,
        provider_message="Try later.",
        provider_type="some_error",
        request=REQUEST,
    )
    assert error.code == code
    assert error.status == status
    assert error.retryable is retryable
    assert error.deployment_id == "m/primary"


def test_status_error_keeps_safe_message() -> None:
    error = error_from_status(
        400,
        deployment=DEPLOYMENT,
        provider_message="max_tokens is too large",
        provider_type="invalid_request_error",
        request=REQUEST,
    )
    assert error.message == (
        "deployment m/primary returned HTTP 400 (invalid_request_error): max_tokens is too large"
    )


def test_status_error_drops_message_quoting_prompt() -> None:
    error = error_from_status(
        400,
        deployment=DEPLOYMENT,
        provider_message="Invalid content 'My name is Jane Doe and my card' in messages[0]",
        provider_type="invalid_request_error",
        request=REQUEST,
    )
    assert "Jane" not in error.message
    assert error.message == "deployment m/primary returned HTTP 400 (invalid_request_error)"


def test_auth_error_never_echoes_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PROVIDER_KEY", "sk-secret-value")
    error = error_from_status(
        401,
        deployment=DEPLOYMENT,
        provider_message="Incorrect API key provided: sk-secr***alue",
        provider_type="invalid_api_key",
        request=REQUEST,
    )
    assert "sk-" not in error.message
    assert error.code == "UPSTREAM_AUTH_FAILED"


def test_safe_message_rejects_key() -> None:
    assert safe_provider_message("bad key sk-secret-value", REQUEST, "sk-secret-value") is None


def test_safe_message_keeps_role_words() -> None:
    message = "messages: the last message must have role user, not assistant"
    assert safe_provider_message(message, REQUEST, None) == message


def test_safe_message_truncates_long_text() -> None:
    result = safe_provider_message("x " * 400, REQUEST, None)
    assert result is not None
    assert len(result) == 300


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert parse_retry_after({"retry-after": future}) == pytest.approx(30, abs=2)


def test_adapter_for_providers() -> None:
    assert isinstance(adapter_for("openai"), OpenAICompatibleAdapter)
    assert isinstance(adapter_for("anthropic"), AnthropicAdapter)
    with pytest.raises(ValueError, match="unknown provider 'palm'"):
        adapter_for("palm")
