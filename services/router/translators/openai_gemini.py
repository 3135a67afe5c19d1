"""Translate OpenAI Chat Completions requests to the Gemini API, and the responses back.

Request mapping, OpenAI to Gemini ``generateContent``:

- ``system`` and ``developer`` messages, wherever they stand, become the parts of
  ``systemInstruction`` in their original order.
- Other messages become ``contents`` with role ``user`` or ``model``; consecutive
  messages of one role share a turn, since Gemini expects the roles to alternate.
- ``image_url`` parts: a data URL becomes ``inlineData`` (``image/jpg`` is sent as
  ``image/jpeg``), any other URL ``fileData`` with a MIME type taken from the URL's
  extension. ``input_audio`` and data-URL ``file`` parts become ``inlineData`` too.
- ``tool_calls`` become ``functionCall`` parts and ``tool`` messages
  ``functionResponse`` parts in a user turn. Both carry the OpenAI call id, and the
  response takes the function name of the call with that id. A tool result that is a
  JSON object is sent as the response object, any other text as ``{"result": text}``.
- ``tools`` become ``functionDeclarations``; ``tool_choice`` becomes
  ``toolConfig.functionCallingConfig`` (auto as AUTO, none as NONE, required as ANY, a
  named function as ANY with ``allowedFunctionNames``).
- ``generationConfig``: ``temperature``, ``top_p`` (topP), ``max_completion_tokens`` or
  ``max_tokens`` (maxOutputTokens), ``stop`` (stopSequences), ``n`` (candidateCount),
  ``seed``, ``presence_penalty``, ``frequency_penalty``, ``reasoning_effort``
  (thinkingConfig.thinkingBudget) and ``response_format`` (responseMimeType
  ``application/json`` with responseSchema).
- Schemas (tool parameters, response schemas) that use only the OpenAPI subset that
  Gemini's ``Schema`` type defines are sent as ``parameters`` and ``responseSchema``.
  Others (``additionalProperties``, ``$ref``, type lists) are sent whole as
  ``parametersJsonSchema`` and ``responseJsonSchema``, which take any JSON Schema.
- ``parallel_tool_calls``, ``logprobs``, ``top_logprobs``, ``logit_bias``, ``user``,
  ``metadata`` and ``store`` have no Gemini field and are dropped. Audio output raises
  TranslationError.

Responses: each candidate becomes a choice. Text parts become ``content`` and thought
parts ``reasoning_content``. ``functionCall`` parts become ``tool_calls``, with the
call's ``id`` when Gemini sent one and a generated id otherwise. A part's
``thoughtSignature`` is returned in the tool call's ``extra_content.google`` and read
back from there, as Google's own OpenAI endpoint does. ``finishReason`` STOP becomes
``stop`` (``tool_calls`` when the candidate called a function), MAX_TOKENS ``length`` and
the safety reasons ``content_filter``. ``usageMetadata`` maps promptTokenCount (plus
toolUsePromptTokenCount) to ``prompt_tokens``, cachedContentTokenCount to
``cached_tokens``, and candidatesTokenCount plus thoughtsTokenCount to
``completion_tokens`` with the thoughts as ``reasoning_tokens``.
"""

from __future__ import annotations

import mimetypes
import time
import urllib.parse
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
    stop_sequences,
    text_of,
    tool_call_arguments,
    tool_names_by_id,
    user_parts,
)

__all__ = [
    "GeminiStreamTranslator",
    "map_finish_reason",
    "to_gemini_request",
    "to_openai_completion",
    "to_openai_usage",
]

_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "stop",
    "OTHER": "stop",
    "MALFORMED_FUNCTION_CALL": "stop",
    "UNEXPECTED_TOOL_CALL": "stop",
}

# Keys of Gemini's Schema type (an OpenAPI 3.0 subset); a schema with any other key is
# sent as JSON Schema instead.
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)

# Thinking budgets in tokens for OpenAI's reasoning_effort words, the values Google's
# OpenAI-compatible endpoint documents for Gemini 2.5 models.
_THINKING_BUDGETS = {"none": 0, "minimal": 0, "low": 1024, "medium": 8192, "high": 24576}

_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


