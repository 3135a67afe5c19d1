"""The model authorizer's decision cache, with a stand-in for the Cerbos client."""

from __future__ import annotations

import asyncio
from typing import Any

from libs.principal import Principal
from services.security.authz import ModelAuthorizer


class CountingClient:
    """Answers every check with ``allowed`` and counts the checks."""

    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self.checks = 0

    async def is_allowed(self, action: str, principal: Any, resource: Any) -> bool:
        self.checks += 1
        return self.allowed


def principal(key_id: str = "key-1", roles: tuple[str, ...] = ("user",)) -> Principal:
    return Principal(tenant="acme", key_id=key_id, roles=roles)


async def test_decision_reused_within_ttl() -> None:
    client = CountingClient(allowed=True)
    authorizer = ModelAuthorizer(client, "127.0.0.1:1", 1.0, decision_ttl_s=60)  # type: ignore[arg-type]

    first = await authorizer.can_invoke(principal(), "gpt-4o-mini", {"tier": "standard"})
    second = await authorizer.can_invoke(principal(), "gpt-4o-mini", {"tier": "standard"})

    assert first is True
    assert second is True
    assert client.checks == 1


async def test_denial_is_cached_too() -> None:
    client = CountingClient(allowed=False)
    authorizer = ModelAuthorizer(client, "127.0.0.1:1", 1.0, decision_ttl_s=60)  # type: ignore[arg-type]

    assert await authorizer.can_invoke(principal(), "gpt-4o", {"tier": "premium"}) is False
    client.allowed = True
    assert await authorizer.can_invoke(principal(), "gpt-4o", {"tier": "premium"}) is False
    assert client.checks == 1


async def test_other_inputs_ask_the_pdp() -> None:
    client = CountingClient(allowed=True)
    authorizer = ModelAuthorizer(client, "127.0.0.1:1", 1.0, decision_ttl_s=60)  # type: ignore[arg-type]

    await authorizer.can_invoke(principal(), "gpt-4o-mini", {"tier": "standard"})
    await authorizer.can_invoke(principal(key_id="key-2"), "gpt-4o-mini", {"tier": "standard"})
    await authorizer.can_invoke(principal(roles=("admin",)), "gpt-4o-mini", {"tier": "standard"})
    await authorizer.can_invoke(principal(), "gpt-4o", {"tier": "standard"})
    await authorizer.can_invoke(principal(), "gpt-4o-mini", {"tier": "premium"})

    assert client.checks == 5


async def test_zero_ttl_asks_every_time() -> None:
    client = CountingClient(allowed=True)
    authorizer = ModelAuthorizer(client, "127.0.0.1:1", 1.0)  # type: ignore[arg-type]

    await authorizer.can_invoke(principal(), "gpt-4o-mini", {"tier": "standard"})
    await authorizer.can_invoke(principal(), "gpt-4o-mini", {"tier": "standard"})

    assert client.checks == 2


class SlowClient(CountingClient):
    """Takes a moment per check, so that calls overlap."""

    async def is_allowed(self, action: str, principal: Any, resource: Any) -> bool:
        await asyncio.sleep(0.05)
        return await super().is_allowed(action, principal, resource)


async def test_concurrent_misses_share_one_check() -> None:
    client = SlowClient(allowed=True)
    authorizer = ModelAuthorizer(client, "127.0.0.1:1", 1.0, decision_ttl_s=60)  # type: ignore[arg-type]

    decisions = await asyncio.gather(
        *(authorizer.can_invoke(principal(), "gpt-4o-mini", {"tier": "standard"}) for _ in range(20))
    )

    assert decisions == [True] * 20
    assert client.checks == 1


async def test_cached_decision_without_a_check() -> None:
    client = CountingClient(allowed=True)
    authorizer = ModelAuthorizer(client, "127.0.0.1:1", 1.0, decision_ttl_s=60)  # type: ignore[arg-type]

    before = authorizer.cached_decision(principal(), "gpt-4o-mini", {"tier": "standard"})
    await authorizer.can_invoke(principal(), "gpt-4o-mini", {"tier": "standard"})
    after = authorizer.cached_decision(principal(), "gpt-4o-mini", {"tier": "standard"})

    assert before is None
    assert after is True
    assert authorizer.cached_decision(principal(roles=()), "gpt-4o-mini", {"tier": "standard"}) is False
