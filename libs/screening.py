"""Shared rules of the security service and the router for screening a chat prompt.

The security service can screen an OpenAI chat request at the edge, in Envoy's ext_authz
call, when the body arrived whole. For a prompt that passes with nothing to redact it
sets SCREENED_HEADER to :func:`screened_digest` of what it checked, and the router skips
its own ScreenPrompt call when its digest of the same request is equal. Any difference
(other prompt texts, another model name, other model attributes) gives another digest,
and the router screens as usual.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

SCREENED_HEADER = "x-aigw-screened"
"""Request header that the security service sets at the edge. The edge removes it from client requests."""

# Locations of prompt text, as (message index, part index or -1 for a string content).
TextSlot = tuple[int, int]


def iter_prompt_texts(request: dict[str, Any]) -> Iterator[tuple[TextSlot, str]]:
    """Yield every text of the prompt with where it sits, in message order.

    NOTE: message `name` fields and the arguments of earlier tool calls are not yielded,
    so they reach providers unscreened.
    """
    for index, message in enumerate(request["messages"]):
        content = message.get("content")
        if isinstance(content, str):
            yield (index, -1), content
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    yield (index, part_index), part["text"]


def prompt_roles_and_texts(request: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the ``(role, text)`` pairs that screening checks, in message order."""
    return [(str(request["messages"][index].get("role")), text) for (index, _), text in iter_prompt_texts(request)]


def screened_digest(model: str, attributes: Mapping[str, str], texts: list[tuple[str, str]]) -> str:
    """Return the digest that names one screening: model, its attributes and the prompt."""
    canonical = orjson.dumps([model, sorted(attributes.items()), texts])
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()
