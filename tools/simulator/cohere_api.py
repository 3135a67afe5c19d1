"""Cohere Chat API v2 endpoint of the simulator, JSON and SSE.

``POST /v2/chat`` with ``Authorization: Bearer <key>``. The checks follow the API.
Top-level fields outside Cohere's schema are rejected, so ``top_p`` or
``max_completion_tokens`` sent by mistake fail as they would at Cohere. Roles are
system, user, assistant and tool, ``tool_choice`` is REQUIRED or NONE, and every tool
message must reply to a call of an earlier assistant message.

Usage reports the prompt in ``billed_units`` and, in ``tokens``, the prompt plus a
fixed overhead that stands for Cohere's prompt template, so tests can tell them apart.
"""

from __future__ import annotations

import asyncio
import uuid
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

__all__ = ["TEMPLATE_TOKENS", "chat"]

TEMPLATE_TOKENS = 7
"""Tokens added to ``usage.tokens.input_tokens`` for the simulated prompt template."""

_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "tools",
        "strict_tools",
        "documents",
        "citation_options",
        "response_format",
        "safety_mode",
        "max_tokens",
        "stop_sequences",
        "temperature",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "k",
        "p",
        "logprobs",
        "tool_choice",
        "thinking",
    }
)
_FINISH = {
    "stop": "COMPLETE",
    "stop_sequence": "STOP_SEQUENCE",
    "length": "MAX_TOKENS",
    "tool_calls": "TOOL_CALL",
}
_MESSAGES = {
    400: "invalid request",
    401: "invalid api token",
    404: "model not found",
    429: "You are using a Trial key, which is limited to 20 API calls / minute.",
    500: "internal server error",
    503: "service unavailable",
}


def _error(status: int, message: str, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return json_response({"id": str(uuid.uuid4()), "message": message}, status=status, headers=headers)


async def chat(request: web.Request) -> web.StreamResponse:
    """Respond to ``POST /v2/chat`` as JSON or as an SSE stream."""
    simulator = request.app[SIMULATOR]
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        return _error(401, "no api key supplied")
    body, parsed = await read_json(request)
    log_request(request, body)
    if not parsed or not isinstance(body, dict):
        return _error(400, "invalid request: body must be a JSON object")
    problem = _validate(body)
    if problem is not None:
        return _error(400, f"invalid request: {problem}")

    plan = simulator.plan(request.match_info.get("deployment", "default"))
    if plan.delay_s:
        await asyncio.sleep(plan.delay_s)
    step = plan.step
    if plan.error_status is not None:
        message = step.message or _MESSAGES.get(plan.error_status, f"Simulated HTTP {plan.error_status}.")
        return _error(plan.error_status, message, step.retry_after)
    if step.error_after_chunks is not None and not body.get("stream"):
        return _error(500, step.message or _MESSAGES[500])

    header_bytes = request.headers.get("x-sim-answer-bytes")
    answer_bytes = step.answer_bytes or (int(header_bytes) if header_bytes and header_bytes.isdigit() else None)
    reply = _reply(body, simulator, answer_bytes)
    plan_text = f"I will call {reply.tool_name}." if reply.tool_name is not None else ""
    prompt = count_texts(_prompt_texts(body["messages"]))
    output = reply.completion_tokens + count_texts([plan_text])
    usage: dict[str, Any] = {
        "billed_units": {"input_tokens": prompt, "output_tokens": output},
        "tokens": {"input_tokens": prompt + TEMPLATE_TOKENS, "output_tokens": output},
    }
    if step.cached_tokens:
        usage["cached_tokens"] = min(step.cached_tokens, prompt)
    response_id = str(uuid.uuid4())
    call_id = "sim_" + simulator.next_id()

    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant"}
        if reply.tool_name is None:
            message["content"] = [{"type": "text", "text": reply.text}]
        else:
            message["tool_plan"] = plan_text
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": reply.tool_name, "arguments": reply.tool_arguments},
                }
            ]
        answer = {
            "id": response_id,
            "finish_reason": _FINISH[reply.finish],
            "message": message,
            "usage": usage,
        }
        return await send_json_answer(request, answer, plan, {})

    events = _stream_events(response_id, reply, plan_text, call_id, usage, simulator)
    # NOTE: Cohere documents no error event inside a stream. The simulator sends its
    # error body shape as one data line, and the adapter reads that shape.
    error_event = format_event(orjson.dumps({"message": step.message or _MESSAGES[503]}))
    return await send_events(request, events, plan, error_event, {})


