"""Tests for failover, cooldowns and stream commit in the router, with fake adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.router.catalog import Catalog, ModelGroup
from services.router.providers.base import ProviderError
from services.router.routing import AllDeploymentsFailedError, InMemoryHealth, Router

REQUEST: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


ROLE = chunk({"role": "assistant", "content": ""})
HELLO = chunk({"content": "Hello"})
DONE = chunk({}, "stop")


def error(
    status: int | None, code: str, *, retryable: bool = True, retry_after_s: float | None = None
) -> ProviderError:
    return ProviderError(
        f"{code} from fake",
        code=code,
        status=status,
        retryable=retryable,
        retry_after_s=retry_after_s,
    )


class FakeAdapter:
    """Plays back a scripted outcome per call for each deployment id."""

    def __init__(self, outcomes: dict[str, list[Any]]) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []
        self.closed: list[str] = []

    def _next(self, deployment_id: str) -> Any:
        self.calls.append(deployment_id)
        return self.outcomes[deployment_id].pop(0)

    async def complete(self, request: dict[str, Any], deployment: Any) -> dict[str, Any]:
        outcome = self._next(deployment.id)
        if isinstance(outcome, ProviderError):
            raise outcome
        return {"id": deployment.id, "choices": []}

    async def stream(
        self, request: dict[str, Any], deployment: Any
    ) -> AsyncIterator[dict[str, Any]]:
        items = self._next(deployment.id)
        try:
            for item in items:
                if isinstance(item, ProviderError):
                    raise item
                yield item
        finally:
            self.closed.append(deployment.id)


def make_router(
    outcomes: dict[str, list[Any]], clock: list[float] | None = None
) -> tuple[Router, FakeAdapter, ModelGroup]:
    deployments = [
        {
            "name": name,
            "provider": "openai",
            "upstream_model": "up",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key_env": None,
            "priority": priority,
            "price": {"input_per_mtok": 1, "output_per_mtok": 1, "cached_input_per_mtok": 1},
        }
        for name, priority in (("backup", 2), ("primary", 1), ("third", 3))
    ]
    catalog = Catalog.from_mapping({"models": [{"name": "m", "deployments": deployments}]})
    adapter = FakeAdapter({f"m/{name}": list(items) for name, items in outcomes.items()})
    times = clock if clock is not None else [0.0]
    health = InMemoryHealth(clock=lambda: times[0])
    router = Router(catalog, health=health, adapters=lambda provider: adapter)
    return router, adapter, catalog.get("m")


async def test_complete_uses_priority_order() -> None:
    router, adapter, group = make_router({"primary": [None]})
    result = await router.complete(REQUEST, group)
    assert result.deployment.id == "m/primary"
    assert result.body["id"] == "m/primary"
    assert adapter.calls == ["m/primary"]
    assert [(a.deployment_id, a.status, a.code) for a in result.attempts] == [
        ("m/primary", 200, "OK")
    ]


async def test_complete_fails_over_on_retryable() -> None:
    router, adapter, group = make_router(
        {
            "primary": [error(503, "UPSTREAM_UNAVAILABLE")],
            "backup": [error(None, "UPSTREAM_TIMEOUT")],
            "third": [None],
        }
    )
    result = await router.complete(REQUEST, group)
    assert result.deployment.id == "m/third"
    assert adapter.calls == ["m/primary", "m/backup", "m/third"]
    assert [(a.status, a.code) for a in result.attempts] == [
        (503, "UPSTREAM_UNAVAILABLE"),
        (None, "UPSTREAM_TIMEOUT"),
        (200, "OK"),
    ]
    assert all(a.latency_ms >= 0 for a in result.attempts)


async def test_complete_raises_non_retryable_at_once() -> None:
    bad_request = error(400, "UPSTREAM_BAD_REQUEST", retryable=False)
    router, adapter, group = make_router({"primary": [bad_request], "backup": [None]})
    with pytest.raises(ProviderError) as caught:
        await router.complete(REQUEST, group)
    assert caught.value is bad_request
    assert adapter.calls == ["m/primary"]
    assert [a.code for a in caught.value.attempts] == ["UPSTREAM_BAD_REQUEST"]


async def test_complete_all_failed() -> None:
    last = error(502, "UPSTREAM_UNAVAILABLE")
    router, _, group = make_router(
        {
            "primary": [error(503, "UPSTREAM_UNAVAILABLE")],
            "backup": [error(None, "UPSTREAM_CONNECTION_FAILED")],
            "third": [last],
        }
    )
    with pytest.raises(AllDeploymentsFailedError) as caught:
        await router.complete(REQUEST, group)
    assert caught.value.last_error is last
    assert caught.value.model == "m"
    assert [a.deployment_id for a in caught.value.attempts] == ["m/primary", "m/backup", "m/third"]


async def test_rate_limit_starts_cooldown() -> None:
    clock = [100.0]
    router, adapter, group = make_router(
        {
            "primary": [error(429, "UPSTREAM_RATE_LIMITED", retry_after_s=2.0), None],
            "backup": [None, None],
        },
        clock,
    )
    first = await router.complete(REQUEST, group)
    assert first.deployment.id == "m/backup"

    clock[0] = 101.0
    second = await router.complete(REQUEST, group)
    assert second.deployment.id == "m/backup"
    assert [a.deployment_id for a in second.attempts] == ["m/backup"]

    clock[0] = 102.5
    third = await router.complete(REQUEST, group)
    assert third.deployment.id == "m/primary"
    assert adapter.calls == ["m/primary", "m/backup", "m/backup", "m/primary"]


async def test_every_deployment_cooling_down() -> None:
    clock = [0.0]
    limited = [error(429, "UPSTREAM_RATE_LIMITED", retry_after_s=s) for s in (5.0, 3.0, 9.0)]
    router, adapter, group = make_router(
        {"primary": [limited[0]], "backup": [limited[1]], "third": [limited[2]]}, clock
    )
    with pytest.raises(AllDeploymentsFailedError):
        await router.complete(REQUEST, group)

    clock[0] = 1.0
    with pytest.raises(AllDeploymentsFailedError) as caught:
        await router.complete(REQUEST, group)
    assert caught.value.last_error is None
    assert caught.value.attempts == []
    assert caught.value.retry_after_s == pytest.approx(2.0)
    assert len(adapter.calls) == 3


async def test_stream_fails_over_before_content() -> None:
    router, adapter, group = make_router(
        {
            "primary": [[ROLE, error(None, "UPSTREAM_TIMEOUT")]],
            "backup": [[ROLE, HELLO, DONE]],
        }
    )
    stream = await router.stream(REQUEST, group)
    assert stream.deployment.id == "m/backup"
    assert [a.code for a in stream.attempts] == ["UPSTREAM_TIMEOUT", "OK"]
    assert [c async for c in stream] == [ROLE, HELLO, DONE]
    assert adapter.closed == ["m/primary", "m/backup"]


async def test_stream_error_after_content_propagates() -> None:
    broken = error(None, "UPSTREAM_STREAM_INTERRUPTED")
    router, adapter, group = make_router(
        {
            "primary": [[ROLE, HELLO, broken]],
            "backup": [[ROLE, HELLO, DONE]],
        }
    )
    stream = await router.stream(REQUEST, group)
    received = []
    with pytest.raises(ProviderError) as caught:
        async for item in stream:
            received.append(item)
    assert received == [ROLE, HELLO]
    assert caught.value is broken
    assert adapter.calls == ["m/primary"]


async def test_stream_non_retryable_raised_from_call() -> None:
    router, adapter, group = make_router(
        {
            "primary": [[error(400, "UPSTREAM_BAD_REQUEST", retryable=False)]],
            "backup": [[HELLO]],
        }
    )
    with pytest.raises(ProviderError, match="UPSTREAM_BAD_REQUEST"):
        await router.stream(REQUEST, group)
    assert adapter.calls == ["m/primary"]


async def test_stream_aclose_closes_upstream() -> None:
    router, adapter, group = make_router({"primary": [[ROLE, HELLO, HELLO, DONE]]})
    async with await router.stream(REQUEST, group) as stream:
        assert await stream.__anext__() == ROLE
    assert adapter.closed == ["m/primary"]


def test_router_rejects_unknown_strategy() -> None:
    catalog = Catalog.from_mapping(
        {
            "models": [
                {
                    "name": "m",
                    "deployments": [
                        {
                            "provider": "openai",
                            "upstream_model": "u",
                            "base_url": "http://127.0.0.1:9",
                            "price": {
                                "input_per_mtok": 1,
                                "output_per_mtok": 1,
                                "cached_input_per_mtok": 1,
                            },
                        }
                    ],
                }
            ]
        }
    )
    with pytest.raises(ValueError, match="strategy 'priority'"):
        Router(catalog, strategies={})
