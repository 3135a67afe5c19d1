"""Prometheus metrics of the router."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

CACHE_RESULTS = Counter(
    "aigw_cache_lookups_total",
    "Chat requests by cache result (miss, exact, semantic, bypass).",
    ["model", "result"],
)
LOOKUPS_SKIPPED = Counter(
    "aigw_router_cache_lookups_skipped_total",
    "Cache lookups not made because the cache's key digest showed they would miss.",
)
SCREENINGS = Counter(
    "aigw_router_screenings_total",
    "Chat requests by where their prompt was screened: edge (in ext_authz) or router (ScreenPrompt).",
    ["stage"],
)
TOKENS = Counter(
    "aigw_router_tokens_total",
    "Tokens reported by providers, by type (prompt, completion, cached).",
    ["model", "provider", "type"],
)
COST = Counter("aigw_router_cost_usd_total", "Cost of provider calls in US dollars.", ["model", "provider"])
PROVIDER_ATTEMPTS = Counter(
    "aigw_provider_attempts_total",
    "Calls to provider deployments by outcome code.",
    ["deployment", "provider", "code"],
)
PROVIDER_LATENCY = Histogram(
    "aigw_provider_latency_seconds",
    "Time from sending a request to a provider to its answer or first chunk.",
    ["deployment", "provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def record_usage(model: str, provider: str, usage: dict[str, Any], cost: float) -> None:
    """Count the tokens and cost of one answered request."""
    details = usage.get("prompt_tokens_details") or {}
    TOKENS.labels(model, provider, "prompt").inc(int(usage.get("prompt_tokens") or 0))
    TOKENS.labels(model, provider, "completion").inc(int(usage.get("completion_tokens") or 0))
    TOKENS.labels(model, provider, "cached").inc(int(details.get("cached_tokens") or 0))
    COST.labels(model, provider).inc(cost)
