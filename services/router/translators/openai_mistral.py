"""Translate OpenAI Chat Completions requests to Mistral's chat API, and its responses back.

Mistral's API is OpenAI-shaped but rejects fields it does not define (HTTP 422), so the
request is rebuilt from an allowlist instead of passed through:

- ``max_completion_tokens`` is sent as ``max_tokens``, and ``seed`` as ``random_seed``.
- ``tool_choice: "required"`` is sent as ``"any"``; auto, none and a named function
  keep their OpenAI shape.
- ``developer`` messages are sent as ``system`` messages in the same place.
- Tool call ids must be nine letters or digits. Other ids are replaced by a stable
  nine-character hash, the same for a call and its result, so the pair still matches.
- ``stream_options`` is not sent, because Mistral always ends a stream with usage.
- ``user``, ``metadata``, ``store``, ``service_tier``, ``logit_bias``, ``logprobs``,
  ``top_logprobs`` and ``reasoning_effort`` have no Mistral field and are dropped.
  Audio output raises TranslationError.

Responses: ``model_length`` becomes ``length``. Content given as a list of chunks (the
reasoning models send ``thinking`` chunks) is joined into ``content``, with the thinking
text in ``reasoning_content``.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping
from typing import Any

from services.router.translators.common import TranslationError, max_output_tokens

__all__ = [
    "mistral_tool_id",
    "normalize_chunk",
    "normalize_completion",
    "to_mistral_request",
]

# Request fields Mistral's chat completions endpoint defines, sent as the client gave them.
_PASSED_FIELDS = (
    "temperature",
    "top_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "tools",
    "parallel_tool_calls",
    "prediction",
    "prompt_mode",
    "safe_prompt",
)
_TOOL_ID = re.compile(r"[A-Za-z0-9]{9}")
_ALPHABET = string.ascii_letters + string.digits
_FINISH_REASONS = {"model_length": "length", "error": "stop"}


def to_mistral_request(request: Mapping[str, Any], *, model: str, stream: bool) -> dict[str, Any]:
    """Build a Mistral chat request body from an OpenAI chat completions request."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty list")
    if request.get("audio") is not None or "audio" in (request.get("modalities") or ()):
        raise TranslationError("audio output is not supported by Mistral deployments")

    body: dict[str, Any] = {
        "model": model,
        "messages": [_message(message, position) for position, message in enumerate(messages)],
    }
    for name in _PASSED_FIELDS:
        if request.get(name) is not None:
            body[name] = request[name]

    limit = max_output_tokens(request)
    if limit is not None:
        body["max_tokens"] = limit
    if request.get("seed") is not None:
        body["random_seed"] = request["seed"]
    if request.get("response_format") is not None:
        body["response_format"] = request["response_format"]

    choice = request.get("tool_choice")
    if choice is not None:
        body["tool_choice"] = "any" if choice == "required" else choice
    if stream:
        body["stream"] = True
    return body


def _message(message: Any, position: int) -> dict[str, Any]:
    if not isinstance(message, Mapping):
        raise TranslationError(f"messages[{position}] must be an object")
    converted = dict(message)
    role = converted.get("role")
    if role == "developer":
        converted["role"] = "system"
    elif role not in ("system", "user", "assistant", "tool"):
        raise TranslationError(f"messages[{position}].role {role!r} is not supported")

    calls = converted.get("tool_calls")
    if isinstance(calls, list):
        converted["tool_calls"] = [
            {**call, "id": mistral_tool_id(call["id"])}
            if isinstance(call, Mapping) and isinstance(call.get("id"), str)
            else call
            for call in calls
        ]
    if role == "tool" and isinstance(converted.get("tool_call_id"), str):
        converted["tool_call_id"] = mistral_tool_id(converted["tool_call_id"])
    # Mistral rejects OpenAI's assistant-only fields it does not define.
    converted.pop("refusal", None)
    converted.pop("audio", None)
    return converted


def mistral_tool_id(call_id: str) -> str:
    """Return ``call_id`` when Mistral accepts it, else a stable nine-character replacement."""
    if _TOOL_ID.fullmatch(call_id):
        return call_id
    digest = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    letters = []
    for _ in range(9):
        digest, index = divmod(digest, len(_ALPHABET))
        letters.append(_ALPHABET[index])
    return "".join(letters)


def normalize_completion(answer: dict[str, Any]) -> dict[str, Any]:
    """Turn a Mistral completion into OpenAI's shape, in place, and return it."""
    for choice in answer.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        choice["finish_reason"] = _finish_reason(choice.get("finish_reason"))
        message = choice.get("message")
        if isinstance(message, dict):
            _flatten_content(message)
    return answer


def normalize_chunk(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn one Mistral stream chunk into OpenAI chunks.

    Mistral puts the usage on the chunk with the finish reason. It is split off into a
    chunk of its own with empty ``choices``, as OpenAI sends it.
    """
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        choice["finish_reason"] = _finish_reason(choice.get("finish_reason"))
        delta = choice.get("delta")
        if isinstance(delta, dict):
            _flatten_content(delta)
    usage = chunk.pop("usage", None)
    chunks = [chunk] if chunk.get("choices") or usage is None else []
    if isinstance(usage, dict):
        chunks.append({**chunk, "choices": [], "usage": usage})
    return chunks


def _finish_reason(reason: Any) -> Any:
    return _FINISH_REASONS.get(reason, reason) if isinstance(reason, str) else reason


def _flatten_content(message: dict[str, Any]) -> None:
    content = message.get("content")
    if not isinstance(content, list):
        return
    texts: list[str] = []
    thoughts: list[str] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "thinking":
            for inner in part.get("thinking") or ():
                if isinstance(inner, Mapping) and isinstance(inner.get("text"), str):
                    thoughts.append(inner["text"])
    message["content"] = "".join(texts)
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
