"""Routing settings read from ROUTER_* variables."""

from __future__ import annotations

import pytest

from libs.config import ConfigError, Env
from services.router.config import RouterConfig
from services.router.health import BreakerSettings
from services.router.routing import RetryPolicy


def load(**variables: str) -> RouterConfig:
    return RouterConfig.from_env(Env("ROUTER", {f"ROUTER_{key}": value for key, value in variables.items()}))


def test_defaults_retry_twice_in_process() -> None:
    config = load()
    assert config.redis_url is None
    assert config.health_key_prefix == "aigw:router:health:"
    assert config.breaker == BreakerSettings()
    assert config.retry == RetryPolicy(rounds=2)


def test_variables_set_breaker_and_retries() -> None:
    config = load(
        REDIS_URL="redis://127.0.0.1:6379/3",
        BREAKER_FAILURES="2",
        BREAKER_FAILURE_RATE="0.25",
        BREAKER_COOLDOWN_S="1.5",
        BREAKER_PROBES="3",
        MAX_ATTEMPTS="5",
        RETRY_ROUNDS="3",
        BACKOFF_BASE_S="0.1",
        DEADLINE_S="30",
    )
    assert config.redis_url == "redis://127.0.0.1:6379/3"
    assert config.breaker.failure_threshold == 2
    assert config.breaker.failure_rate == 0.25
    assert config.breaker.cooldown_s == 1.5
    assert config.breaker.half_open_probes == 3
    assert config.retry == RetryPolicy(max_attempts=5, rounds=3, backoff_base_s=0.1, deadline_s=30.0)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BREAKER_FAILURES", "0", "ROUTER_BREAKER_FAILURES must be 1 or more, got 0"),
        ("BREAKER_FAILURE_RATE", "1.5", "ROUTER_BREAKER_FAILURE_RATE must be above 0 and at most 1, got 1.5"),
        ("BREAKER_PROBES", "0", "ROUTER_BREAKER_PROBES must be 1 or more, got 0"),
        ("MAX_ATTEMPTS", "0", "ROUTER_MAX_ATTEMPTS must be 1 or more, got 0"),
        ("RETRY_ROUNDS", "0", "ROUTER_RETRY_ROUNDS must be 1 or more, got 0"),
        ("DEADLINE_S", "-1", "ROUTER_DEADLINE_S must be greater than 0, got -1.0"),
        ("MAX_ATTEMPTS", "many", "ROUTER_MAX_ATTEMPTS='many' is not an integer"),
    ],
)
def test_invalid_values_name_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(**{variable: value})
    assert str(caught.value) == message


def test_batch_linger_default_and_range() -> None:
    assert load().batch_linger_ms == 25.0
    assert load(BATCH_LINGER_MS="0").batch_linger_ms == 0.0
    with pytest.raises(ConfigError, match="ROUTER_BATCH_LINGER_MS must be between 0 and 1000"):
        load(BATCH_LINGER_MS="-1")


def test_cache_digest_refresh_default_and_range() -> None:
    assert load().cache_digest_refresh_ms == 1000.0
    assert load(CACHE_DIGEST_REFRESH_MS="0").cache_digest_refresh_ms == 0.0
    assert load(CACHE_DIGEST_REFRESH_MS="250").cache_digest_refresh_ms == 250.0
    with pytest.raises(ConfigError, match="ROUTER_CACHE_DIGEST_REFRESH_MS must be 0 .off. or between 100 and 60000"):
        load(CACHE_DIGEST_REFRESH_MS="10")
