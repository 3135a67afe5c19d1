"""Routing through the whole mesh: client disconnects, stream errors, headers and preferences.

The demo catalog serves gpt-4o-mini from the simulator deployments "primary" and
"backup" (priority order). Every prompt carries a marker so that no test is answered
from another test's cache entry.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def marker() -> str:
    return uuid.uuid4().hex[:10]


def stream_events(gateway: Any, key: str, content: str, **fields: Any) -> tuple[httpx.Response, list[str]]:
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": content}], **fields},
        timeout=30,
    ) as response:
        body = response.read().decode()
    return response, [event for event in body.split("\n\n") if event.strip()]


def latest_request(gateway: Any, deployment: str, content: str) -> dict[str, Any]:
    for entry in reversed(gateway.simulator.requests(deployment)):
        messages = (entry.get("body") or {}).get("messages") or []
        if messages and messages[-1].get("content") == content:
            return entry
    raise AssertionError(f"the simulator has no request of {deployment} with that prompt")


async def test_client_disconnect_cancels_upstream_and_settles(gateway: Any) -> None:
    tenant = f"disconnect-{marker()}"
    key = gateway.create_key(tenant=tenant)
    content = f"long answer {marker()}"
    # About 1,500 one-token events 100 ms apart: minutes of stream unless it is cut.
    gateway.simulator.script("primary", [{"chunk_delay_ms": 100, "answer_bytes": 6000}])

    received = 0
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": content}]},
        timeout=30,
    ) as response:
        assert response.headers["x-aigw-deployment"] == "gpt-4o-mini/primary"
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                received += 1
            if received == 5:
                break
        closed_at = time.time()

    entry: dict[str, Any] = {}
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        entry = latest_request(gateway, "primary", content)
        if entry["stream_end"] is not None:
            break
        await asyncio.sleep(0.05)
    assert entry["stream_end"] == "client_closed"
    assert entry["ended_at"] - closed_at < 1.0
    assert entry["events_sent"] < 100

    rows = await gateway.ledger_rows(tenant, expected=1)
    assert len(rows) == 1
    row = rows[0]
    assert row["outcome"] == "cancelled"
    assert row["stream"] is True
    assert row["deployment"] == "gpt-4o-mini/primary"
    assert row["completion_tokens"] > 0
    assert row["completion_tokens"] < 100
    assert row["cost_usd"] > 0


def test_error_event_before_content_fails_over(gateway: Any) -> None:
    gateway.simulator.script("primary", [{"error_after_chunks": 1}])

    response, events = stream_events(gateway, gateway.api_key, f"early error {marker()}")

    assert response.status_code == 200
    assert response.headers["x-aigw-deployment"] == "gpt-4o-mini/backup"
    assert response.headers["x-aigw-attempts"] == "2"
    assert events[-1] == "data: [DONE]"
    assert not any('"error"' in event for event in events)


def test_error_event_after_content_ends_in_band(gateway: Any) -> None:
    gateway.simulator.script("primary", [{"error_after_chunks": 3}])

    response, events = stream_events(gateway, gateway.api_key, f"late error {marker()}")

    assert response.status_code == 200
    assert response.headers["x-aigw-deployment"] == "gpt-4o-mini/primary"
    assert "data: [DONE]" not in events
    contents = [json.loads(event[6:])["choices"][0]["delta"].get("content") for event in events[:-1]]
    assert "".join(item or "" for item in contents) == "Simulated answer"
    error = json.loads(events[-1][6:])["error"]
    assert error["type"] == "service_unavailable_error"
    assert error["code"] == "upstream_stream_interrupted"


def test_short_stall_keeps_deployment(gateway: Any) -> None:
    # The demo catalog's 30 s timeouts are too long to wait for here; stalls that outlast
    # a timeout are tested in test_routing_simulator.py. A stall shorter than the
    # timeout keeps the stream on its first deployment.
    gateway.simulator.script("primary", [{"stall_ms": 300, "stall_after_chunks": 1}])

    response, events = stream_events(gateway, gateway.api_key, f"short stall {marker()}")

    assert response.headers["x-aigw-deployment"] == "gpt-4o-mini/primary"
    assert response.headers["x-aigw-attempts"] == "1"
    assert events[-1] == "data: [DONE]"


def test_response_headers_name_deployment_attempts_cost(gateway: Any) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0, timeout=30)
    response = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"headers {marker()}"}]
    )
    completion = response.parse()
    assert response.headers["x-aigw-deployment"] == "gpt-4o-mini/primary"
    assert response.headers["x-aigw-attempts"] == "1"
    assert completion.usage is not None
    # gpt-4o-mini: $0.15 per million prompt tokens, $0.60 per million completion tokens.
    expected = (completion.usage.prompt_tokens * 0.15 + completion.usage.completion_tokens * 0.60) / 1e6
    assert float(response.headers["x-aigw-cost-usd"]) == pytest.approx(expected, abs=1e-8)


def test_pinned_deployment_is_used(gateway: Any) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0, timeout=30)
    content = f"pinned {marker()}"
    response = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": content}],
        metadata={"aigw_deployment": "gpt-4o-mini/backup", "team": "search"},
    )

    assert response.headers["x-aigw-deployment"] == "gpt-4o-mini/backup"
    sent = latest_request(gateway, "backup", content)["body"]
    assert sent["metadata"] == {"team": "search"}


def test_price_cap_below_estimate_is_rejected(gateway: Any) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"cheap {marker()}"}],
            max_tokens=1000,
            metadata={"aigw_max_price_usd": "0.0000001"},
        )
    assert caught.value.status_code == 400
    assert caught.value.code == "no_matching_deployment"
    assert caught.value.param == "metadata.aigw_max_price_usd"


def test_pinned_unknown_provider_is_rejected(gateway: Any) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"pin {marker()}"}],
            metadata={"aigw_provider": "anthropic"},
        )
    assert caught.value.code == "no_matching_deployment"
    assert caught.value.param == "metadata.aigw_provider"
