"""Serve Anthropic's Messages API: Anthropic requests in, OpenAI-shaped requests to the
pipeline, and OpenAI-shaped answers back out as Anthropic JSON or SSE events.

This is the inbound direction; ``openai_anthropic`` is the outbound one, toward
Anthropic deployments.

Request mapping, Anthropic to OpenAI:

- ``system`` (a string or text blocks) becomes one leading ``system`` message.
- ``text`` blocks become text parts, ``image`` blocks ``image_url`` parts (base64 as a
  data URL), base64 PDF ``document`` blocks ``file`` parts.
- An assistant turn's ``tool_use`` blocks become ``tool_calls``; a user turn's
  ``tool_result`` blocks become ``tool`` messages placed before the rest of that turn.
  ``thinking`` and ``redacted_thinking`` blocks are dropped.
- ``max_tokens``, ``stop_sequences`` (as ``stop``), ``temperature``, ``top_p``,
  ``tools`` (``input_schema`` as ``parameters``), ``tool_choice`` (auto, any as
  required, tool as a named function, none), ``metadata.user_id`` (as ``user``) and
  ``stream``. ``top_k``, ``thinking`` and ``service_tier`` have no OpenAI field and are
  dropped. The gateway's routing keys in ``metadata`` (``aigw_provider``,
  ``aigw_deployment``, ``aigw_max_price_usd``) are passed on as OpenAI ``metadata``.

Answers map ``stop`` to ``end_turn``, ``length`` to ``max_tokens``, ``tool_calls`` to
``tool_use`` and ``content_filter`` to ``refusal``. OpenAI's ``prompt_tokens`` include
cached tokens, so ``input_tokens`` is prompt tokens minus ``cached_tokens``, which go to
``cache_read_input_tokens``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from libs.errors import GatewayError, InvalidRequestError

__all__ = [
    "AnthropicStreamWriter",
    "anthropic_error_body",
    "anthropic_error_type",
    "to_anthropic_message",
    "to_openai_request",
]

_ROUTE_KEYS = ("aigw_provider", "aigw_deployment", "aigw_max_price_usd")
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Anthropic's error type for each HTTP status the gateway returns.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def _invalid(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, reason="INVALID_REQUEST", param=param, openai_code="invalid_request")


def _require(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], expected: str) -> Any:
    value = body.get(name)
    if value is None:
        raise _invalid(name, f"{name}: Field required")
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _invalid(name, f"{name}: expected {expected}, got a boolean")
    if not isinstance(value, kind):
        raise _invalid(name, f"{name}: expected {expected}")
    return value


def to_openai_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """Translate an Anthropic Messages request into an OpenAI Chat Completions request.

    Raises InvalidRequestError naming the field for a request Anthropic would reject.
    """
    model = _require(body, "model", str, "a string")
    max_tokens = _require(body, "max_tokens", int, "an integer")
    if max_tokens < 1:
        raise _invalid("max_tokens", f"max_tokens: must be at least 1, got {max_tokens}")
    messages = _require(body, "messages", list, "an array of messages")

    request: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    openai_messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        openai_messages.append({"role": "system", "content": _system_text(system)})
    for index, message in enumerate(messages):
        openai_messages.extend(_message(message, index))
    request["messages"] = openai_messages

    stream = body.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise _invalid("stream", "stream: expected a boolean")
        request["stream"] = stream
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _invalid(name, f"{name}: expected a number")
            request[name] = value
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
            raise _invalid("stop_sequences", "stop_sequences: expected an array of strings")
        if stop:
            request["stop"] = stop
    _add_metadata(body.get("metadata"), request)
    _add_tools(body, request)
    return request


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        texts = []
        for index, block in enumerate(system):
            if not isinstance(block, Mapping) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise _invalid(f"system.{index}", f"system.{index}: expected a text block")
            texts.append(block["text"])
        return "\n\n".join(texts)
    raise _invalid("system", "system: expected a string or an array of text blocks")


def _message(message: Any, index: int) -> list[dict[str, Any]]:
    where = f"messages.{index}"
    if not isinstance(message, Mapping):
        raise _invalid(where, f"{where}: expected an object")
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise _invalid(f"{where}.role", f"{where}.role: expected 'user' or 'assistant', got {role!r}")
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _invalid(f"{where}.content", f"{where}.content: expected a string or an array of content blocks")
    if role == "assistant":
        return [_assistant_message(content, where)]
    return _user_messages(content, where)


def _assistant_message(blocks: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        spot = f"{where}.content.{index}"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            texts.append(_block_text(block, spot))
        elif kind == "tool_use":
            name = block.get("name")
            if not isinstance(name, str) or not isinstance(block.get("id"), str):
                raise _invalid(spot, f"{spot}: a tool_use block needs a string id and name")
            tool_calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(block.get("input") or {})},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _invalid(f"{spot}.type", f"{spot}.type: {kind!r} is not supported in an assistant turn")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _user_messages(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        spot = f"{where}.content.{index}"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            parts.append({"type": "text", "text": _block_text(block, spot)})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _source_url(block, spot)}})
        elif kind == "document":
            url = _source_url(block, spot)
            if not url.startswith("data:application/pdf"):
                raise _invalid(f"{spot}.source", f"{spot}.source: only base64 PDF documents are supported")
            parts.append({"type": "file", "file": {"file_data": url, "filename": block.get("title") or "document.pdf"}})
        elif kind == "tool_result":
            results.append(_tool_result(block, spot))
        else:
            raise _invalid(f"{spot}.type", f"{spot}.type: {kind!r} is not supported in a user turn")
    messages = list(results)
    if parts:
        if all(part["type"] == "text" for part in parts) and len(parts) == 1:
            messages.append({"role": "user", "content": parts[0]["text"]})
        else:
            messages.append({"role": "user", "content": parts})
    return messages


def _block_text(block: Mapping[str, Any], spot: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _invalid(f"{spot}.text", f"{spot}.text: Field required")
    return text


def _source_url(block: Mapping[str, Any], spot: str) -> str:
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise _invalid(f"{spot}.source", f"{spot}.source: Field required")
    if source.get("type") == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str):
            raise _invalid(f"{spot}.source", f"{spot}.source: a base64 source needs media_type and data")
        return f"data:{media_type};base64,{data}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    raise _invalid(f"{spot}.source.type", f"{spot}.source.type: expected 'base64' or 'url'")


def _tool_result(block: Mapping[str, Any], spot: str) -> dict[str, Any]:
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str):
        raise _invalid(f"{spot}.tool_use_id", f"{spot}.tool_use_id: Field required")
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = "".join(
            item["text"]
            for item in content
            if isinstance(item, Mapping) and item.get("type") == "text" and isinstance(item.get("text"), str)
        )
    else:
        raise _invalid(f"{spot}.content", f"{spot}.content: expected a string or an array of blocks")
    if block.get("is_error"):
        # OpenAI's tool message has no error flag, so the model learns it from the text.
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}


def _add_metadata(metadata: Any, request: dict[str, Any]) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, Mapping):
        raise _invalid("metadata", "metadata: expected an object")
    user = metadata.get("user_id")
    if isinstance(user, str) and user:
        request["user"] = user
    routing = {key: str(metadata[key]) for key in _ROUTE_KEYS if metadata.get(key) is not None}
    if routing:
        request["metadata"] = routing


def _add_tools(body: Mapping[str, Any], request: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid("tools", "tools: expected an array")
        converted = []
        for index, tool in enumerate(tools):
            if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
                raise _invalid(f"tools.{index}.name", f"tools.{index}.name: Field required")
            function: dict[str, Any] = {
                "name": tool["name"],
                "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
            }
            if isinstance(tool.get("description"), str):
                function["description"] = tool["description"]
            converted.append({"type": "function", "function": function})
        if converted:
            request["tools"] = converted

    choice = body.get("tool_choice")
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind == "auto":
        request["tool_choice"] = "auto"
    elif kind == "any":
        request["tool_choice"] = "required"
    elif kind == "none":
        request["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        request["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _invalid("tool_choice", "tool_choice: expected type 'auto', 'any', 'none' or 'tool' with a name")
    if isinstance(choice, Mapping) and choice.get("disable_parallel_tool_use") is True and "tools" in request:
        request["parallel_tool_calls"] = False


def _message_id(openai_id: Any) -> str:
    if isinstance(openai_id, str) and openai_id.startswith("msg_"):
        return openai_id
    if isinstance(openai_id, str) and openai_id:
        return "msg_" + openai_id.removeprefix("chatcmpl-")
    return "msg_" + uuid.uuid4().hex


def _anthropic_usage(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = min(int(details.get("cached_tokens") or 0), prompt)
    return {
        "input_tokens": prompt - cached,
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _tool_input(arguments: Any) -> dict[str, Any]:
    if not isinstance(arguments, str) or not arguments:
        return {}
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def to_anthropic_message(completion: Mapping[str, Any], model: str) -> dict[str, Any]:
    """Translate an OpenAI ``chat.completion`` into an Anthropic ``message``.

    ``model`` is the name the client asked for, shown back as Anthropic does.
    """
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + uuid.uuid4().hex[:24],
                "name": function.get("name") or "",
                "input": _tool_input(function.get("arguments")),
            }
        )
    return {
        "id": _message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": _anthropic_usage(completion.get("usage")),
    }


def anthropic_error_type(http_status: int) -> str:
    """Return Anthropic's error ``type`` for an HTTP status."""
    if http_status in _ERROR_TYPES:
        return _ERROR_TYPES[http_status]
    return "invalid_request_error" if http_status < 500 else "api_error"


