"""Anthropic Messages endpoint of the simulator, with the API's request checks."""

from __future__ import annotations

import asyncio
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

__all__ = ["error_body", "messages"]

_ERRORS = {
    400: ("invalid_request_error", "The request is invalid."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("overloaded_error", "Overloaded"),
    529: ("overloaded_error", "Overloaded"),
}
_STOP = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool_calls": "tool_use",
}


def error_body(kind: str, message: str) -> dict[str, Any]:
    """Return Anthropic's error shape."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def scripted_error(status: int, message: str | None, retry_after: float | None) -> web.Response:
    """Return an error response as Anthropic sends it for ``status``."""
    kind, default = _ERRORS.get(status, ("api_error", f"Simulated HTTP {status}."))
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    return json_response(error_body(kind, message or default), status=status, headers=headers)


def _invalid(message: str) -> web.Response:
    return json_response(error_body("invalid_request_error", message), status=400)


async def messages(request: web.Request) -> web.StreamResponse:
    """Respond to ``POST /v1/messages`` as JSON or as an SSE stream."""
    simulator = request.app[SIMULATOR]
    if not request.headers.get("x-api-key"):
        return json_response(
            error_body("authentication_error", "x-api-key header is required"), status=401
        )
    if not request.headers.get("anthropic-version"):
        return _invalid("anthropic-version: header is required")

    body, parsed = await read_json(request)
    log_request(request, body)
    if not parsed or not isinstance(body, dict):
        return _invalid("The request body is not valid JSON.")
    problem = _validate(body)
    if problem is not None:
        return _invalid(problem)

    plan = simulator.plan(request.match_info.get("deployment", "default"))
    if plan.delay_s:
        await asyncio.sleep(plan.delay_s)
    step = plan.step
    if plan.error_status is not None:
        return scripted_error(plan.error_status, step.message, step.retry_after)
    if step.error_after_chunks is not None and not body.get("stream"):
        return scripted_error(500, step.message, None)

    header_bytes = request.headers.get("x-sim-answer-bytes")
    answer_bytes = step.answer_bytes or (
        int(header_bytes) if header_bytes and header_bytes.isdigit() else None
    )
    blocks = _blocks(body, simulator, answer_bytes)
    prompt = count_texts(_prompt_texts(body))
    cached = min(step.cached_tokens, prompt)
    usage = {
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": sum(reply.completion_tokens for reply in blocks),
    }
    message_id = "msg_sim" + simulator.next_id()
    headers = {"request-id": "req_sim" + message_id[7:]}
    last = blocks[-1]
    stop_reason = _STOP[last.finish]

    if not body.get("stream"):
        answer = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [_content_block(reply, simulator) for reply in blocks],
            "stop_reason": stop_reason,
            "stop_sequence": last.stop_sequence,
            "usage": usage,
        }
        return await send_json_answer(request, answer, plan, headers)

    events = _stream_events(message_id, body["model"], blocks, stop_reason, last, usage, simulator)
    error_event = format_event(
        orjson.dumps(error_body("overloaded_error", step.message or "Overloaded")), event="error"
    )
    return await send_events(request, events, plan, error_event, headers)


def _validate(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: Field required"
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a valid string or list"
    if isinstance(system, list):
        for index, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text" or not block.get("text"):
                return f"system.{index}: text content blocks must be non-empty"
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        return "messages: at least one message is required"

    previous_tool_ids: set[str] = set()
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        blocks = _as_blocks(turn.get("content"))
        if blocks is None:
            return f"messages.{index}.content: Input should be a valid string or list"
        for block_index, block in enumerate(blocks):
            if block.get("type") == "text" and not block.get("text"):
                return (
                    f"messages.{index}.content.{block_index}: text content blocks must be non-empty"
                )
        result_ids = {
            block.get("tool_use_id") for block in blocks if block.get("type") == "tool_result"
        }
        if turn["role"] == "user":
            unknown = result_ids - previous_tool_ids
            if unknown:
                return (
                    f"messages.{index}.content: unexpected tool_use_id found in tool_result "
                    f"blocks: {sorted(map(str, unknown))[0]}"
                )
            missing = previous_tool_ids - result_ids
            if missing:
                return (
                    f"messages.{index}: tool_use ids were found without tool_result blocks "
                    f"immediately after: {sorted(missing)[0]}"
                )
            previous_tool_ids = set()
        else:
            if result_ids:
                return f"messages.{index}: tool_result blocks are only allowed in user messages"
            if previous_tool_ids:
                return f"messages.{index}: tool_use ids were found without tool_result blocks"
            previous_tool_ids = {
                str(block.get("id")) for block in blocks if block.get("type") == "tool_use"
            }
    return None


def _as_blocks(content: Any) -> list[dict[str, Any]] | None:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(block, dict) for block in content):
        return content
    return None


def _block_texts(blocks: list[dict[str, Any]], *, with_results: bool) -> list[str]:
    texts: list[str] = []
    for block in blocks:
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif with_results and block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, str):
                texts.append(inner)
            elif isinstance(inner, list):
                texts.extend(_block_texts(inner, with_results=False))
    return texts


def _prompt_texts(body: dict[str, Any]) -> list[str]:
    system = body.get("system")
    texts = [system] if isinstance(system, str) else _block_texts(system or [], with_results=False)
    for turn in body["messages"]:
        texts.extend(_block_texts(_as_blocks(turn["content"]) or [], with_results=True))
    return texts


def _last_user_text(turns: list[dict[str, Any]]) -> str:
    for turn in reversed(turns):
        if turn["role"] == "user":
            texts = _block_texts(_as_blocks(turn["content"]) or [], with_results=False)
            if texts:
                return " ".join(texts)
    return ""


def _blocks(body: dict[str, Any], simulator: Simulator, answer_bytes: int | None) -> list[Reply]:
    """Decide the response content: one text block, or a tool call.

    With tool_choice "auto" a short text block comes before the call, as Claude does.
    """
    turns = body["messages"]
    tools = [tool for tool in body.get("tools") or [] if isinstance(tool, dict)]
    choice = body.get("tool_choice") or {"type": "auto"}
    last_blocks = _as_blocks(turns[-1]["content"]) or []
    answering_result = any(block.get("type") == "tool_result" for block in last_blocks)

    if tools and choice.get("type") != "none" and not answering_result:
        tool = tools[0]
        if choice.get("type") == "tool":
            tool = next((item for item in tools if item.get("name") == choice.get("name")), tool)
        call = Reply(
            text="",
            tool_name=tool.get("name", "tool"),
            tool_arguments=sample_arguments(tool.get("input_schema")),
            finish="tool_calls",
        )
        if choice.get("type") == "auto":
            return [Reply(text=f"Calling {call.tool_name}."), call]
        return [call]

    text = pad_answer(
        ANSWER_PREFIX + _last_user_text(turns), answer_bytes or simulator.config.answer_bytes
    )
    stop = [item for item in body.get("stop_sequences") or [] if isinstance(item, str)]
    text, finish, matched = truncate(text, body["max_tokens"], stop)
    return [Reply(text=text, finish=finish, stop_sequence=matched)]


def _content_block(reply: Reply, simulator: Simulator) -> dict[str, Any]:
    if reply.tool_name is None:
        return {"type": "text", "text": reply.text}
    return {
        "type": "tool_use",
        "id": "toolu_sim" + simulator.next_id(),
        "name": reply.tool_name,
        "input": orjson.loads(reply.tool_arguments),
    }


def _stream_events(
    message_id: str,
    model: str,
    blocks: list[Reply],
    stop_reason: str,
    last: Reply,
    usage: dict[str, Any],
    simulator: Simulator,
) -> list[bytes]:
    def event(name: str, payload: dict[str, Any]) -> bytes:
        return format_event(orjson.dumps(payload), event=name)

    start_usage = {**usage, "output_tokens": 1}
    events = [
        event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        ),
    ]
    for index, reply in enumerate(blocks):
        if reply.tool_name is None:
            start = {"type": "text", "text": ""}
            deltas = [
                {"type": "text_delta", "text": piece}
                for piece in split_pieces(reply.text, simulator.config.tokens_per_chunk)
            ]
        else:
            start = {
                "type": "tool_use",
                "id": "toolu_sim" + simulator.next_id(),
                "name": reply.tool_name,
                "input": {},
            }
            # Anthropic opens a tool's input with an empty partial_json.
            deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
                {"type": "input_json_delta", "partial_json": piece}
                for piece in split_json(reply.tool_arguments)
            ]
        events.append(
            event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": start,
                },
            )
        )
        if index == 0:
            events.append(event("ping", {"type": "ping"}))
        events.extend(
            event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
            for delta in deltas
        )
        events.append(event("content_block_stop", {"type": "content_block_stop", "index": index}))

    events.append(
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": last.stop_sequence},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(event("message_stop", {"type": "message_stop"}))
    return events