def to_gemini_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """Build a Gemini ``generateContent`` body from an OpenAI chat completions request."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty list")
    if request.get("audio") is not None or "audio" in (request.get("modalities") or ()):
        raise TranslationError("audio output is not supported by Gemini deployments")

    names = tool_names_by_id(messages)
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
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
            append_turn(contents, "user", _user_parts(message.get("content"), where), key="parts")
        elif role == "assistant":
            append_turn(contents, "model", _model_parts(message, where), key="parts")
        elif role == "tool":
            append_turn(contents, "user", [_function_response(message, names, where)], key="parts")
        else:
            raise TranslationError(f"{where}.role {role!r} is not supported")
    if not contents:
        raise TranslationError("messages must contain at least one user or assistant message")

    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    config = _generation_config(request)
    if config:
        body["generationConfig"] = config
    _add_tools(request, body)
    return body


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []

    parts: list[dict[str, Any]] = []
    for part in user_parts(content, where):
        spot, kind = part.where, part.kind
        if kind == "text":
            if part.value:
                parts.append({"text": part.value})
        elif kind == "image_url":
            parts.append(_media_part(part.value, spot, default_type="image/jpeg"))
        elif kind == "input_audio":
            audio = part.part.get("input_audio")
            data = audio.get("data") if isinstance(audio, Mapping) else None
            audio_format = audio.get("format") if isinstance(audio, Mapping) else None
            if not isinstance(data, str) or audio_format not in _AUDIO_TYPES:
                raise TranslationError(f"{spot}.input_audio needs data and a wav or mp3 format")
            parts.append({"inlineData": {"mimeType": _AUDIO_TYPES[audio_format], "data": data}})
        elif kind == "file":
            file = part.part.get("file")
            data_url = file.get("file_data") if isinstance(file, Mapping) else None
            if not isinstance(data_url, str) or not data_url.startswith("data:"):
                raise TranslationError(f"{spot}: only files given inline as a data URL are supported")
            parts.append(_media_part(data_url, spot, default_type="application/octet-stream"))
        else:
            raise TranslationError(f"{spot}.type {kind!r} is not supported by Gemini deployments")
    return parts


def _media_part(url: str, where: str, *, default_type: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, data = parse_data_url(url, where)
        return {"inlineData": {"mimeType": media_type or default_type, "data": data}}
    if not url.startswith(("https://", "http://", "gs://")):
        raise TranslationError(f"{where}: URL must be an http(s), gs:// or data URL")
    # NOTE: OpenAI requests carry no type for a URL, so it is guessed from the path's
    # extension; a URL without a known extension is sent as image/jpeg.
    guessed, _ = mimetypes.guess_type(urllib.parse.urlsplit(url).path)
    media_type = "image/jpeg" if guessed == "image/jpg" else guessed
    return {"fileData": {"mimeType": media_type or default_type, "fileUri": url}}


def _model_parts(message: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    text = text_of(message.get("content"), where)
    if text:
        parts.append({"text": text})
    if message.get("function_call") is not None:
        raise TranslationError(f"{where}.function_call is deprecated; use tool_calls")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError(f"{where}.tool_calls must be a list")
    for index, call in enumerate(calls):
        call_id, name, arguments = tool_call_arguments(call, f"{where}.tool_calls[{index}]")
        part: dict[str, Any] = {"functionCall": {"id": call_id, "name": name, "args": arguments}}
        signature = _thought_signature(call)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _thought_signature(call: Mapping[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, Mapping) else None
    signature = google.get("thought_signature") if isinstance(google, Mapping) else None
    return signature if isinstance(signature, str) else None


def _function_response(message: Mapping[str, Any], names: Mapping[str, str], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.tool_call_id is missing")
    name = names.get(call_id)
    if not name:
        raise TranslationError(f"{where}.tool_call_id {call_id!r} matches no earlier assistant tool call")
    text = text_of(message.get("content"), where)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"result": text}
    return {"functionResponse": {"id": call_id, "name": name, "response": response}}


def _generation_config(request: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for source, target in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if request.get(source) is not None:
            config[target] = request[source]
    limit = max_output_tokens(request)
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = stop_sequences(request)
    if stop:
        config["stopSequences"] = stop
    choices = request.get("n")
    if choices is not None and choices != 1:
        config["candidateCount"] = choices

    effort = request.get("reasoning_effort")
    if effort is not None:
        if effort not in _THINKING_BUDGETS:
            raise TranslationError(f"reasoning_effort {effort!r} is not supported")
        config["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGETS[effort]}

    response_format = request.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
    elif kind == "json_schema":
        definition = response_format.get("json_schema")
        schema = definition.get("schema") if isinstance(definition, Mapping) else None
        config["responseMimeType"] = "application/json"
        if isinstance(schema, Mapping):
            key = "responseSchema" if _fits_gemini_schema(schema) else "responseJsonSchema"
            config[key] = schema
    elif kind not in (None, "text"):
        raise TranslationError(f"response_format {kind!r} is not supported")
    return config


def _fits_gemini_schema(schema: Any) -> bool:
    """Whether a JSON schema uses only what Gemini's OpenAPI-subset Schema type accepts."""
    if isinstance(schema, list):
        return all(_fits_gemini_schema(item) for item in schema)
    if not isinstance(schema, Mapping):
        return True
    if not set(schema) <= _SCHEMA_KEYS or not isinstance(schema.get("type", ""), str):
        return False
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and not all(_fits_gemini_schema(value) for value in properties.values()):
        return False
    return _fits_gemini_schema(schema.get("items")) and _fits_gemini_schema(schema.get("anyOf"))


