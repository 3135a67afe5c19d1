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

# Location of a prompt text: (message index, kind of place, position).
# - CONTENT: the message's string content; position 0.
# - PART: a text part of a list content; position is the part's index.
# - TOOL_CALL: the arguments of an earlier tool call; position is its index in tool_calls.
TextSlot = tuple[int, str, int]
CONTENT = "content"
PART = "part"
TOOL_CALL = "tool_call"


def iter_prompt_texts(request: dict[str, Any]) -> Iterator[tuple[TextSlot, str]]:
    """Yield every text of the prompt with where it sits, in message order.

    The arguments of earlier tool calls count as prompt text: they go back to the
    provider and can carry the personal data a tool returned or a user typed.
    NOTE: message `name` fields are not yielded; OpenAI allows only letters, digits,
    `_` and `-` in them, so they cannot hold an email address or a phone number.
    """
    for index, message in enumerate(request["messages"]):
        content = message.get("content")
        if isinstance(content, str):
            yield (index, CONTENT, 0), content
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    yield (index, PART, part_index), part["text"]
        tool_calls = message.get("tool_calls")
        if isinstance(tool_calls, list):
            for call_index, call in enumerate(tool_calls):
                function = call.get("function") if isinstance(call, dict) else None
                arguments = function.get("arguments") if isinstance(function, dict) else None
                if isinstance(arguments, str) and arguments:
                    yield (index, TOOL_CALL, call_index), arguments


def prompt_roles_and_texts(request: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the ``(role, text)`` pairs that screening checks, in message order."""
    return [(str(request["messages"][index].get("role")), text) for (index, _, _), text in iter_prompt_texts(request)]


def screened_digest(model: str, attributes: Mapping[str, str], texts: list[tuple[str, str]]) -> str:
    """Return the digest that names one screening: model, its attributes and the prompt."""
    canonical = orjson.dumps([model, sorted(attributes.items()), texts])
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()