def anthropic_error_body(error: GatewayError) -> bytes:
    """Return Anthropic's ``{"type": "error", "error": {...}}`` JSON for an error, in ASCII.

    ASCII because the body also travels as gRPC metadata, which allows no other bytes.
    """
    payload = {"type": "error", "error": {"type": anthropic_error_type(error.http_status), "message": error.message}}
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _event(name: str, payload: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class AnthropicStreamWriter:
    """Turn OpenAI ``chat.completion.chunk`` dicts into Anthropic's SSE event sequence.

    Call :meth:`start` once, :meth:`feed` for each chunk, then :meth:`finish`, or
    :meth:`error` when the stream fails after it started. Only choice 0 is read,
    because the Messages API has no ``n``. The input token count is unknown until the
    provider's usage arrives at the end, so ``message_start`` reports 0 and
    ``message_delta`` the real counts.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self._index = -1
        self._open: str | None = None
        """Kind of the open content block: "text", "tool_use" or None."""
        self._tool_blocks: dict[int, int] = {}
        """OpenAI tool call index to Anthropic block index."""
        self._stop_reason: str | None = None
        self._usage: Mapping[str, Any] | None = None
        self._message_id: str | None = None

    def start(self, first_chunk_id: Any = None) -> bytes:
        """Return ``message_start`` and a ``ping``."""
        self._message_id = _message_id(first_chunk_id)
        message = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": message}) + _event(
            "ping", {"type": "ping"}
        )

    def feed(self, chunk: Mapping[str, Any]) -> bytes:
        """Return the events for one chunk (possibly none)."""
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        out: list[bytes] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self._open != "text":
                    out.append(self._open_block({"type": "text", "text": ""}, "text"))
                out.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                out.extend(self._tool_call(call))
            if choice.get("finish_reason"):
                self._stop_reason = _STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return b"".join(out)

    def finish(self) -> bytes:
        """Return the closing events: the last ``content_block_stop``, ``message_delta``, ``message_stop``."""
        out = [self._close_block()]
        usage = _anthropic_usage(self._usage)
        out.append(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None},
                    "usage": usage,
                },
            )
        )
        out.append(_event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    @staticmethod
    def error(error: GatewayError) -> bytes:
        """Return the ``error`` event that ends a stream which failed after it started."""
        return b"event: error\ndata: " + anthropic_error_body(error) + b"\n\n"

    def _tool_call(self, call: Mapping[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        position = int(call.get("index", 0))
        function = call.get("function") or {}
        if position not in self._tool_blocks:
            block = {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + uuid.uuid4().hex[:24],
                "name": function.get("name") or "",
                "input": {},
            }
            out.append(self._open_block(block, "tool_use"))
            self._tool_blocks[position] = self._index
        elif self._tool_blocks[position] != self._index:
            # Deltas of an earlier call after another block opened cannot be sent in order.
            return out
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return out

    def _open_block(self, block: dict[str, Any], kind: str) -> bytes:
        closing = self._close_block()
        self._index += 1
        self._open = kind
        return closing + _event(
            "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
        )

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})