def _add_tools(request: Mapping[str, Any], body: dict[str, Any]) -> None:
    tools = request.get("tools")
    if not tools:
        return
    if not isinstance(tools, list):
        raise TranslationError("tools must be a list")
    declarations: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(function, Mapping):
            raise TranslationError(f"tools[{index}] must be a function tool")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError(f"tools[{index}].function.name is missing")
        declaration: dict[str, Any] = {"name": name}
        if function.get("description"):
            declaration["description"] = function["description"]
        parameters = function.get("parameters")
        if isinstance(parameters, Mapping) and parameters:
            key = "parameters" if _fits_gemini_schema(parameters) else "parametersJsonSchema"
            declaration[key] = parameters
        declarations.append(declaration)
    body["tools"] = [{"functionDeclarations": declarations}]

    choice = request.get("tool_choice")
    if choice is None:
        return
    if choice == "auto":
        config: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "none":
        config = {"mode": "NONE"}
    elif choice == "required":
        config = {"mode": "ANY"}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise TranslationError("tool_choice.function.name is missing")
        config = {"mode": "ANY", "allowedFunctionNames": [name]}
    else:
        raise TranslationError(f"tool_choice {choice!r} is not supported")
    body["toolConfig"] = {"functionCallingConfig": config}


def map_finish_reason(reason: str | None, *, called_function: bool = False) -> str | None:
    """Map a Gemini ``finishReason`` to an OpenAI ``finish_reason``."""
    if reason is None or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    mapped = _FINISH_REASONS.get(reason, "stop")
    if mapped == "stop" and called_function:
        return "tool_calls"
    return mapped


def to_openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Convert Gemini ``usageMetadata`` to OpenAI's usage shape."""
    # Gemini counts cached tokens inside promptTokenCount, as OpenAI does.
    prompt = count(usage.get("promptTokenCount")) + count(usage.get("toolUsePromptTokenCount"))
    thoughts = count(usage.get("thoughtsTokenCount"))
    completion_tokens = count(usage.get("candidatesTokenCount")) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": count(usage.get("cachedContentTokenCount"))},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def _tool_call(part: Mapping[str, Any], call: Mapping[str, Any]) -> dict[str, Any]:
    call_id = call.get("id")
    entry: dict[str, Any] = {
        "id": call_id if isinstance(call_id, str) and call_id else "call_" + uuid.uuid4().hex[:24],
        "type": "function",
        "function": {
            "name": call.get("name"),
            "arguments": orjson.dumps(call.get("args") or {}).decode(),
        },
    }
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        entry["extra_content"] = {"google": {"thought_signature": signature}}
    return entry