def _validate(body: dict[str, Any]) -> str | None:
    extra = sorted(set(body) - _FIELDS)
    if extra:
        return f"unknown field: parameter '{extra[0]}' is not a valid field"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model is required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("REQUIRED", "NONE"):
        return f"tool_choice must be one of REQUIRED, NONE; received {choice!r}"

    called: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "user", "assistant", "tool"):
            return f"messages[{index}].role must be one of system, user, assistant, tool"
        if role == "assistant":
            for call in message.get("tool_calls") or ():
                if not isinstance(call, dict) or not isinstance(call.get("id"), str):
                    return f"messages[{index}].tool_calls must have ids"
                called.add(call["id"])
        if role == "tool" and message.get("tool_call_id") not in called:
            return f"messages[{index}].tool_call_id does not match a tool call"
    return None


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return []


def _prompt_texts(messages: list[dict[str, Any]]) -> list[str]:
    texts: list[str] = []
    for message in messages:
        texts.extend(_texts(message.get("content")))
        if isinstance(message.get("tool_plan"), str):
            texts.append(message["tool_plan"])
    return texts


def _reply(body: dict[str, Any], simulator: Simulator, answer_bytes: int | None) -> Reply:
    messages = body["messages"]
    tools = [tool for tool in body.get("tools") or [] if isinstance(tool, dict)]
    if tools and body.get("tool_choice") != "NONE" and messages[-1].get("role") != "tool":
        function = tools[0].get("function") or {}
        return Reply(
            text="",
            tool_name=function.get("name", "tool"),
            tool_arguments=sample_arguments(function.get("parameters")),
            finish="tool_calls",
        )

    last_user = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            texts = _texts(message.get("content"))
            if texts:
                last_user = " ".join(texts)
                break
    text = pad_answer(ANSWER_PREFIX + last_user, answer_bytes or simulator.config.answer_bytes)
    stop = [item for item in body.get("stop_sequences") or [] if isinstance(item, str)]
    limit = body.get("max_tokens")
    text, finish, matched = truncate(text, limit if isinstance(limit, int) else None, stop)
    return Reply(text=text, finish=finish, stop_sequence=matched)


def _stream_events(
    response_id: str,
    reply: Reply,
    plan_text: str,
    call_id: str,
    usage: dict[str, Any],
    simulator: Simulator,
) -> list[bytes]:
    def event(kind: str, **fields: Any) -> bytes:
        return format_event(orjson.dumps({"type": kind, **fields}), event=kind)

    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events = [event("message-start", id=response_id, delta={"message": start})]
    if reply.tool_name is None:
        events.append(event("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}}))
        for piece in split_pieces(reply.text, simulator.config.tokens_per_chunk):
            events.append(event("content-delta", index=0, delta={"message": {"content": {"text": piece}}}))
        events.append(event("content-end", index=0))
    else:
        for piece in split_pieces(plan_text, simulator.config.tokens_per_chunk):
            events.append(event("tool-plan-delta", delta={"message": {"tool_plan": piece}}))
        call = {"id": call_id, "type": "function", "function": {"name": reply.tool_name, "arguments": ""}}
        events.append(event("tool-call-start", index=0, delta={"message": {"tool_calls": call}}))
        for piece in split_json(reply.tool_arguments):
            events.append(
                event(
                    "tool-call-delta",
                    index=0,
                    delta={"message": {"tool_calls": {"function": {"arguments": piece}}}},
                )
            )
        events.append(event("tool-call-end", index=0))
    events.append(event("message-end", delta={"finish_reason": _FINISH[reply.finish], "usage": usage}))
    return events
