"""Gemini API ``generateContent`` and ``streamGenerateContent`` endpoints of the simulator.

Paths: ``POST /{version}/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` (SSE; without ``alt=sse`` Gemini streams a JSON
array, which the simulator does not serve). The key goes in ``x-goog-api-key`` or the
``key`` query parameter.

The checks follow the API. ``contents`` must be non-empty, with roles ``user`` and
``model``, and every part must have exactly one data field. A ``functionResponse`` must
name a function called in the turn before, and ``inlineData`` needs a MIME type and
base64 data.
With ``responseMimeType: application/json`` the text is sample JSON for the response
schema. Both camelCase and snake_case field names are accepted, as the API does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from typing import Any

import orjson
from aiohttp import web

from libs.sse import format_event
from tools.simulator.app import (
    SIMULATOR,
    Simulator,
    json_response,
    log_request,
    read_json,
    send_events,
    send_json_answer,
)
from tools.simulator.content import (
    ANSWER_PREFIX,
    Reply,
    count_texts,
    pad_answer,
    sample_arguments,
    split_pieces,
    truncate,
)

__all__ = ["models_call"]

_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
_DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
_SNAKE = re.compile(r"_([a-z])")


def error_body(status: int, message: str) -> dict[str, Any]:
    """Return Google's error shape."""
    return {"error": {"code": status, "message": message, "status": _STATUSES.get(status, "UNKNOWN")}}


def _error(status: int, message: str, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return json_response(error_body(status, message), status=status, headers=headers)


def _camel(value: Any) -> Any:
    """Rename snake_case keys to camelCase, recursively, except inside free-form objects."""
    if isinstance(value, list):
        return [_camel(item) for item in value]
    if not isinstance(value, dict):
        return value
    renamed: dict[str, Any] = {}
    for key, item in value.items():
        name = _SNAKE.sub(lambda match: match.group(1).upper(), key)
        # Arguments, responses and schemas are the caller's data, kept as sent.
        keep = name in (
            "args",
            "response",
            "parameters",
            "responseSchema",
            "parametersJsonSchema",
            "responseJsonSchema",
        )
        renamed[name] = item if keep else _camel(item)
    return renamed


async def models_call(request: web.Request) -> web.StreamResponse:
    """Respond to ``POST /{version}/models/{model}:{method}``."""
    simulator = request.app[SIMULATOR]
    model, _, method = request.match_info["target"].partition(":")
    if method not in ("generateContent", "streamGenerateContent"):
        return _error(404, f"Method {method or '(none)'} is not found for models/{model}.")
    if not request.headers.get("x-goog-api-key") and not request.query.get("key"):
        return _error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    stream = method == "streamGenerateContent"
    if stream and request.query.get("alt") != "sse":
        return _error(400, "The simulator streams only with alt=sse.")

    raw, parsed = await read_json(request)
    log_request(request, raw)
    if not parsed or not isinstance(raw, dict):
        return _error(400, "Invalid JSON payload received.")
    body = _camel(raw)
    problem = _validate(body)
    if problem is not None:
        return _error(400, problem)

    plan = simulator.plan(request.match_info.get("deployment", "default"))
    if plan.delay_s:
        await asyncio.sleep(plan.delay_s)
    step = plan.step
    if plan.error_status is not None:
        return _error(plan.error_status, step.message or f"Simulated HTTP {plan.error_status}.", step.retry_after)
    if step.error_after_chunks is not None and not stream:
        return _error(500, step.message or "An internal error has occurred.")

    header_bytes = request.headers.get("x-sim-answer-bytes")
    answer_bytes = step.answer_bytes or (int(header_bytes) if header_bytes and header_bytes.isdigit() else None)
    reply = _reply(body, simulator, answer_bytes)
    prompt = count_texts(_prompt_texts(body))
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": reply.completion_tokens,
        "totalTokenCount": prompt + reply.completion_tokens + step.reasoning_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if step.cached_tokens:
        usage["cachedContentTokenCount"] = min(step.cached_tokens, prompt)
    if step.reasoning_tokens:
        usage["thoughtsTokenCount"] = step.reasoning_tokens
    response_id = "sim" + simulator.next_id()

    if not stream:
        answer = {
            "candidates": [
                {
                    "content": {"parts": _parts(reply, simulator), "role": "model"},
                    "finishReason": _FINISH[reply.finish],
                    "index": 0,
                }
            ],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": response_id,
        }
        return await send_json_answer(request, answer, plan, {})

    events = _stream_events(reply, usage, model, response_id, simulator)
    error_event = format_event(
        orjson.dumps(error_body(503, step.message or "The model is overloaded. Please try again later."))
    )
    return await send_events(request, events, plan, error_event, {})


def _validate(body: dict[str, Any]) -> str | None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    system = body.get("systemInstruction")
    if system is not None:
        parts = system.get("parts") if isinstance(system, dict) else None
        if not isinstance(parts, list) or not all(
            isinstance(part, dict) and isinstance(part.get("text"), str) for part in parts
        ):
            return "* GenerateContentRequest.system_instruction: only text parts are allowed"

    called: set[str] = set()
    for index, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role", "user") not in ("user", "model"):
            return f"* GenerateContentRequest.contents[{index}].role: must be user or model"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{index}].parts: must not be empty"
        answered: set[str] = set()
        for part_index, part in enumerate(parts):
            where = f"* GenerateContentRequest.contents[{index}].parts[{part_index}]"
            fields = [name for name in _DATA_FIELDS if isinstance(part, dict) and name in part]
            if len(fields) != 1:
                return f"{where}.data: required oneof field 'data' must have one initialized field"
            problem = _part_problem(part, fields[0], called, where)
            if problem is not None:
                return problem
            if fields[0] == "functionResponse":
                answered.add(part["functionResponse"]["name"])
        if content.get("role") == "model":
            called = {part["functionCall"].get("name") for part in parts if isinstance(part.get("functionCall"), dict)}
        elif answered:
            called = set()

    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        return "* GenerateContentRequest.tools: must be a list"
    config = body.get("generationConfig")
    if config is not None and not isinstance(config, dict):
        return "* GenerateContentRequest.generation_config: must be an object"
    if isinstance(config, dict) and "responseSchema" in config and "responseJsonSchema" in config:
        return "responseSchema and responseJsonSchema cannot both be set"
    return None


