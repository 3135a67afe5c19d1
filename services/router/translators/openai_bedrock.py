"""Translate OpenAI Chat Completions requests to the Bedrock Converse API, and the responses back.

Request mapping, OpenAI to ``POST /model/{modelId}/converse``:

- ``system`` and ``developer`` messages, wherever they stand, become the ``system``
  text blocks in their original order.
- Other messages become ``messages`` with role ``user`` or ``assistant``; consecutive
  messages of one role share a turn, since Converse expects the roles to alternate.
- ``image_url`` parts with a data URL become ``image`` blocks with base64 ``bytes``
  (``image/jpg`` is sent as ``jpeg``), and ``s3://`` URLs become ``s3Location`` sources.
  Converse cannot fetch http(s) URLs, so those raise TranslationError. A data-URL
  ``file`` part becomes a ``document`` block.
- ``tool_calls`` become ``toolUse`` blocks and ``tool`` messages ``toolResult`` blocks
  in a user turn, with the same id. A tool result that is a JSON object is sent as a
  ``json`` block, any other text as a ``text`` block.
- ``tools`` become ``toolConfig.tools[].toolSpec``; ``tool_choice`` auto becomes
  ``auto``, required ``any`` and a named function ``tool``. Converse has no "none", so
  ``tool_choice: none`` sends no tools, unless the conversation already has tool
  calls (Converse then requires ``toolConfig``) and the tools are sent with ``auto``.
- ``inferenceConfig``: ``max_completion_tokens`` or ``max_tokens`` (maxTokens),
  ``temperature``, ``top_p`` (topP) and ``stop`` (stopSequences).
- ``seed``, ``frequency_penalty``, ``presence_penalty``, ``parallel_tool_calls``,
  ``logprobs``, ``top_logprobs``, ``logit_bias``, ``user``, ``metadata`` and
  ``store`` have no Converse field and are dropped. ``n`` above 1, audio output and
  JSON response formats raise TranslationError.

Responses: ``end_turn`` and ``stop_sequence`` become ``stop``, ``max_tokens`` and
``model_context_window_exceeded`` become ``length``, ``tool_use`` becomes ``tool_calls``,
and ``guardrail_intervened`` and ``content_filtered`` become ``content_filter``.
Reasoning blocks become ``reasoning_content``. Usage maps ``inputTokens`` plus cache
reads and writes to ``prompt_tokens`` (OpenAI counts cached tokens inside the prompt)
and cache reads to ``cached_tokens``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from services.router.translators.common import (
    ChunkBuilder,
    TranslationError,
    append_turn,
    completion,
    count,
    max_output_tokens,
    merge_usage,
    parse_data_url,
    reject_multiple_choices,
    stop_sequences,
    text_of,
    tool_call_arguments,
    user_parts,
)

__all__ = [
    "BedrockStreamTranslator",
    "map_stop_reason",
    "to_converse_request",
    "to_openai_completion",
    "to_openai_usage",
]

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
_TOOL_ID_INVALID = re.compile(r"[^A-Za-z0-9_-]")
# Converse allows letters, digits, single spaces, hyphens, parentheses and square
# brackets in a document name.
_DOCUMENT_NAME_INVALID = re.compile(r"[^A-Za-z0-9\-()\[\] ]+")


def to_converse_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """Build a Converse body from an OpenAI chat completions request.

    The model goes in the URL, so the body has none.
    """
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty list")
    reject_multiple_choices(request, "Bedrock")
    response_format = request.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") not in (None, "text"):
        raise TranslationError(
            f"response_format {response_format.get('type')!r} is not supported by Bedrock deployments"
        )

    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    known_ids: set[str] = set()
    for position, message in enumerate(messages):
        where = f"messages[{position}]"
        if not isinstance(message, Mapping):
            raise TranslationError(f"{where} must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(message.get("content"), where)
            if text:
                system.append({"text": text})
        elif role == "user":
            append_turn(turns, "user", _user_blocks(message.get("content"), where))
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
            known_ids.update(block["toolUse"]["toolUseId"] for block in blocks if "toolUse" in block)
            append_turn(turns, "assistant", blocks)
        elif role == "tool":
            block = _tool_result(message, where)
            if block["toolResult"]["toolUseId"] not in known_ids:
                raise TranslationError(
                    f"{where}.tool_call_id {message.get('tool_call_id')!r} matches no earlier assistant tool call"
                )
            append_turn(turns, "user", [block])
        else:
            raise TranslationError(f"{where}.role {role!r} is not supported")
    if not turns:
        raise TranslationError("messages must contain at least one user or assistant message")

    body: dict[str, Any] = {"messages": turns}
    if system:
        body["system"] = system

    config: dict[str, Any] = {}
    limit = max_output_tokens(request)
    if limit is not None:
        config["maxTokens"] = limit
    for source, target in (("temperature", "temperature"), ("top_p", "topP")):
        if request.get(source) is not None:
            config[target] = request[source]
    stop = stop_sequences(request)
    if stop:
        config["stopSequences"] = stop
    if config:
        body["inferenceConfig"] = config

    _add_tools(request, body, has_tool_history=bool(known_ids))
    return body


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []

    blocks: list[dict[str, Any]] = []
    for part in user_parts(content, where):
        if part.kind == "text":
            if part.value:
                blocks.append({"text": part.value})
        elif part.kind == "image_url":
            blocks.append(_image_block(part.value, part.where))
        elif part.kind == "file":
            blocks.append(_document_block(part.part.get("file"), part.where, len(blocks)))
        else:
            raise TranslationError(f"{part.where}.type {part.kind!r} is not supported by Bedrock deployments")
    return blocks


def _image_block(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, data = parse_data_url(url, where)
        image_format = _IMAGE_FORMATS.get(media_type)
        if image_format is None:
            raise TranslationError(
                f"{where}: image type {media_type!r} is not supported; use one of {sorted(_IMAGE_FORMATS)}"
            )
        return {"image": {"format": image_format, "source": {"bytes": data}}}
    if url.startswith("s3://"):
        extension = url.rsplit(".", 1)[-1].lower()
        image_format = "jpeg" if extension == "jpg" else extension
        if image_format not in _IMAGE_FORMATS.values():
            raise TranslationError(f"{where}: the S3 object's extension must be png, jpeg, gif or webp")
        return {"image": {"format": image_format, "source": {"s3Location": {"uri": url}}}}
    raise TranslationError(f"{where}: Bedrock takes images as data URLs or s3:// URLs, not http(s) URLs")


def _document_block(file: Any, where: str, position: int) -> dict[str, Any]:
    data_url = file.get("file_data") if isinstance(file, Mapping) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise TranslationError(f"{where}: only files given inline as a data URL are supported")
    media_type, data = parse_data_url(data_url, where)
    document_format = _DOCUMENT_FORMATS.get(media_type)
    if document_format is None:
        raise TranslationError(f"{where}: file type {media_type!r} is not supported")
    filename = file.get("filename") if isinstance(file.get("filename"), str) else ""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    name = " ".join(_DOCUMENT_NAME_INVALID.sub(" ", stem).split()) or f"document {position + 1}"
    return {"document": {"format": document_format, "name": name, "source": {"bytes": data}}}


def _assistant_blocks(message: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = text_of(message.get("content"), where)
    if text:
        blocks.append({"text": text})
    if message.get("function_call") is not None:
        raise TranslationError(f"{where}.function_call is deprecated; use tool_calls")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError(f"{where}.tool_calls must be a list")
    for index, call in enumerate(calls):
        call_id, name, arguments = tool_call_arguments(call, f"{where}.tool_calls[{index}]")
        blocks.append({"toolUse": {"toolUseId": _tool_id(call_id), "name": name, "input": arguments}})
    return blocks


def _tool_result(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.tool_call_id is missing")
    text = text_of(message.get("content"), where)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    content = [{"json": parsed}] if isinstance(parsed, dict) else [{"text": text}]
    return {"toolResult": {"toolUseId": _tool_id(call_id), "content": content}}


def _tool_id(call_id: str) -> str:
    # Converse accepts only [A-Za-z0-9_-], up to 64 characters, in tool use ids. The same
    # mapping is applied to calls and results, so their ids still match.
    return _TOOL_ID_INVALID.sub("_", call_id)[:64]


def _add_tools(request: Mapping[str, Any], body: dict[str, Any], *, has_tool_history: bool) -> None:
    tools = request.get("tools")
    if not tools:
        return
    if not isinstance(tools, list):
        raise TranslationError("tools must be a list")
    choice = request.get("tool_choice")
    if choice == "none" and not has_tool_history:
        return

    specs: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if (
            not isinstance(tool, Mapping)
            or tool.get("type") != "function"
            or not isinstance(function, Mapping)
            or not isinstance(function.get("name"), str)
        ):
            raise TranslationError(f"tools[{index}] must be a function tool with a name")
        spec: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["inputSchema"] = {"json": function.get("parameters") or {"type": "object", "properties": {}}}
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}

    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise TranslationError("tool_choice.function.name is missing")
        config["toolChoice"] = {"tool": {"name": name}}
    elif choice in ("auto", "none"):
        # NOTE: with tool calls in the history, "none" cannot be expressed and the model
        # may call a tool again.
        config["toolChoice"] = {"auto": {}}
    elif choice is not None:
        raise TranslationError(f"tool_choice {choice!r} is not supported")
    body["toolConfig"] = config


def map_stop_reason(reason: str | None) -> str | None:
    """Map a Converse ``stopReason`` to an OpenAI ``finish_reason``."""
    if reason is None:
        return None
    return _STOP_REASONS.get(reason, "stop")


def to_openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Convert Converse usage to OpenAI's shape."""
    cache_read = count(usage.get("cacheReadInputTokens"))
    cache_write = count(usage.get("cacheWriteInputTokens"))
    prompt = count(usage.get("inputTokens")) + cache_read + cache_write
    completion_tokens = count(usage.get("outputTokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def to_openai_completion(response: Mapping[str, Any], *, model: str, request_id: str | None = None) -> dict[str, Any]:
    """Convert a Converse response to an OpenAI ``chat.completion``."""
    message = (response.get("output") or {}).get("message") or {}
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if not isinstance(block, Mapping):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), Mapping):
            use = block["toolUse"]
            calls.append(
                {
                    "id": use.get("toolUseId"),
                    "type": "function",
                    "function": {"name": use.get("name"), "arguments": orjson.dumps(use.get("input") or {}).decode()},
                }
            )
        elif isinstance(block.get("reasoningContent"), Mapping):
            reasoning = block["reasoningContent"].get("reasoningText") or {}
            if isinstance(reasoning.get("text"), str):
                thoughts.append(reasoning["text"])
    return completion(
        completion_id=request_id or "bedrock-" + uuid.uuid4().hex,
        model=model,
        text="".join(texts),
        tool_calls=calls,
        finish_reason=map_stop_reason(response.get("stopReason")),
        usage=to_openai_usage(response.get("usage") or {}),
        reasoning="".join(thoughts) or None,
    )


