"""Translate OpenAI Chat Completions requests to Anthropic Messages, and the responses back.

Request mapping, OpenAI to Anthropic:

- ``system`` and ``developer`` messages, wherever they stand, become the ``system``
  text blocks in their original order.
- ``image_url`` parts become ``image`` blocks (an https URL as a URL source, a data URL
  as a base64 source; ``image/jpg`` is sent as ``image/jpeg``); a PDF data URL in a
  ``file`` part becomes a ``document`` block.
- ``tool_calls`` become ``tool_use`` blocks and ``tool`` messages ``tool_result`` blocks
  with the same id; consecutive results, and a user message after them, share one user
  turn because Anthropic wants results first in the turn after the call.
- ``tools``, ``tool_choice`` (auto, none, required as any, a named function as tool),
  ``parallel_tool_calls``, ``stop``, ``temperature``, ``top_p``, ``user`` and
  ``max_tokens`` / ``max_completion_tokens`` (Anthropic requires one, so a default is
  sent when absent).
- Sampling fields Anthropic lacks (``frequency_penalty``, ``presence_penalty``, ``seed``,
  ``logit_bias``, ``logprobs``, ``top_logprobs``) are dropped; ``n`` above 1, audio
  input and JSON response formats raise TranslationError.

Answers map ``end_turn``/``stop_sequence`` to ``stop``, ``max_tokens`` to ``length`` and
``tool_use`` to ``tool_calls``. Usage maps ``input_tokens`` plus cache reads and writes to
``prompt_tokens`` (OpenAI counts cached tokens inside prompt tokens) and cache reads to
``prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from services.router.translators.common import TranslationError, append_turn, parse_data_url, user_parts

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicStreamTranslator",
    "TranslationError",
    "anthropic_error_status",
    "map_stop_reason",
    "merge_usage",
    "to_anthropic_request",
    "to_openai_completion",
    "to_openai_usage",
]

DEFAULT_MAX_TOKENS = 4096
"""Sent when the client set no limit; every Claude model since Claude 3 accepts it."""

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# HTTP statuses Anthropic documents for each error type, for errors sent inside a stream.
_ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_ID_INVALID = re.compile(r"[^A-Za-z0-9_-]")
_DROPPED_FIELDS = (
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "logit_bias",
    "logprobs",
    "top_logprobs",
)


def to_anthropic_request(
    request: Mapping[str, Any], *, model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """Build an Anthropic Messages request body from an OpenAI chat completions request."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty list")
    _reject_unsupported(request)

    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    known_tool_ids: set[str] = set()

    for position, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TranslationError(f"messages[{position}] must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), position))
        elif role == "user":
            append_turn(turns, "user", _user_blocks(message.get("content"), position))
        elif role == "assistant":
            blocks = _assistant_blocks(message, position)
            known_tool_ids.update(block["id"] for block in blocks if block["type"] == "tool_use")
            append_turn(turns, "assistant", blocks)
        elif role == "tool":
            block = _tool_result_block(message, position)
            if block["tool_use_id"] not in known_tool_ids:
                raise TranslationError(
                    f"messages[{position}].tool_call_id {message.get('tool_call_id')!r} "
                    "matches no earlier assistant tool call"
                )
            append_turn(turns, "user", [block])
        else:
            raise TranslationError(f"messages[{position}].role {role!r} is not supported")

    if not turns:
        raise TranslationError("messages must contain at least one user or assistant message")

    body: dict[str, Any] = {
        "model": model,
        "max_tokens": _max_tokens(request, default_max_tokens),
        "messages": [_compact_turn(turn) for turn in turns],
    }
    if system:
        body["system"] = system

    stop = request.get("stop")
    if isinstance(stop, str):
        body["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        body["stop_sequences"] = [str(sequence) for sequence in stop]

    for name in ("temperature", "top_p"):
        if request.get(name) is not None:
            body[name] = request[name]
    if request.get("stream"):
        body["stream"] = True
    if isinstance(request.get("user"), str):
        body["metadata"] = {"user_id": request["user"]}

    _add_tools(request, body)
    return body


def _reject_unsupported(request: Mapping[str, Any]) -> None:
    choices = request.get("n")
    if choices is not None and choices != 1:
        raise TranslationError("n must be 1 for Anthropic deployments")
    response_format = request.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") not in (None, "text"):
        raise TranslationError(
            f"response_format {response_format.get('type')!r} is not supported "
            "by Anthropic deployments"
        )
    if request.get("audio") is not None or "audio" in (request.get("modalities") or ()):
        raise TranslationError("audio output is not supported by Anthropic deployments")


def _max_tokens(request: Mapping[str, Any], default: int) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TranslationError(f"{name} must be a positive integer, got {value!r}")
            return value
    return default


def _text_blocks(content: Any, position: int) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(f"messages[{position}].content must be a string or a list")
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping) or part.get("type") not in ("text", "refusal"):
            raise TranslationError(f"messages[{position}].content may contain only text parts")
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if isinstance(text, str) and text:
            blocks.append({"type": "text", "text": text})
    return blocks


def _user_blocks(content: Any, position: int) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_blocks(content, position)

    blocks: list[dict[str, Any]] = []
    for part in user_parts(content, f"messages[{position}]"):
        where = part.where
        if not isinstance(part.part, Mapping):
            raise TranslationError(f"{where} must be an object")
        if part.kind == "text":
            if part.value:
                blocks.append({"type": "text", "text": part.value})
        elif part.kind == "image_url":
            blocks.append(_image_block(part.value, where))
        elif part.kind == "file":
            blocks.append(_document_block(part.part.get("file"), where))
        else:
            raise TranslationError(
                f"{where}.type {part.kind!r} is not supported by Anthropic deployments"
            )
    return blocks


def _image_block(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, data = parse_data_url(url, where)
        if media_type not in _IMAGE_TYPES:
            raise TranslationError(
                f"{where}: image type {media_type!r} is not supported; "
                f"use one of {sorted(_IMAGE_TYPES)}"
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError(f"{where}: image URL must be an http(s) URL or a data URL")


def _document_block(file: Any, where: str) -> dict[str, Any]:
    data_url = file.get("file_data") if isinstance(file, Mapping) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise TranslationError(f"{where}: only files given inline as a data URL are supported")
    media_type, data = parse_data_url(data_url, where)
    if media_type != "application/pdf":
        raise TranslationError(f"{where}: file type {media_type!r} is not supported; use a PDF")
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }


def _assistant_blocks(message: Mapping[str, Any], position: int) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"), position)
    if message.get("function_call") is not None:
        raise TranslationError(f"messages[{position}].function_call is deprecated; use tool_calls")

    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise TranslationError(f"messages[{position}].tool_calls must be a list")
    for index, call in enumerate(tool_calls):
        where = f"messages[{position}].tool_calls[{index}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(call.get("id"), str):
            raise TranslationError(f"{where} must have an id and a function")
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise TranslationError(f"{where}.function.arguments is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise TranslationError(f"{where}.function.arguments must be a JSON object")
        blocks.append(
            {
                "type": "tool_use",
                "id": _tool_id(call["id"]),
                "name": function.get("name"),
                "input": parsed,
            }
        )
    return blocks


def _tool_result_block(message: Mapping[str, Any], position: int) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"messages[{position}].tool_call_id is missing")
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(call_id)}
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        text_blocks = _text_blocks(content, position)
        if text_blocks:
            block["content"] = text_blocks
    return block


def _tool_id(call_id: str) -> str:
    # Anthropic accepts only [A-Za-z0-9_-] in tool ids; the same mapping is applied to
    # calls and results, so their ids still match.
    return _TOOL_ID_INVALID.sub("_", call_id)


def _compact_turn(turn: dict[str, Any]) -> dict[str, Any]:
    content = turn["content"]
    if len(content) == 1 and content[0]["type"] == "text":
        return {"role": turn["role"], "content": content[0]["text"]}
    return turn


def _add_tools(request: Mapping[str, Any], body: dict[str, Any]) -> None:
    tools = request.get("tools")
    if not tools:
        return
    if not isinstance(tools, list):
        raise TranslationError("tools must be a list")

    converted: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if (
            not isinstance(tool, Mapping)
            or tool.get("type") != "function"
            or not isinstance(function, Mapping)
        ):
            raise TranslationError(f"tools[{index}] must be a function tool")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError(f"tools[{index}].function.name is missing")
        entry: dict[str, Any] = {
            "name": name,
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        converted.append(entry)
    body["tools"] = converted

    choice = _tool_choice(request.get("tool_choice"))
    if request.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None:
        body["tool_choice"] = choice


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise TranslationError(f"tool_choice {choice!r} is not supported")


def map_stop_reason(reason: str | None) -> str | None:
    """Map an Anthropic ``stop_reason`` to an OpenAI ``finish_reason``."""
    if reason is None:
        return None
    return _STOP_REASONS.get(reason, "stop")


def anthropic_error_status(error_type: str | None) -> int:
    """Return the HTTP status Anthropic uses for an error type (500 when unknown)."""
    return _ERROR_STATUSES.get(error_type or "", 500)


def merge_usage(current: dict[str, Any], update: Mapping[str, Any] | None) -> dict[str, Any]:
    """Overlay Anthropic usage counts: later values win, absent or null ones keep the old."""
    if update:
        for key, value in update.items():
            if value is not None:
                current[key] = value
    return current


def to_openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Convert Anthropic usage to OpenAI's shape."""
    # NOTE: cache writes are billed at a premium by Anthropic but are counted here as
    # plain prompt tokens, because OpenAI's usage shape has no field for them.
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    prompt = _count(usage.get("input_tokens")) + cache_read + cache_write
    completion = _count(usage.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def to_openai_completion(message: Mapping[str, Any]) -> dict[str, Any]:
    """Convert an Anthropic Messages response to an OpenAI ``chat.completion``."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        # Thinking blocks are not part of OpenAI's message shape and are left out.

    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls

    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": map_stop_reason(message.get("stop_reason")),
                "logprobs": None,
            }
        ],
        "usage": to_openai_usage(message.get("usage") or {}),
    }


class AnthropicStreamTranslator:
    """Turn Anthropic stream events into OpenAI ``chat.completion.chunk`` dicts.

    Feed each event's parsed data to :meth:`translate` in order. Tool-call argument
    chunks carry Anthropic's ``partial_json`` pieces unchanged, so they concatenate to
    exactly the JSON the provider sent. ``message_stop`` yields a last chunk with empty
    ``choices`` and the merged usage, as OpenAI does with ``include_usage``.
    """

    def __init__(self) -> None:
        self.message_id = ""
        self.model = ""
        self.created = int(time.time())
        self.finished = False
        """Whether ``message_stop`` arrived."""
        self.usage: dict[str, Any] = {}
        """Anthropic usage merged from ``message_start`` and ``message_delta``."""
        self._tool_index: dict[int, int] = {}
        self._tool_inputs: dict[int, Any] = {}
        self._tool_sent_arguments: set[int] = set()

    def translate(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Return the chunks for one event (often none, as for ``ping``)."""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.message_id = message.get("id") or self.message_id
            self.model = message.get("model") or self.model
            merge_usage(self.usage, message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "content_block_stop":
            return self._block_stop(event)
        if kind == "message_delta":
            merge_usage(self.usage, event.get("usage"))
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason is None:
                return []
            return [self._chunk({}, finish_reason=map_stop_reason(reason))]
        if kind == "message_stop":
            self.finished = True
            if not self.usage:
                return []
            chunk = self._chunk(None)
            chunk["usage"] = to_openai_usage(self.usage)
            return [chunk]
        return []

    def _block_start(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        block = event.get("content_block") or {}
        index = event.get("index", 0)
        if block.get("type") == "tool_use":
            tool_index = len(self._tool_index)
            self._tool_index[index] = tool_index
            self._tool_inputs[index] = block.get("input")
            call = {
                "index": tool_index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _block_delta(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind == "input_json_delta":
            index = event.get("index", 0)
            piece = delta.get("partial_json")
            if not piece or index not in self._tool_index:
                return []
            self._tool_sent_arguments.add(index)
            call = {"index": self._tool_index[index], "function": {"arguments": piece}}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _block_stop(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        index = event.get("index", 0)
        if index not in self._tool_index or index in self._tool_sent_arguments:
            return []
        # A tool without parameters streams no JSON at all; OpenAI clients expect an object.
        self._tool_sent_arguments.add(index)
        arguments = orjson.dumps(self._tool_inputs.get(index) or {}).decode()
        call = {"index": self._tool_index[index], "function": {"arguments": arguments}}
        return [self._chunk({"tool_calls": [call]})]

    def _chunk(
        self, delta: dict[str, Any] | None, *, finish_reason: str | None = None
    ) -> dict[str, Any]:
        choices = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        )
        return {
            "id": self.message_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