def _part_problem(part: dict[str, Any], field: str, called: set[str], where: str) -> str | None:
    value = part[field]
    if field == "inlineData":
        if not isinstance(value, dict) or not value.get("mimeType"):
            return f"{where}.inline_data.mime_type: must be set"
        try:
            base64.b64decode(value.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            return f"{where}.inline_data.data: Base64 decoding failed"
    elif field == "fileData":
        if not isinstance(value, dict) or not value.get("fileUri"):
            return f"{where}.file_data.file_uri: must be set"
    elif field == "functionCall":
        if not isinstance(value, dict) or not value.get("name"):
            return f"{where}.function_call.name: must be set"
    elif field == "functionResponse":
        if not isinstance(value, dict) or not isinstance(value.get("response"), dict):
            return f"{where}.function_response.response: must be an object"
        if value.get("name") not in called:
            return (
                f"{where}.function_response.name: {value.get('name')!r} does not match a "
                "function call of the previous turn"
            )
    return None


def _texts(parts: list[Any], *, with_results: bool) -> list[str]:
    texts: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif with_results and isinstance(part.get("functionResponse"), dict):
            texts.append(orjson.dumps(part["functionResponse"].get("response")).decode())
    return texts


def _prompt_texts(body: dict[str, Any]) -> list[str]:
    texts = _texts((body.get("systemInstruction") or {}).get("parts") or [], with_results=False)
    for content in body["contents"]:
        texts.extend(_texts(content.get("parts") or [], with_results=True))
    return texts


def _reply(body: dict[str, Any], simulator: Simulator, answer_bytes: int | None) -> Reply:
    contents = body["contents"]
    declarations = [
        declaration
        for tool in body.get("tools") or []
        if isinstance(tool, dict)
        for declaration in tool.get("functionDeclarations") or []
        if isinstance(declaration, dict)
    ]
    calling = ((body.get("toolConfig") or {}).get("functionCallingConfig")) or {}
    mode = calling.get("mode", "AUTO")
    last_parts = contents[-1].get("parts") or []
    answering = any(isinstance(part, dict) and "functionResponse" in part for part in last_parts)
    if declarations and mode != "NONE" and not answering:
        allowed = calling.get("allowedFunctionNames") or []
        declaration = next((item for item in declarations if item.get("name") in allowed), declarations[0])
        schema = declaration.get("parameters") or declaration.get("parametersJsonSchema")
        return Reply(
            text="",
            tool_name=declaration.get("name", "tool"),
            tool_arguments=sample_arguments(schema),
            finish="tool_calls",
        )

    config = body.get("generationConfig") or {}
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseSchema") or config.get("responseJsonSchema")
        return Reply(text=sample_arguments(schema) if schema else "{}")

    last_user = ""
    for content in reversed(contents):
        if content.get("role", "user") == "user":
            texts = _texts(content.get("parts") or [], with_results=False)
            if texts:
                last_user = " ".join(texts)
                break
    text = pad_answer(ANSWER_PREFIX + last_user, answer_bytes or simulator.config.answer_bytes)
    stop = [item for item in config.get("stopSequences") or [] if isinstance(item, str)]
    limit = config.get("maxOutputTokens")
    text, finish, matched = truncate(text, limit if isinstance(limit, int) else None, stop)
    return Reply(text=text, finish=finish, stop_sequence=matched)


def _parts(reply: Reply, simulator: Simulator) -> list[dict[str, Any]]:
    if reply.tool_name is None:
        return [{"text": reply.text}]
    call = {
        "id": "sim" + simulator.next_id(),
        "name": reply.tool_name,
        "args": orjson.loads(reply.tool_arguments),
    }
    # Thinking models return a signature with each call, which the client sends back.
    return [{"functionCall": call, "thoughtSignature": "c2ltLXNpZ25hdHVyZQ=="}]


def _stream_events(
    reply: Reply, usage: dict[str, Any], model: str, response_id: str, simulator: Simulator
) -> list[bytes]:
    def event(parts: list[dict[str, Any]], finish: str | None, event_usage: dict[str, Any]) -> bytes:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        payload = {
            "candidates": [candidate],
            "usageMetadata": event_usage,
            "modelVersion": model,
            "responseId": response_id,
        }
        return format_event(orjson.dumps(payload))

    # Events before the last carry only the prompt count, and the last the full usage.
    prompt_only = {
        "promptTokenCount": usage["promptTokenCount"],
        "totalTokenCount": usage["promptTokenCount"],
    }
    if reply.tool_name is not None:
        return [event(_parts(reply, simulator), _FINISH[reply.finish], usage)]
    pieces = split_pieces(reply.text, simulator.config.tokens_per_chunk) or [""]
    events = [event([{"text": piece}], None, prompt_only) for piece in pieces[:-1]]
    events.append(event([{"text": pieces[-1]}], _FINISH[reply.finish], usage))
    return events
