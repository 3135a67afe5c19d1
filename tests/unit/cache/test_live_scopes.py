"""The cache servicer's memory of semantic scopes that have entries."""

from __future__ import annotations

import time

from services.cache.service import LiveScopes


def test_added_scope_is_live() -> None:
    scopes = LiveScopes()
    scopes.add(("acme", "gpt-4o-mini", "c1"))

    assert ("acme", "gpt-4o-mini", "c1") in scopes
    assert ("acme", "gpt-4o-mini", "c2") not in scopes
    assert ("other", "gpt-4o-mini", "c1") not in scopes


def test_scope_expires_after_ttl() -> None:
    scopes = LiveScopes(ttl_s=0.01)
    scopes.add(("acme", "m", "c"))
    time.sleep(0.02)

    assert ("acme", "m", "c") not in scopes


def test_oldest_scope_dropped_at_bound() -> None:
    scopes = LiveScopes(max_entries=2)
    scopes.add(("acme", "m", "1"))
    scopes.add(("acme", "m", "2"))
    scopes.add(("acme", "m", "3"))

    assert ("acme", "m", "1") not in scopes
    assert ("acme", "m", "2") in scopes
    assert ("acme", "m", "3") in scopes


def test_forget_tenant_keeps_others() -> None:
    scopes = LiveScopes()
    scopes.add(("acme", "m", "c"))
    scopes.add(("globex", "m", "c"))
    scopes.forget_tenant("acme")

    assert ("acme", "m", "c") not in scopes
    assert ("globex", "m", "c") in scopes
