"""Deterministic response text, token counts and tool-call arguments for the simulator.

Token count: every run of word characters (``\\w+``) and every other non-space
character counts as one token, so "Hello, world!" is four tokens. Prompt tokens are
counted over every text in the request's system prompt and messages (tool results
included); tool definitions and images count nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "ANSWER_PREFIX",
    "Reply",
    "count_tokens",
    "pad_answer",
    "sample_arguments",
    "split_pieces",
    "truncate",
]

ANSWER_PREFIX = "Simulated answer to: "

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\s*(?:\w+|[^\w\s])|\s+$")
_FILLER = (
    " The simulator pads this answer with plain sentences so that benchmarks see a"
    " realistic amount of text in every response."
)


@dataclass(frozen=True)
class Reply:
    """Content of a simulated response: text, or one tool call."""

    text: str
    """Response text, empty for a tool call."""
    tool_name: str | None = None
    tool_arguments: str = ""
    """Compact JSON object of the tool call's arguments."""
    finish: str = "stop"
    """"stop", "length", "stop_sequence" or "tool_calls" (mapped to each format's word)."""
    stop_sequence: str | None = None
    """The stop sequence that ended the text, when ``finish`` is "stop_sequence"."""

    @property
    def completion_tokens(self) -> int:
        """Tokens in the answer text or in the tool call's name and arguments."""
        if self.tool_name is not None:
            return count_tokens(self.tool_name) + count_tokens(self.tool_arguments)
        return count_tokens(self.text)


def count_tokens(text: str) -> int:
    """Count words and punctuation marks in ``text``."""
    return len(_TOKEN.findall(text))


def count_texts(texts: Iterable[str]) -> int:
    """Count tokens over several texts."""
    return sum(count_tokens(text) for text in texts)


def pad_answer(text: str, answer_bytes: int | None) -> str:
    """Lengthen ``text`` with filler sentences to about ``answer_bytes`` UTF-8 bytes.

    Text already that long is returned unchanged, so the prompt echo is never cut.
    """
    if not answer_bytes or len(text.encode()) >= answer_bytes:
        return text
    parts = [text]
    size = len(text.encode())
    while size < answer_bytes:
        parts.append(_FILLER)
        size += len(_FILLER)
    padded = "".join(parts)
    # Cut back to the last whole word within the target; the filler is ASCII.
    cut = padded.rfind(" ", len(text), answer_bytes + 1)
    return padded[:cut] if cut > len(text) else padded


def truncate(text: str, max_tokens: int | None, stop: Iterable[str]) -> tuple[str, str, str | None]:
    """Apply stop sequences and a token limit.

    Returns the text, the finish ("stop", "stop_sequence" or "length") and the stop
    sequence that matched.
    """
    finish, matched = "stop", None
    earliest = len(text)
    for sequence in stop:
        position = text.find(sequence) if sequence else -1
        if 0 <= position < earliest:
            earliest, matched = position, sequence
    if matched is not None:
        text, finish = text[:earliest], "stop_sequence"

    if max_tokens is not None and count_tokens(text) > max_tokens:
        pieces = split_pieces(text, 1)
        text = "".join(pieces[:max_tokens])
        finish, matched = "length", None
    return text, finish, matched


def split_pieces(text: str, tokens_per_piece: int) -> list[str]:
    """Split ``text`` into pieces of ``tokens_per_piece`` tokens that join back exactly."""
    tokens = _PIECE.findall(text)
    if tokens_per_piece <= 1:
        return tokens
    return [
        "".join(tokens[start : start + tokens_per_piece])
        for start in range(0, len(tokens), tokens_per_piece)
    ]


def split_json(arguments: str, pieces: int = 4) -> list[str]:
    """Split a JSON string into several parts, as providers stream tool arguments."""
    size = max(1, -(-len(arguments) // pieces))
    return [arguments[start : start + size] for start in range(0, len(arguments), size)]


def sample_arguments(schema: Any) -> str:
    """Return compact JSON for a tool call that fills the schema's required properties."""
    value = _sample(schema if isinstance(schema, Mapping) else {}, "value", depth=0)
    if not isinstance(value, dict):
        value = {}
    return orjson.dumps(value).decode()


def _sample(schema: Mapping[str, Any], name: str, depth: int) -> Any:
    if depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options and isinstance(options[0], Mapping):
            return _sample(options[0], name, depth + 1)

    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((item for item in kind if item != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"

    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required") or []
        return {
            key: _sample(properties.get(key) or {}, key, depth + 1)
            for key in required
            if isinstance(key, str)
        }
    if kind == "array":
        items = schema.get("items")
        count = max(1, int(schema.get("minItems") or 1))
        if isinstance(items, Mapping):
            return [_sample(items, name, depth + 1) for _ in range(count)]
        return []
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _sample_string(schema, name)


def _sample_string(schema: Mapping[str, Any], name: str) -> str:
    formats = {
        "date": "2024-01-01",
        "date-time": "2024-01-01T00:00:00Z",
        "email": "jane.doe@example.com",
        "uri": "https://example.com/",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }
    return formats.get(str(schema.get("format")), f"sample {name}")
