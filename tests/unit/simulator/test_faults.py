"""Tests for the simulator's script steps, fault plans and request log."""

from __future__ import annotations

import random

import pytest

from tools.simulator.faults import (
    RequestLog,
    ScriptBook,
    SimulatorConfig,
    Step,
    StepError,
    make_plan,
)


def test_step_from_mapping() -> None:
    step = Step.from_mapping({"status": 429, "retry_after": 2, "message": "slow down"})
    assert step.status == 429
    assert step.retry_after == 2
    assert step.message == "slow down"
    assert step.disconnect_after_chunks is None


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"stauts": 503}, "unknown step fields"),
        ({"status": 99}, "HTTP status"),
        ({"delay_ms": -1}, "0 or more"),
        ({"stall_ms": "long"}, "must be a number"),
        ({"message": 5}, "must be a string"),
        ("503", "JSON object"),
    ],
)
def test_step_invalid(raw: object, problem: str) -> None:
    with pytest.raises(StepError, match=problem):
        Step.from_mapping(raw)


def test_script_book_per_deployment_order() -> None:
    book = ScriptBook()
    assert book.add("primary", [Step(status=503), Step()]) == 2
    book.add("backup", [Step(delay_ms=5)])
    assert book.pending() == {"primary": 2, "backup": 1}

    first = book.next("primary")
    assert first is not None and first.status == 503
    assert book.next("primary") == Step()
    assert book.next("primary") is None
    book.clear("backup")
    assert book.next("backup") is None


def test_plan_combines_global_and_step() -> None:
    config = SimulatorConfig(latency_ms=10, first_token_ms=20, chunk_delay_ms=5)
    plan = make_plan(config, Step(delay_ms=30), random.Random(1))
    assert plan.delay_s == pytest.approx(0.04)
    assert plan.first_token_s == pytest.approx(0.02)
    assert plan.chunk_delay_s == pytest.approx(0.005)
    assert plan.error_status is None


def test_plan_error_rate_only_unscripted() -> None:
    config = SimulatorConfig(error_rate=1.0, error_status=502)
    assert make_plan(config, None, random.Random(1)).error_status == 502
    assert make_plan(config, Step(), random.Random(1)).error_status is None
    assert make_plan(SimulatorConfig(), Step(status=429), random.Random(1)).error_status == 429


def test_request_log_redacts_and_bounds() -> None:
    log = RequestLog(size=2)
    headers = {"Authorization": "Bearer sk-abc", "X-Api-Key": "k1", "Content-Type": "x"}
    for index in range(3):
        log.add("primary" if index else "backup", "POST", "/v1/x", headers, {"n": index})

    entries = log.list()
    assert [entry["body"]["n"] for entry in entries] == [1, 2]
    assert entries[0]["headers"]["authorization"].startswith("Bearer [redacted sha256:")
    assert "sk-abc" not in entries[0]["headers"]["authorization"]
    assert entries[0]["headers"]["x-api-key"].startswith("[redacted sha256:")
    assert entries[0]["headers"]["content-type"] == "x"
    assert log.list("backup") == []

    log.clear("primary")
    assert log.list() == []
