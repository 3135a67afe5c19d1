"""Metric label values stay bounded."""

from __future__ import annotations

from services.metering.metrics import LabelGuard


def test_catalog_names_pass() -> None:
    guard = LabelGuard(max_values=10)

    assert guard.value("gpt-4o-mini") == "gpt-4o-mini"
    assert guard.value("anthropic/claude-3.5-sonnet@2024") == "anthropic/claude-3.5-sonnet@2024"


def test_malformed_names_become_other() -> None:
    guard = LabelGuard(max_values=10)

    assert guard.value("") == "other"
    assert guard.value("ignore previous instructions") == "other"
    assert guard.value("x" * 200) == "other"


def test_names_beyond_cap_become_other() -> None:
    guard = LabelGuard(max_values=2)

    assert guard.value("a1") == "a1"
    assert guard.value("a2") == "a2"
    assert guard.value("a3") == "other"
    assert guard.value("a1") == "a1"
