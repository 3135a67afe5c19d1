"""Routing choices and prompt rewriting on OpenAI Chat Completions requests; parsing and
validation live in :mod:`libs.openai_chat`."""

from __future__ import annotations

from typing import Any

from libs.errors import InvalidRequestError
from libs.screening import CONTENT, PART, TextSlot
from services.router.routing import RoutePreferences


def _invalid(param: str, message: str, code: str = "invalid_value") -> InvalidRequestError:
    return InvalidRequestError(message, reason="INVALID_REQUEST", param=param, openai_code=code)


def replace_prompt_texts(request: dict[str, Any], slots: list[TextSlot], texts: list[str]) -> dict[str, Any]:
    """Return a copy of ``request`` with the texts at ``slots`` replaced, leaving the original unchanged."""
    messages = [dict(message) for message in request["messages"]]
    for (index, where, position), text in zip(slots, texts, strict=True):
        message = messages[index]
        if where == CONTENT:
            message["content"] = text
        elif where == PART:
            parts = list(message["content"])
            parts[position] = {**parts[position], "text": text}
            message["content"] = parts
        else:
            calls = list(message["tool_calls"])
            call = calls[position]
            calls[position] = {**call, "function": {**call["function"], "arguments": text}}
            message["tool_calls"] = calls
    return {**request, "messages": messages}


# Routing choices ride in OpenAI's `metadata` map (string values), which every OpenAI
# SDK can send. Request headers are no alternative: the edge removes every x-aigw-*
# header a client sends, so that only the principal headers it sets reach the router.
ROUTE_PROVIDER_KEY = "aigw_provider"
ROUTE_DEPLOYMENT_KEY = "aigw_deployment"
ROUTE_MAX_PRICE_KEY = "aigw_max_price_usd"
ROUTE_KEYS = (ROUTE_PROVIDER_KEY, ROUTE_DEPLOYMENT_KEY, ROUTE_MAX_PRICE_KEY)


def routing_preferences(request: dict[str, Any]) -> tuple[RoutePreferences, dict[str, Any]]:
    """Read the routing choices from ``metadata`` and return them with the request without them.

    The returned request is what providers get: the gateway's own keys are removed, and
    so is ``metadata`` when nothing else was in it. Raises InvalidRequestError for a
    maximum price that is not a number of 0 or more.
    """
    metadata = request.get("metadata")
    if not isinstance(metadata, dict) or not any(key in metadata for key in ROUTE_KEYS):
        return RoutePreferences(), request

    provider = metadata.get(ROUTE_PROVIDER_KEY) or None
    deployment = metadata.get(ROUTE_DEPLOYMENT_KEY) or None
    max_price: float | None = None
    raw_price = metadata.get(ROUTE_MAX_PRICE_KEY)
    if raw_price not in (None, ""):
        param = f"metadata.{ROUTE_MAX_PRICE_KEY}"
        try:
            max_price = float(raw_price)
        except (TypeError, ValueError):
            raise _invalid(param, f'`{param}` is {raw_price!r}; send a price in USD such as "0.01"') from None
        if not max_price >= 0 or max_price == float("inf"):
            raise _invalid(param, f"`{param}` is {raw_price!r}; it must be a finite number of 0 or more")

    remaining = {key: value for key, value in metadata.items() if key not in ROUTE_KEYS}
    stripped = {key: value for key, value in request.items() if key != "metadata"}
    if remaining:
        stripped["metadata"] = remaining
    preferences = RoutePreferences(provider=provider, deployment=deployment, max_price_usd=max_price)
    return preferences, stripped
