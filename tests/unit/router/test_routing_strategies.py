"""Routing strategies, routing preferences and their parsing from a request."""

from __future__ import annotations

import random
from typing import Any

import pytest

from libs.errors import InvalidRequestError
from services.router.catalog import Catalog, ModelGroup
from services.router.openai_request import routing_preferences
from services.router.routing import (
    STRATEGIES,
    LoadStats,
    NoMatchingDeploymentError,
    RoutePreferences,
    Router,
    WeightedStrategy,
    estimate_tokens,
    estimated_cost_usd,
)

# 400 characters of prompt are 100 tokens, plus 4 for the one message.
REQUEST: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 100}


def price(input_per_mtok: float, output_per_mtok: float) -> dict[str, float]:
    return {"input_per_mtok": input_per_mtok, "output_per_mtok": output_per_mtok, "cached_input_per_mtok": 0}


def group(strategy: str = "priority") -> ModelGroup:
    deployments = [
        # name, provider, priority, input and output price, weight
        ("cheap-in", "openai", 2, price(1.0, 10.0), 1.0),
        ("cheap-out", "anthropic", 1, price(3.0, 2.0), 3.0),
        ("premium", "openai", 0, price(5.0, 15.0), 6.0),
    ]
    catalog = Catalog.from_mapping(
        {
            "models": [
                {
                    "name": "m",
                    "strategy": strategy,
                    "deployments": [
                        {
                            "name": name,
                            "provider": provider,
                            "upstream_model": "up",
                            "base_url": "http://127.0.0.1:9",
                            "priority": priority,
                            "price": deployment_price,
                            "weight": weight,
                        }
                        for name, provider, priority, deployment_price, weight in deployments
                    ],
                }
            ]
        }
    )
    return catalog.get("m")


def order(strategy: str, request: dict[str, Any] | None = None, stats: LoadStats | None = None) -> list[str]:
    chosen = STRATEGIES[strategy].order(group(strategy), request or REQUEST, stats or LoadStats())
    return [deployment.id for deployment in chosen]


def test_estimate_tokens_uses_max_tokens() -> None:
    assert estimate_tokens(REQUEST) == (104, 100)


def test_estimate_tokens_defaults_output() -> None:
    request = {"messages": [{"role": "user", "content": [{"type": "text", "text": "y" * 40}]}]}
    assert estimate_tokens(request) == (14, 512)


def test_estimated_cost() -> None:
    deployment = group().deployments[0]
    assert estimated_cost_usd(deployment, 104, 100) == pytest.approx((104 * 1.0 + 100 * 10.0) / 1e6)


def test_priority_order() -> None:
    assert order("priority") == ["m/premium", "m/cheap-out", "m/cheap-in"]


def test_lowest_cost_depends_on_output_size() -> None:
    # 104 prompt and 100 output tokens: cheap-out costs 512 micro-USD, cheap-in 1104.
    assert order("lowest_cost") == ["m/cheap-out", "m/cheap-in", "m/premium"]
    # A prompt-heavy request reverses the first two: 4004 prompt and 1 output token.
    long_prompt = {"messages": [{"role": "user", "content": "x" * 16000}], "max_tokens": 1}
    assert order("lowest_cost", long_prompt) == ["m/cheap-in", "m/cheap-out", "m/premium"]


def test_lowest_latency_measures_unknown_first() -> None:
    stats = LoadStats()
    stats.observe("m/premium", 300.0, stream=False)
    stats.observe("m/cheap-in", 100.0, stream=False)
    assert order("lowest_latency", stats=stats) == ["m/cheap-out", "m/cheap-in", "m/premium"]


def test_lowest_latency_uses_first_content_for_streams() -> None:
    stats = LoadStats()
    for deployment_id, whole, first in (
        ("m/premium", 900.0, 50.0),
        ("m/cheap-out", 200.0, 150.0),
        ("m/cheap-in", 100.0, 400.0),
    ):
        stats.observe(deployment_id, whole, stream=False)
        stats.observe(deployment_id, first, stream=True)
    assert order("lowest_latency", stats=stats) == ["m/cheap-in", "m/cheap-out", "m/premium"]
    streamed = {**REQUEST, "stream": True}
    assert order("lowest_latency", streamed, stats) == ["m/premium", "m/cheap-out", "m/cheap-in"]


def test_latency_is_a_moving_average() -> None:
    stats = LoadStats(alpha=0.5)
    stats.observe("d", 100.0, stream=False)
    stats.observe("d", 300.0, stream=False)
    assert stats.latency_ms("d", stream=False) == pytest.approx(200.0)
    # A stream request with no first-content sample falls back to the whole-response average.
    assert stats.latency_ms("d", stream=True) == pytest.approx(200.0)
    assert stats.latency_ms("unknown", stream=False) is None