class BedrockStreamTranslator:
    """Turn ``converse-stream`` events into OpenAI ``chat.completion.chunk`` dicts.

    Feed each event's type and parsed payload to :meth:`translate` in order. Tool input
    pieces pass through unchanged, so they join to exactly the JSON Bedrock sent.
    ``messageStop`` gives the finish reason and ``metadata`` the usage, which yields a
    last chunk with empty ``choices``.
    """

    def __init__(self, *, model: str, completion_id: str = "") -> None:
        self._chunks = ChunkBuilder(completion_id or "bedrock-" + uuid.uuid4().hex, model)
        self.stopped = False
        """Whether ``messageStop`` arrived."""
        self.finished = False
        """Whether ``metadata`` arrived after ``messageStop``, which completes the stream."""
        self.usage: dict[str, Any] = {}
        """Converse usage merged over the events so far."""
        self._tool_index: dict[int, int] = {}
        self._tool_sent: set[int] = set()

    def translate(self, event_type: str | None, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Return the chunks for one event."""
        if event_type == "messageStart":
            return [self._chunks.chunk({"role": "assistant", "content": ""})]
        if event_type == "contentBlockStart":
            return self._block_start(payload)
        if event_type == "contentBlockDelta":
            return self._block_delta(payload)
        if event_type == "contentBlockStop":
            return self._block_stop(payload)
        if event_type == "messageStop":
            self.stopped = True
            return [self._chunks.chunk({}, finish_reason=map_stop_reason(payload.get("stopReason")) or "stop")]
        if event_type == "metadata":
            merge_usage(self.usage, payload.get("usage") if isinstance(payload.get("usage"), Mapping) else None)
            if self.stopped:
                self.finished = True
                return [self.usage_chunk()]
        return []

    def usage_chunk(self) -> dict[str, Any]:
        """Return the last chunk: empty ``choices`` and the merged usage."""
        return self._chunks.usage_chunk(to_openai_usage(self.usage))

    def _block_start(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        start = payload.get("start") if isinstance(payload.get("start"), Mapping) else {}
        use = start.get("toolUse")
        if not isinstance(use, Mapping):
            return []
        index = len(self._tool_index)
        self._tool_index[payload.get("contentBlockIndex", 0)] = index
        call = {
            "index": index,
            "id": use.get("toolUseId"),
            "type": "function",
            "function": {"name": use.get("name"), "arguments": ""},
        }
        return [self._chunks.chunk({"tool_calls": [call]})]

    def _block_delta(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        delta = payload.get("delta") if isinstance(payload.get("delta"), Mapping) else {}
        if isinstance(delta.get("text"), str):
            return [self._chunks.chunk({"content": delta["text"]})] if delta["text"] else []
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, Mapping) and isinstance(reasoning.get("text"), str):
            return [self._chunks.chunk({"reasoning_content": reasoning["text"]})] if reasoning["text"] else []
        use = delta.get("toolUse")
        block = payload.get("contentBlockIndex", 0)
        if isinstance(use, Mapping) and block in self._tool_index:
            piece = use.get("input")
            if not isinstance(piece, str) or not piece:
                return []
            self._tool_sent.add(block)
            call = {"index": self._tool_index[block], "function": {"arguments": piece}}
            return [self._chunks.chunk({"tool_calls": [call]})]
        return []

    def _block_stop(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        block = payload.get("contentBlockIndex", 0)
        if block not in self._tool_index or block in self._tool_sent:
            return []
        # A tool without parameters streams no input, but OpenAI clients expect an object.
        self._tool_sent.add(block)
        call = {"index": self._tool_index[block], "function": {"arguments": "{}"}}
        return [self._chunks.chunk({"tool_calls": [call]})]
