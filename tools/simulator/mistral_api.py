"""Mistral chat completions endpoint of the simulator.

Mistral's API is OpenAI-shaped with its own rules, which the simulator enforces so
that tests see what Mistral would reject:

- Fields outside Mistral's schema (``max_completion_tokens``, ``seed``,
  ``stream_options``, ``user`` and others) are rejected with HTTP 422.
- ``developer`` messages are rejected, and tool call ids must be nine letters or digits.
- Streams always end with usage, sent on the chunk with the finish reason.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import orjson
from aiohttp import web

from libs.sse import format_event
from tools.simulator.app import (
    SIMULATOR,
    json_response,
    log_request,
    read_json,
    send_events,
    send_json_answer,
)
from tools.simulator.content import Reply, split_pieces
from tools.simulator.openai_api import (
    _authorized,
    _completion,
    _header_bytes,
    _missing_key,
    _reply,
    _usage,
    _validate,
    scripted_error,
)

__all__ = ["chat_completions"]

_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "prediction",
        "parallel_tool_calls",
        "prompt_mode",
        "safe_prompt",
    }
)
_TOOL_CHOICES = frozenset({"auto", "none", "any", "required"})
_TOOL_ID = re.compile(r"[A-Za-z0-9]{9}")
_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool_calls": "tool_calls"}


def _error(message: str, status: int = 422) -> web.Response:
    return json_response(
        {"object": "error", "message": message, "type": "invalid_request_error", "param": None, "code": None},
        status=status,
    )


def _problem(body: dict[str, Any]) -> str | None:
    extra = sorted(set(body) - _FIELDS)
    if extra:
        return f"Extra inputs are not permitted: body.{extra[0]}"
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in _TOOL_CHOICES:
        return f"Input should be 'auto', 'none', 'any' or 'required': body.tool_choice ({choice})"
    for index, message in enumerate(body["messages"]):
        if message.get("role") == "developer":
            return f"Input tag 'developer' found using 'role' does not match: body.messages.{index}"
        ids = [call.get("id") for call in message.get("tool_calls") or () if isinstance(call, dict)]
        if message.get("role") == "tool":
            ids.append(message.get("tool_call_id"))
        for call_id in ids:
            if not isinstance(call_id, str) or not _TOOL_ID.fullmatch(call_id):
                return f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9."
    return None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Respond to ``POST .../mistral/v1/chat/completions`` as JSON or as an SSE stream."""
    simulator = request.app[SIMULATOR]
    if not _authorized(request):
        return _missing_key()
    body, parsed = await read_json(request)
    log_request(request, body)
    if not parsed:
        return _error("Invalid JSON body", status=400)
    invalid = _validate(body)
    if invalid is not None:
        return _error(invalid[0])
    problem = _problem(body)
    if problem is not None:
        return _error(problem)

    plan = simulator.plan(request.match_info.get("deployment", "default"))
    if plan.delay_s:
        await asyncio.sleep(plan.delay_s)
    step = plan.step
    if plan.error_status is not None:
        return scripted_error(plan.error_status, step.message, step.retry_after)

    reply = _reply(body, simulator, step.answer_bytes or _header_bytes(request))
    usage = _usage(body, reply, step.cached_tokens, 0)
    # Mistral reports only the three totals.
    usage = {key: usage[key] for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
    completion_id = simulator.next_id()
    created = int(time.time())
    if not body.get("stream"):
        answer = _completion(completion_id, created, body["model"], reply, usage, simulator)
        answer.pop("system_fingerprint", None)
        for call in answer["choices"][0]["message"].get("tool_calls") or ():
            call["id"] = "sim" + simulator.next_id()[-6:]
        return await send_json_answer(request, answer, plan, {})

    events = _stream_events(completion_id, created, body["model"], reply, usage, simulator)
    error_event = format_event(
        orjson.dumps({"object": "error", "message": "Service unavailable", "type": "internal_error"})
    )
    return await send_events(request, events, plan, error_event, {})


def _stream_events(
    completion_id: str,
    created: int,
    model: str,
    reply: Reply,
    usage: dict[str, Any],
    simulator: Any,
) -> list[bytes]:
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return format_event(orjson.dumps({**base, "choices": [choice], **extra}))

    events = [chunk({"role": "assistant", "content": ""})]
    if reply.tool_name is not None:
        # Mistral sends a tool call whole, in one chunk.
        call = {
            "id": "sim" + simulator.next_id()[-6:],
            "function": {"name": reply.tool_name, "arguments": reply.tool_arguments},
            "index": 0,
        }
        events.append(chunk({"tool_calls": [call]}))
    else:
        for piece in split_pieces(reply.text, simulator.config.tokens_per_chunk):
            events.append(chunk({"content": piece}))
    events.append(chunk({"content": ""}, _FINISH[reply.finish], usage=usage))
    events.append(format_event(b"[DONE]"))
    return events