def test_least_busy_order() -> None:
    stats = LoadStats()
    for deployment_id, count in (("m/premium", 3), ("m/cheap-out", 1), ("m/cheap-in", 2)):
        for _ in range(count):
            stats.started(deployment_id)
    stats.ended("m/premium")
    stats.ended("m/premium")
    assert stats.in_flight("m/premium") == 1
    # premium and cheap-out tie at 1 and keep priority order.
    assert order("least_busy", stats=stats) == ["m/premium", "m/cheap-out", "m/cheap-in"]


def test_weighted_first_choice_follows_weights() -> None:
    strategy = WeightedStrategy(random.Random(7))
    firsts = {"m/premium": 0, "m/cheap-out": 0, "m/cheap-in": 0}
    for _ in range(10_000):
        chosen = strategy.order(group("weighted"), REQUEST, LoadStats())
        assert sorted(d.id for d in chosen) == sorted(firsts)
        firsts[chosen[0].id] += 1
    # Weights 6 : 3 : 1 of 10.
    assert firsts["m/premium"] / 10_000 == pytest.approx(0.6, abs=0.02)
    assert firsts["m/cheap-out"] / 10_000 == pytest.approx(0.3, abs=0.02)
    assert firsts["m/cheap-in"] / 10_000 == pytest.approx(0.1, abs=0.02)


def candidates(preferences: RoutePreferences, strategy: str = "priority") -> list[str]:
    model = group(strategy)
    router = Router(Catalog([model]))
    return [deployment.id for deployment in router.candidates(REQUEST, model, preferences)]


def test_pin_provider() -> None:
    assert candidates(RoutePreferences(provider="openai")) == ["m/premium", "m/cheap-in"]


def test_pin_deployment() -> None:
    assert candidates(RoutePreferences(deployment="m/cheap-in")) == ["m/cheap-in"]


def test_max_price_filters_deployments() -> None:
    # Estimates: cheap-out 0.000512, cheap-in 0.001104, premium 0.00202 USD.
    assert candidates(RoutePreferences(max_price_usd=0.0012)) == ["m/cheap-out", "m/cheap-in"]
    assert candidates(RoutePreferences(max_price_usd=0.0012, provider="openai")) == ["m/cheap-in"]


def test_unknown_provider_is_rejected() -> None:
    with pytest.raises(NoMatchingDeploymentError) as caught:
        candidates(RoutePreferences(provider="gemini"))
    assert caught.value.preference == "provider"
    assert "has no deployment of provider 'gemini'" in caught.value.message


def test_unknown_deployment_is_rejected() -> None:
    with pytest.raises(NoMatchingDeploymentError) as caught:
        candidates(RoutePreferences(deployment="m/other"))
    assert caught.value.preference == "deployment"


def test_price_below_cheapest_is_rejected() -> None:
    with pytest.raises(NoMatchingDeploymentError) as caught:
        candidates(RoutePreferences(max_price_usd=0.0005))
    assert caught.value.preference == "max_price_usd"
    assert "the cheapest estimate is 0.00051200 USD" in caught.value.message


def test_preferences_parsed_and_stripped() -> None:
    request = {
        **REQUEST,
        "metadata": {"aigw_provider": "openai", "aigw_max_price_usd": "0.01", "team": "search"},
    }
    preferences, provider_request = routing_preferences(request)
    assert preferences == RoutePreferences(provider="openai", max_price_usd=0.01)
    assert provider_request["metadata"] == {"team": "search"}
    assert request["metadata"]["aigw_provider"] == "openai"


def test_preferences_drop_empty_metadata() -> None:
    preferences, provider_request = routing_preferences({**REQUEST, "metadata": {"aigw_deployment": "m/premium"}})
    assert preferences == RoutePreferences(deployment="m/premium")
    assert "metadata" not in provider_request


def test_no_preferences_keeps_request() -> None:
    request = {**REQUEST, "metadata": {"team": "search"}}
    preferences, provider_request = routing_preferences(request)
    assert preferences.is_empty()
    assert provider_request is request


@pytest.mark.parametrize("value", ["cheap", "-1", "nan", "inf"])
def test_invalid_max_price_is_rejected(value: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        routing_preferences({**REQUEST, "metadata": {"aigw_max_price_usd": value}})
    assert caught.value.param == "metadata.aigw_max_price_usd"
    assert caught.value.reason == "INVALID_REQUEST"
