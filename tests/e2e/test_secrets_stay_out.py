"""No API key, provider key or prompt text reaches a log line, a metric or an error body.

Canary values go through every path that could leak them (success, stream, cache,
PII, authentication failure, validation error, provider failure); then every
service log and metrics endpoint is searched for them.
"""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import httpx
import openai
import pytest

from tests.fixtures.stack import PROVIDER_KEY_CANARY

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PROMPT_CANARY = "zebra-quartz-canary-4417"
PII_CANARY = "canary.person.4417@example.org"
BAD_KEY_CANARY = "sk-aigw-canary00-" + "Q" * 32
# Logs of the gateway's own processes; the simulator plays the provider, which does see prompts.
SERVICE_LOGS = ("router", "security", "cache", "metering", "envoy", "cerbos")


def _exercise(gateway: Any) -> list[str]:
    bodies: list[str] = []
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": f"Remember {PROMPT_CANARY} and write to {PII_CANARY}"}]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    list(client.chat.completions.create(model="claude-3-5-haiku", messages=messages, stream=True))

    # More failures than the router's attempts, so the request fails; reset afterwards.
    gateway.simulator.script("primary", [{"status": 500}] * 6)
    gateway.simulator.script("backup", [{"status": 500}] * 6)
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    uncached = [{"role": "user", "content": f"Again {PROMPT_CANARY}, {PII_CANARY}, {time.time()}"}]
    failed = httpx.post(
        f"{gateway.base_url}/chat/completions",
        headers=headers,
        timeout=30,
        json={"model": "gpt-4o-mini", "messages": uncached},
    )
    gateway.simulator.reset("primary")
    gateway.simulator.reset("backup")
    assert failed.status_code == 503
    bodies.append(failed.text)

    bad_key = httpx.post(
        f"{gateway.base_url}/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {BAD_KEY_CANARY}"},
        json={"model": "gpt-4o-mini", "messages": messages},
    )
    assert bad_key.status_code == 401
    bodies.append(bad_key.text)

    invalid = httpx.post(
        f"{gateway.base_url}/chat/completions",
        headers=headers,
        timeout=30,
        json={"model": "gpt-4o-mini", "messages": messages, "temperature": PROMPT_CANARY},
    )
    assert invalid.status_code == 400
    bodies.append(invalid.text)
    return bodies


def test_canaries_stay_out_of_logs_metrics_and_errors(gateway: Any) -> None:
    bodies = _exercise(gateway)
    time.sleep(0.5)  # let background settlement and audit writes log what they log

    canaries = (PROMPT_CANARY, PII_CANARY, BAD_KEY_CANARY, PROVIDER_KEY_CANARY, gateway.api_key)
    logs = {name: (gateway.log_dir / f"{name}.log").read_text(errors="replace") for name in SERVICE_LOGS}
    ports = gateway.ports
    metrics = {
        name: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        for name, port in (
            ("router", ports.router_metrics),
            ("security", ports.security_metrics),
            ("cache", ports.cache_metrics),
            ("metering", ports.metering_metrics),
        )
    }

    assert all(logs[name] for name in ("router", "security", "envoy")), "expected the services to log something"
    assert "aigw_grpc_server_requests_total" in metrics["router"]
    for canary in canaries:
        for name, text in logs.items():
            assert canary not in text, f"{name} log contains a secret"
        for name, text in metrics.items():
            assert canary not in text, f"{name} metrics contain a secret"
        for body in bodies:
            assert canary not in body, "an error body contains a secret"
