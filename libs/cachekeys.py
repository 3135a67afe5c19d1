"""Cache keys for OpenAI Chat Completions requests.

The exact key covers every request field that can change the model's response, including
fields this gateway does not know yet, and leaves out the fields that only change how the
response is delivered or recorded (``stream``, ``user``, ``metadata``, ...). The semantic scope
splits a request into the last user message's text, which is matched by meaning, and a
hash of everything else, which must match exactly.

The cache service stores and finds entries by these keys. The router computes them too,
so that it can test a request against the cache's key digest before it calls Lookup.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

KEY_VERSION = "v1"
"""Part of every hash; change it when the canonical form changes, so old entries miss."""

TRANSPORT_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "timeout",
    }
)
"""Request fields that change delivery, billing or bookkeeping but not the response."""

_TEXT_PART_TYPES = frozenset({"text", "input_text"})


class InvalidCacheKeyError(ValueError):
    """A cache key does not have the form ``exact_key`` returns."""


@dataclass(frozen=True)
class SemanticScope:
    """A request split for the semantic cache."""

    context_hash: str
    """SHA-256 hex of everything but the last user message's text: model, earlier
    messages, system and developer prompts, tools, response format and sampling fields."""
    prompt_text: str
    """Text of the last user message, with text parts joined by newlines."""


def exact_key(tenant: str, request: Mapping[str, Any]) -> str:
    """Return the exact-cache key of ``request`` for ``tenant``.

    The key is ``"<tenant>:<sha256 hex>"``; the tenant prefix lets the store index keys by
    tenant for invalidation, and ``tenant_of_key`` reads it back. The hash covers the tenant
    and a canonical JSON of every field except ``TRANSPORT_FIELDS``. Canonical means sorted
    keys, null fields dropped, integral floats written as integers, and a content list that
    contains one text part written as a plain string.
    """
    if not tenant:
        raise ValueError("tenant must not be empty")
    fields = {
        name: value
        for name, value in request.items()
        if name not in TRANSPORT_FIELDS and value is not None
    }
    if "messages" in fields:
        fields["messages"] = [_canonical_message(m) for m in fields["messages"]]
    return f"{tenant}:{_digest({'tenant': tenant, 'request': fields})}"


def tenant_of_key(key: str) -> str:
    """Return the tenant part of a key made by ``exact_key``.

    Raises InvalidCacheKeyError when the key does not end in ``:<64 hex digits>``.
    """
    tenant, separator, digest = key.rpartition(":")
    if not separator or not tenant or len(digest) != 64 or not _is_hex(digest):
        raise InvalidCacheKeyError(
            f"cache key {key[:80]!r} is not of the form <tenant>:<sha256 hex> "
            "that exact_key returns"
        )
    return tenant


def semantic_scope(request: Mapping[str, Any]) -> SemanticScope | None:
    """Split ``request`` for the semantic cache, or return None when it is not eligible.

    Eligible requests end with a user message whose content is text only, ask for one
    choice, and do not ask for log probabilities, audio or predicted output, which would
    describe one exact prompt. The last user message's text is matched by meaning; the
    rest must match exactly, so it goes into ``context_hash``.
    """
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "user":
        return None  # a tool result or an assistant prefill is pending
    prompt_text = _text_of(last.get("content"))
    if prompt_text is None or not prompt_text.strip():
        return None

    choices = request.get("n")
    if choices is not None and choices != 1:
        return None
    if request.get("logprobs") or request.get("top_logprobs"):
        return None
    modalities = request.get("modalities")
    if request.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        return None
    if request.get("prediction") is not None:
        return None

    context = {
        name: value
        for name, value in request.items()
        if name not in TRANSPORT_FIELDS and name != "messages" and value is not None
    }
    context["messages"] = [_canonical_message(m) for m in messages[:-1]]
    # The last message's other fields, such as a participant name, still change the response.
    context["last_message"] = {
        name: value for name, value in last.items() if name != "content" and value is not None
    }
    return SemanticScope(context_hash=_digest(context), prompt_text=prompt_text)


def _text_of(content: Any) -> str | None:
    """Return the text of a message content, or None when it contains anything but text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        return None
    texts = []
    for part in content:
        if not isinstance(part, Mapping) or part.get("type") not in _TEXT_PART_TYPES:
            return None  # an image, audio clip or file is not matched by meaning
        text = part.get("text")
        if not isinstance(text, str):
            return None
        texts.append(text)
    return "\n".join(texts)


def _canonical_message(message: Any) -> Any:
    if not isinstance(message, Mapping):
        return message
    canonical = {name: value for name, value in message.items() if value is not None}
    content = canonical.get("content")
    # One text part and a plain string are the same prompt.
    if (
        isinstance(content, list)
        and len(content) == 1
        and isinstance(content[0], Mapping)
        and content[0].get("type") == "text"
        and isinstance(content[0].get("text"), str)
        and set(content[0]) == {"type", "text"}
    ):
        canonical["content"] = content[0]["text"]
    return canonical


def _canonical(value: Any) -> Any:
    """Return ``value`` with integral floats as ints and mappings as plain dicts."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)  # temperature 1 and 1.0 ask for the same thing
        return value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    raise TypeError(f"request field of type {type(value).__name__} is not JSON")


def _digest(value: Any) -> str:
    payload = orjson.dumps(
        {"version": KEY_VERSION, "value": _canonical(value)},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(payload).hexdigest()


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
