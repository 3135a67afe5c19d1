"""Pieces shared by the translators from OpenAI Chat Completions to other wire formats.

Each translator reads the same OpenAI request fields (message texts, data URLs, tool
call arguments, stop sequences, output limits) and builds the same OpenAI response
shapes, so those steps live here and behave the same for every provider.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import orjson

__all__ = [
    "ChunkBuilder",
    "TranslationError",
    "UserPart",
    "append_turn",
    "completion",
    "count",
    "max_output_tokens",
    "merge_usage",
    "parse_data_url",
    "reject_multiple_choices",
    "stop_sequences",
    "text_of",
    "tool_call_arguments",
    "tool_names_by_id",
    "user_parts",
]

_DATA_URL = re.compile(r"data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL)


class TranslationError(ValueError):
    """The OpenAI request uses something the target wire format cannot express."""


class UserPart(NamedTuple):
    """One part of an OpenAI user message's content list, as ``user_parts`` yields it."""

    where: str
    """Field path for error messages, such as ``messages[2].content[0]``."""
    kind: Any
    """The part's ``type``, or None when the part is not an object."""
    value: Any
    """The text of a ``text`` part, the URL of an ``image_url`` part, else None."""
    part: Any
    """The part as the request gave it."""


def user_parts(content: Any, where: str, *, check_text: bool = True) -> Iterator[UserPart]:
    """Yield the parts of a list ``content`` of the message at ``where``.

    Raises TranslationError when ``content`` is not a list, when an ``image_url`` part
    has no URL string and, with ``check_text``, when a ``text`` part's text is not a
    string. Without ``check_text`` a text part's value is its ``text`` field as given.
    Parts of other types are yielded unchecked for the caller to convert or reject.
    """
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content must be a string or a list")
    for index, part in enumerate(content):
        spot = f"{where}.content[{index}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        value = None
        if kind == "text":
            value = part.get("text")
            if check_text and not isinstance(value, str):
                raise TranslationError(f"{spot}.text must be a string")
        elif kind == "image_url":
            image = part.get("image_url")
            value = image.get("url") if isinstance(image, Mapping) else image
            if not isinstance(value, str) or not value:
                raise TranslationError(f"{spot}.image_url.url must be a string")
        yield UserPart(spot, kind, value, part)


def append_turn(turns: list[dict[str, Any]], role: str, items: list[Any], *, key: str = "content") -> None:
    """Add ``items`` to the last turn when it has ``role``, else start a new turn.

    Anthropic, Bedrock and Gemini expect user and model turns to alternate, so
    consecutive messages of one role share a turn. ``key`` names the turn's list field
    (``content``, or ``parts`` for Gemini). Empty ``items`` add nothing.
    """
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: list(items)})


def text_of(content: Any, where: str) -> str:
    """Join the text of a string content or of a list of ``text`` and ``refusal`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content must be a string or a list")
    texts: list[str] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        else:
            raise TranslationError(f"{where}.content[{index}] must be a text part")
    return "".join(texts)


def parse_data_url(url: str, where: str) -> tuple[str, str]:
    """Split a base64 data URL into its media type and data; ``image/jpg`` becomes ``image/jpeg``."""
    match = _DATA_URL.fullmatch(url)
    if match is None or ";base64" not in match.group("params").lower():
        raise TranslationError(f"{where}: data URL must be base64 encoded")
    media_type = match.group("type").strip().lower()
    if media_type == "image/jpg":
        media_type = "image/jpeg"
    return media_type, match.group("data")


def tool_call_arguments(call: Any, where: str) -> tuple[str, str, dict[str, Any]]:
    """Return the id, function name and parsed JSON arguments of an assistant tool call."""
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(call.get("id"), str):
        raise TranslationError(f"{where} must have an id and a function")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{where}.function.name is missing")
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        raise TranslationError(f"{where}.function.arguments is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise TranslationError(f"{where}.function.arguments must be a JSON object")
    return call["id"], name, parsed


def tool_names_by_id(messages: list[Any]) -> dict[str, str]:
    """Map each assistant tool call id in ``messages`` to its function name."""
    names: dict[str, str] = {}
    for message in messages:
        if not isinstance(message, Mapping) or message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping) and isinstance(call.get("id"), str):
                names[call["id"]] = str(function.get("name") or "")
    return names


def stop_sequences(request: Mapping[str, Any]) -> list[str]:
    """Return ``stop`` as a list of strings (empty when absent)."""
    stop = request.get("stop")
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [str(sequence) for sequence in stop]
    return []


def max_output_tokens(request: Mapping[str, Any]) -> int | None:
    """Return ``max_completion_tokens``, else ``max_tokens``, else None."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TranslationError(f"{name} must be a positive integer, got {value!r}")
            return value
    return None


def reject_multiple_choices(request: Mapping[str, Any], provider: str) -> None:
    """Raise TranslationError for ``n`` above 1 and for audio output."""
    choices = request.get("n")
    if choices is not None and choices != 1:
        raise TranslationError(f"n must be 1 for {provider} deployments")
    if request.get("audio") is not None or "audio" in (request.get("modalities") or ()):
        raise TranslationError(f"audio output is not supported by {provider} deployments")


def count(value: Any) -> int:
    """Return a token count as a non-negative int; anything else counts 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def merge_usage(current: dict[str, Any], update: Mapping[str, Any] | None) -> dict[str, Any]:
    """Overlay provider usage counts: later values win, absent or null ones keep the old.

    Nested mappings (such as Cohere's ``billed_units``) merge the same way, key by key.
    """
    if update:
        for key, value in update.items():
            if value is None:
                continue
            if isinstance(value, Mapping):
                inner = current.get(key)
                current[key] = merge_usage(dict(inner) if isinstance(inner, dict) else {}, value)
            else:
                current[key] = value
    return current


def completion(
    *,
    completion_id: str,
    model: str,
    text: str | None,
    tool_calls: list[dict[str, Any]],
    finish_reason: str | None,
    usage: dict[str, Any],
    reasoning: str | None = None,
) -> dict[str, Any]:
    """Build an OpenAI ``chat.completion`` with one choice."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        # The field name DeepSeek, vLLM and OpenRouter use for reasoning text.
        message["reasoning_content"] = reasoning
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage,
    }


class ChunkBuilder:
    """Build OpenAI ``chat.completion.chunk`` dicts with one stream's id, model and time."""

    def __init__(self, completion_id: str = "", model: str = "") -> None:
        self.completion_id = completion_id
        self.model = model
        self.created = int(time.time())

    def chunk(self, delta: dict[str, Any], *, finish_reason: str | None = None) -> dict[str, Any]:
        """Return a chunk with one choice that carries ``delta``."""
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        """Return the last chunk: empty ``choices`` and the usage, as OpenAI sends it."""
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }
