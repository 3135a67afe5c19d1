"""OpenAI Chat Completions and Models endpoints of the simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
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
    split_json,
    split_pieces,
    truncate,
)

__all__ = ["chat_completions", "error_body", "models", "respond"]

_ERRORS = {
    400: ("invalid_request_error", None, "The request is invalid."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}
_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool_calls": "tool_calls"}


def error_body(
    message: str, kind: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Return OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def scripted_error(status: int, message: str | None, retry_after: float | None) -> web.Response:
    """Return an error response as OpenAI sends it for ``status``."""
    kind, code, default = _ERRORS.get(status, ("server_error", None, f"Simulated HTTP {status}."))
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return json_response(
        error_body(message or default, kind, code=code), status=status, headers=headers
    )


async def models(request: web.Request) -> web.Response:
    """List the configured models, in Anthropic's shape when the request is Anthropic's."""
    simulator = request.app[SIMULATOR]
    if "x-api-key" in request.headers and "anthropic-version" in request.headers:
        data = [
            {
                "type": "model",
                "id": name,
                "display_name": name,
                "created_at": "2024-10-22T00:00:00Z",
            }
            for name in simulator.config.models
        ]
        return json_response(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )
    if not _authorized(request):
        return _missing_key()
    return json_response(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 1721172741, "owned_by": "simulator"}
                for name in simulator.config.models
            ],
        }
    )


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Respond to ``POST /v1/chat/completions`` as JSON or as an SSE stream."""
    if not _authorized(request):
        return _missing_key()
    return await respond(request)


async def respond(request: web.Request, *, model: str | None = None) -> web.StreamResponse:
    """Answer an authorized chat completions request; ``model`` fills a missing body model."""
    simulator = request.app[SIMULATOR]
    body, parsed = await read_json(request)
    log_request(request, body)
    if parsed and model is not None and isinstance(body, dict):
        body = {"model": model, **body}
    problem = (
        _validate(body) if parsed else ("We could not parse the JSON body of your request.", None)
    )
    if problem is not None:
        message, param = problem
        return json_response(error_body(message, "invalid_request_error", param=param), status=400)

    plan = simulator.plan(_deployment(request))
    if plan.delay_s:
        await asyncio.sleep(plan.delay_s)
    step = plan.step
    if plan.error_status is not None:
        return scripted_error(plan.error_status, step.message, step.retry_after)
    if step.error_after_chunks is not None and not body.get("stream"):
        return scripted_error(500, step.message, None)

    reply = _reply(body, simulator, step.answer_bytes or _header_bytes(request))
    usage = _usage(body, reply, step.cached_tokens, step.reasoning_tokens)
    completion_id = "chatcmpl-sim" + simulator.next_id()
    created = int(time.time())
    model = body["model"]
    headers = {"x-request-id": "req_" + completion_id[9:]}

    if not body.get("stream"):
        answer = _completion(completion_id, created, model, reply, usage, simulator)
        return await send_json_answer(request, answer, plan, headers)

    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
    events = _stream_events(
        completion_id, created, model, reply, usage if include_usage else None, simulator
    )
    error_event = format_event(
        orjson.dumps(
            error_body(
                step.message or "The server had an error while processing your request.",
                "server_error",
            )
        )
    )
    return await send_events(request, events, plan, error_event, headers)


def _deployment(request: web.Request) -> str:
    return request.match_info.get("deployment", "default")


def _authorized(request: web.Request) -> bool:
    if not request.app[SIMULATOR].config.require_key:
        return True
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and bool(header[7:].strip())


def _missing_key() -> web.Response:
    return json_response(
        error_body(
            "You didn't provide an API key. Provide it in the Authorization header "
            "(Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
        ),
        status=401,
    )


def _header_bytes(request: web.Request) -> int | None:
    raw = request.headers.get("x-sim-answer-bytes")
    return int(raw) if raw and raw.isdigit() else None


def _validate(body: Any) -> tuple[str, str | None] | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object.", None
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter", "model"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array", "messages"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
        ):
            return f"Invalid value for 'messages[{index}].role'.", f"messages[{index}].role"
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        return "'tools' must be an array", "tools"
    return None


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    texts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
    return texts


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            texts = _texts([message])
            if texts:
                return " ".join(texts)
    return ""


def _reply(body: dict[str, Any], simulator: Simulator, answer_bytes: int | None) -> Reply:
    messages = body["messages"]
    tools = [tool for tool in body.get("tools") or [] if isinstance(tool, dict)]
    choice = body.get("tool_choice", "auto")
    if tools and choice != "none" and messages[-1].get("role") != "tool":
        tool = tools[0]
        if isinstance(choice, dict):
            wanted = (choice.get("function") or {}).get("name")
            tool = next(
                (item for item in tools if (item.get("function") or {}).get("name") == wanted),
                tool,
            )
        function = tool.get("function") or {}
        return Reply(
            text="",
            tool_name=function.get("name", "tool"),
            tool_arguments=sample_arguments(function.get("parameters")),
            finish="tool_calls",
        )

    text = pad_answer(
        ANSWER_PREFIX + _last_user_text(messages), answer_bytes or simulator.config.answer_bytes
    )
    stop = body.get("stop")
    sequences = [stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str)]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    text, finish, matched = truncate(text, limit if isinstance(limit, int) else None, sequences)
    return Reply(text=text, finish=finish, stop_sequence=matched)


def _usage(
    body: dict[str, Any], reply: Reply, cached_tokens: int, reasoning_tokens: int
) -> dict[str, Any]:
    prompt = count_texts(_texts(body["messages"]))
    completion = reply.completion_tokens + reasoning_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": min(cached_tokens, prompt), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _completion(
    completion_id: str,
    created: int,
    model: str,
    reply: Reply,
    usage: dict[str, Any],
    simulator: Simulator,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_name is not None:
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": "call_sim" + simulator.next_id(),
                "type": "function",
                "function": {"name": reply.tool_name, "arguments": reply.tool_arguments},
            }
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _FINISH[reply.finish],
            }
        ],
        "usage": usage,
        "system_fingerprint": "fp_simulator",
    }


def _stream_events(
    completion_id: str,
    created: int,
    model: str,
    reply: Reply,
    usage: dict[str, Any] | None,
    simulator: Simulator,
) -> list[bytes]:
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_simulator",
    }
    # With include_usage, OpenAI sends "usage": null on every chunk but the last.
    usage_field: dict[str, Any] = {"usage": None} if usage is not None else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return format_event(orjson.dumps({**base, "choices": [choice], **usage_field}))

    events: list[bytes] = []
    if reply.tool_name is not None:
        call = {
            "index": 0,
            "id": "call_sim" + simulator.next_id(),
            "type": "function",
            "function": {"name": reply.tool_name, "arguments": ""},
        }
        events.append(
            chunk({"role": "assistant", "content": None, "tool_calls": [call], "refusal": None})
        )
        for piece in split_json(reply.tool_arguments):
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    else:
        events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        for piece in split_pieces(reply.text, simulator.config.tokens_per_chunk):
            events.append(chunk({"content": piece}))
    events.append(chunk({}, _FINISH[reply.finish]))

    if usage is not None:
        events.append(format_event(orjson.dumps({**base, "choices": [], "usage": usage})))
    events.append(format_event(b"[DONE]"))
    return events