def to_openai_completion(response: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """Convert a Gemini ``generateContent`` response to an OpenAI ``chat.completion``."""
    candidates = [c for c in response.get("candidates") or () if isinstance(c, Mapping)]
    choices: list[dict[str, Any]] = []
    for position, candidate in enumerate(candidates):
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            if not isinstance(part, Mapping):
                continue
            if isinstance(part.get("functionCall"), Mapping):
                calls.append(_tool_call(part, part["functionCall"]))
            elif isinstance(part.get("text"), str):
                (thoughts if part.get("thought") else texts).append(part["text"])
        built = completion(
            completion_id="",
            model=model,
            text="".join(texts),
            tool_calls=calls,
            finish_reason=map_finish_reason(candidate.get("finishReason"), called_function=bool(calls)),
            usage={},
            reasoning="".join(thoughts) or None,
        )
        choice = built["choices"][0]
        choice["index"] = candidate.get("index", position)
        choices.append(choice)

    if not choices:
        # A blocked prompt returns promptFeedback.blockReason and no candidates.
        blocked = (response.get("promptFeedback") or {}).get("blockReason")
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": "", "refusal": None},
                "finish_reason": "content_filter" if blocked else "stop",
                "logprobs": None,
            }
        )

    return {
        "id": response.get("responseId") or "",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": response.get("modelVersion") or model,
        "choices": choices,
        "usage": to_openai_usage(response.get("usageMetadata") or {}),
    }


class GeminiStreamTranslator:
    """Turn ``streamGenerateContent`` SSE responses into OpenAI chunks.

    Feed each event's parsed data to :meth:`translate` in order. Gemini sends a function
    call whole in one event, so each call becomes one chunk with the complete arguments.
    ``usageMetadata`` may come with any event and is merged (later values win). Once the
    body ends, :meth:`finish` returns the last chunk with the usage.
    """

    def __init__(self, *, model: str) -> None:
        self._chunks = ChunkBuilder(model=model)
        self.usage: dict[str, Any] = {}
        """Gemini usageMetadata merged over the events so far."""
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}
        self._open: set[int] = set()
        """Candidate indexes that started but have no finishReason yet."""
        self.finished = False
        """Whether every candidate that started has a finishReason."""
        self.blocked = False

    def translate(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Return the chunks for one streamed response."""
        if isinstance(event.get("responseId"), str) and not self._chunks.completion_id:
            self._chunks.completion_id = event["responseId"]
        if isinstance(event.get("modelVersion"), str):
            self._chunks.model = event["modelVersion"]
        merge_usage(self.usage, event.get("usageMetadata"))

        chunks: list[dict[str, Any]] = []
        candidates = [c for c in event.get("candidates") or () if isinstance(c, Mapping)]
        if not candidates and (event.get("promptFeedback") or {}).get("blockReason"):
            self.blocked = True
            self.finished = True
            chunk = self._chunks.chunk({"role": "assistant", "content": ""}, finish_reason="content_filter")
            return [chunk]
        for position, candidate in enumerate(candidates):
            chunks.extend(self._candidate(candidate, candidate.get("index", position)))
        self.finished = bool(self._started) and not self._open
        return chunks

    def _candidate(self, candidate: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        if index not in self._started:
            self._started.add(index)
            self._open.add(index)
            chunks.append(self._choice_chunk(index, {"role": "assistant", "content": ""}))

        for part in (candidate.get("content") or {}).get("parts") or ():
            if not isinstance(part, Mapping):
                continue
            if isinstance(part.get("functionCall"), Mapping):
                position = self._calls.get(index, 0)
                self._calls[index] = position + 1
                call = _tool_call(part, part["functionCall"])
                chunks.append(self._choice_chunk(index, {"tool_calls": [{"index": position, **call}]}))
            elif isinstance(part.get("text"), str) and part["text"]:
                key = "reasoning_content" if part.get("thought") else "content"
                chunks.append(self._choice_chunk(index, {key: part["text"]}))

        reason = candidate.get("finishReason")
        mapped = map_finish_reason(reason, called_function=self._calls.get(index, 0) > 0)
        if mapped is not None and index in self._open:
            self._open.discard(index)
            chunks.append(self._choice_chunk(index, {}, finish_reason=mapped))
        return chunks

    def _choice_chunk(self, index: int, delta: dict[str, Any], *, finish_reason: str | None = None) -> dict[str, Any]:
        chunk = self._chunks.chunk(delta, finish_reason=finish_reason)
        chunk["choices"][0]["index"] = index
        return chunk

    def finish(self) -> dict[str, Any]:
        """Return the last chunk: empty ``choices`` and the merged usage."""
        return self._chunks.usage_chunk(to_openai_usage(self.usage))
