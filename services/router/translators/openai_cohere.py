"""Translate OpenAI Chat Completions requests to Cohere's Chat API v2, and the responses back.

Request mapping, OpenAI to ``POST /v2/chat``:

- Messages keep their order and roles; ``developer`` messages are sent as ``system``
  messages in the same place. Text and ``image_url`` parts keep OpenAI's shape, which
  Cohere's vision models accept.
- Assistant ``tool_calls`` keep OpenAI's shape. Text sent with tool calls goes in
  ``tool_plan``, the field where Cohere's own models put their text before a call.
  ``tool`` messages keep their ``tool_call_id``.
- ``tools`` keep OpenAI's shape. ``tool_choice`` required becomes ``REQUIRED`` and none
  ``NONE``. A named function becomes ``REQUIRED`` with only that tool sent, because
  Cohere cannot name one.
- ``max_completion_tokens`` or ``max_tokens`` (max_tokens), ``stop``
  (stop_sequences), ``temperature``, ``top_p`` (p), ``seed``, ``frequency_penalty``,
  ``presence_penalty``, and ``response_format`` (``json_object``, with ``json_schema``
  when a schema is given).
- ``parallel_tool_calls``, ``logprobs``, ``top_logprobs``, ``logit_bias``, ``user``,
  ``metadata`` and ``store`` have no Cohere field and are dropped; ``n`` above 1 and
  audio output raise TranslationError.

Responses: text content becomes ``content``, thinking content ``reasoning_content``,
and ``tool_plan`` becomes ``content`` when the message has no text. Finish reasons
COMPLETE and STOP_SEQUENCE become ``stop``, MAX_TOKENS ``length`` and TOOL_CALL
``tool_calls``. Usage counts are the billed units, because those are what Cohere
charges for. The raw ``tokens`` counts include Cohere's prompt template and are used
only when billed units are absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.router.translators.common import (
    ChunkBuilder,
    TranslationError,
    completion,
    count,
    max_output_tokens,
    merge_usage,
    reject_multiple_choices,
    stop_sequences,
    text_of,
    tool_call_arguments,
    tool_names_by_id,
    user_parts,
)

__all__ = [
    "FAILED_FINISH_REASONS",
    "CohereStreamTranslator",
    "map_finish_reason",
    "to_cohere_request",
    "to_openai_completion",
    "to_openai_usage",
]

_FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
FAILED_FINISH_REASONS = frozenset({"ERROR", "ERROR_TOXIC", "ERROR_LIMIT", "TIMEOUT"})
"""Finish reasons with which Cohere reports that generation failed."""


def to_cohere_request(request: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """Build a Cohere ``/v2/chat`` body from an OpenAI chat completions request."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty list")
    reject_multiple_choices(request, "Cohere")

    known_ids = set(tool_names_by_id(messages))
    converted = [_message(message, position, known_ids) for position, message in enumerate(messages)]
    body: dict[str, Any] = {"model": model, "messages": converted}

    for source, target in (
        ("temperature", "temperature"),
        ("top_p", "p"),
        ("seed", "seed"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
    ):
        if request.get(source) is not None:
            body[target] = request[source]
    limit = max_output_tokens(request)
    if limit is not None:
        body["max_tokens"] = limit
    stop = stop_sequences(request)
    if stop:
        body["stop_sequences"] = stop

    response_format = request.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        definition = response_format.get("json_schema")
        schema = definition.get("schema") if isinstance(definition, Mapping) else None
        body["response_format"] = {"type": "json_object"}
        if isinstance(schema, Mapping):
            body["response_format"]["json_schema"] = schema
    elif kind not in (None, "text"):
        raise TranslationError(f"response_format {kind!r} is not supported")

    _add_tools(request, body)
    if request.get("stream"):
        body["stream"] = True
    return body


def _message(message: Any, position: int, known_ids: set[str]) -> dict[str, Any]:
    where = f"messages[{position}]"
    if not isinstance(message, Mapping):
        raise TranslationError(f"{where} must be an object")
    role = message.get("role")
    content = message.get("content")

    if role in ("system", "developer"):
        return {"role": "system", "content": text_of(content, where)}
    if role == "user":
        return {"role": "user", "content": _user_content(content, where)}
    if role == "assistant":
        return _assistant(message, where)
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or call_id not in known_ids:
            raise TranslationError(f"{where}.tool_call_id {call_id!r} matches no earlier assistant tool call")
        return {"role": "tool", "tool_call_id": call_id, "content": text_of(content, where)}
    raise TranslationError(f"{where}.role {role!r} is not supported")


def _user_content(content: Any, where: str) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[dict[str, Any]] = []
    # Text is sent as given, without a type check, and a missing text as "".
    for part in user_parts(content, where, check_text=False):
        if part.kind == "text":
            parts.append({"type": "text", "text": part.value or ""})
        elif part.kind == "image_url":
            image = part.part.get("image_url")
            entry: dict[str, Any] = {"url": part.value}
            if isinstance(image, Mapping) and image.get("detail"):
                entry["detail"] = image["detail"]
            parts.append({"type": "image_url", "image_url": entry})
        else:
            raise TranslationError(f"{part.where}.type {part.kind!r} is not supported by Cohere deployments")
    return parts


def _assistant(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    text = text_of(message.get("content"), where)
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError(f"{where}.tool_calls must be a list")
    if not calls:
        return {"role": "assistant", "content": text}

    converted: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        # Parsing checks the arguments; the client's own JSON text is what gets sent.
        call_id, name, parsed = tool_call_arguments(call, f"{where}.tool_calls[{index}]")
        raw = call["function"].get("arguments")
        arguments = raw if isinstance(raw, str) and raw else orjson.dumps(parsed).decode()
        converted.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
    result: dict[str, Any] = {"role": "assistant", "tool_calls": converted}
    if text:
        result["tool_plan"] = text
    return result


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
            or not isinstance(function.get("name"), str)
        ):
            raise TranslationError(f"tools[{index}] must be a function tool with a name")
        entry: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            entry["description"] = function["description"]
        entry["parameters"] = function.get("parameters") or {"type": "object", "properties": {}}
        converted.append({"type": "function", "function": entry})

    choice = request.get("tool_choice")
    if choice == "required":
        body["tool_choice"] = "REQUIRED"
    elif choice == "none":
        body["tool_choice"] = "NONE"
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        chosen = [tool for tool in converted if tool["function"]["name"] == name]
        if not chosen:
            raise TranslationError(f"tool_choice names {name!r}, which is not in tools")
        converted = chosen
        body["tool_choice"] = "REQUIRED"
    elif choice not in (None, "auto"):
        raise TranslationError(f"tool_choice {choice!r} is not supported")
    body["tools"] = converted


def map_finish_reason(reason: str | None) -> str | None:
    """Map a Cohere ``finish_reason`` to an OpenAI ``finish_reason``."""
    if reason is None:
        return None
    return _FINISH_REASONS.get(reason, "stop")


def to_openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Convert Cohere usage to OpenAI's shape, preferring the billed units."""
    billed = usage.get("billed_units")
    tokens = usage.get("tokens")
    source = billed if isinstance(billed, Mapping) and billed else tokens
    source = source if isinstance(source, Mapping) else {}
    prompt = count(source.get("input_tokens"))
    completion_tokens = count(source.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": count(usage.get("cached_tokens"))},
    }


def to_openai_completion(response: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """Convert a Cohere ``/v2/chat`` response to an OpenAI ``chat.completion``."""
    message = response.get("message") or {}
    texts: list[str] = []
    thoughts: list[str] = []
    for part in message.get("content") or ():
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "thinking" and isinstance(part.get("thinking"), str):
            thoughts.append(part["thinking"])
    text = "".join(texts)
    if not text and isinstance(message.get("tool_plan"), str):
        text = message["tool_plan"]

    calls = [
        {
            "id": call.get("id"),
            "type": "function",
            "function": {
                "name": (call.get("function") or {}).get("name"),
                "arguments": (call.get("function") or {}).get("arguments") or "{}",
            },
        }
        for call in message.get("tool_calls") or ()
        if isinstance(call, Mapping)
    ]
    return completion(
        completion_id=str(response.get("id") or ""),
        model=model,
        text=text,
        tool_calls=calls,
        finish_reason=map_finish_reason(response.get("finish_reason")),
        usage=to_openai_usage(response.get("usage") or {}),
        reasoning="".join(thoughts) or None,
    )


class CohereStreamTranslator:
    """Turn Cohere v2 stream events into OpenAI ``chat.completion.chunk`` dicts.

    Feed each event's parsed data to :meth:`translate` in order. Tool-call argument
    pieces from ``tool-call-delta`` pass through unchanged, so they join to exactly the
    JSON Cohere sent. ``message-end`` yields the finish chunk and a last chunk with
    empty ``choices`` and the usage.
    """

    def __init__(self, *, model: str) -> None:
        self._chunks = ChunkBuilder(model=model)
        self.finished = False
        """Whether ``message-end`` arrived."""
        self.failed_reason: str | None = None
        """Cohere's finish reason when it reported a failed generation."""
        self.usage: dict[str, Any] = {}
        self._tool_count = 0
        self._tool_index: dict[int, int] = {}

    def translate(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Return the chunks for one event."""
        kind = event.get("type")
        delta = event.get("delta") if isinstance(event.get("delta"), Mapping) else {}
        message = delta.get("message") if isinstance(delta.get("message"), Mapping) else {}

        if kind == "message-start":
            if isinstance(event.get("id"), str):
                self._chunks.completion_id = event["id"]
            return [self._chunks.chunk({"role": "assistant", "content": ""})]
        if kind == "content-delta":
            content = message.get("content") if isinstance(message.get("content"), Mapping) else {}
            if isinstance(content.get("thinking"), str) and content["thinking"]:
                return [self._chunks.chunk({"reasoning_content": content["thinking"]})]
            text = content.get("text")
            return [self._chunks.chunk({"content": text})] if isinstance(text, str) and text else []
        if kind == "tool-plan-delta":
            plan = message.get("tool_plan")
            return [self._chunks.chunk({"content": plan})] if isinstance(plan, str) and plan else []
        if kind == "tool-call-start":
            return self._call_start(event, message)
        if kind == "tool-call-delta":
            return self._call_delta(event, message)
        if kind == "message-end":
            return self._end(delta)
        return []

    def _call_start(self, event: Mapping[str, Any], message: Mapping[str, Any]) -> list[dict[str, Any]]:
        call = message.get("tool_calls") if isinstance(message.get("tool_calls"), Mapping) else {}
        function = call.get("function") if isinstance(call.get("function"), Mapping) else {}
        index = self._tool_count
        self._tool_count += 1
        self._tool_index[event.get("index", index)] = index
        entry = {
            "index": index,
            "id": call.get("id"),
            "type": "function",
            "function": {"name": function.get("name"), "arguments": function.get("arguments") or ""},
        }
        return [self._chunks.chunk({"tool_calls": [entry]})]

    def _call_delta(self, event: Mapping[str, Any], message: Mapping[str, Any]) -> list[dict[str, Any]]:
        call = message.get("tool_calls") if isinstance(message.get("tool_calls"), Mapping) else {}
        function = call.get("function") if isinstance(call.get("function"), Mapping) else {}
        piece = function.get("arguments")
        index = self._tool_index.get(event.get("index", self._tool_count - 1), self._tool_count - 1)
        if not isinstance(piece, str) or not piece or index < 0:
            return []
        return [self._chunks.chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})]

    def _end(self, delta: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.finished = True
        merge_usage(self.usage, delta.get("usage") if isinstance(delta.get("usage"), Mapping) else None)
        reason = delta.get("finish_reason")
        if reason in FAILED_FINISH_REASONS:
            self.failed_reason = reason
            return []
        return [
            self._chunks.chunk({}, finish_reason=map_finish_reason(reason) or "stop"),
            self._chunks.usage_chunk(to_openai_usage(self.usage)),
        ]
