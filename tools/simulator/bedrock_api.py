"""Amazon Bedrock Converse endpoints of the simulator: JSON and the binary event stream.

Paths: ``POST /model/{modelId}/converse`` and ``/model/{modelId}/converse-stream``.
Requests need SigV4 headers: an ``Authorization`` of the form
``AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/bedrock/aws4_request, SignedHeaders=...,
Signature=...`` and ``X-Amz-Date``, or a Bedrock API key as a bearer token. The
simulator checks the form, not the signature, because it does not know the secret.

``converse-stream`` responds in the AWS event-stream framing: per message a prelude
with lengths and a CRC32, typed headers (``:message-type``, ``:event-type``,
``:content-type``), a JSON payload and a CRC32 of the whole message. Errors inside the
stream are exception messages (``:message-type: exception``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import struct
import zlib
from typing import Any

import orjson
from aiohttp import web

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

__all__ = ["converse", "converse_stream", "encode_message"]

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9-]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
_STOP = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens", "tool_calls": "tool_use"}
_ERRORS = {
    400: ("ValidationException", "The provided request is not valid"),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "The service is temporarily unavailable."),
}
_FIRST_USER = (
    "A conversation must start with a user message. "
    "Try again with a conversation that starts with a user message."
)
_IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
# Bedrock pads stream payloads with a "p" field so that sizes do not reveal the text.
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """Frame one event-stream message with string headers, as AWS sends them."""
    encoded_headers = b""
    for name, value in headers.items():
        name_bytes = name.encode()
        value_bytes = value.encode()
        encoded_headers += bytes([len(name_bytes)]) + name_bytes + b"\x07"
        encoded_headers += struct.pack(">H", len(value_bytes)) + value_bytes
    total = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _event(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, orjson.dumps({**payload, "p": _PADDING[: 1 + len(event_type)]}))


def _exception(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return encode_message(headers, orjson.dumps({"message": message}))


def _error(status: int, message: str | None = None, retry_after: float | None = None) -> web.Response:
    kind, default = _ERRORS.get(status, ("InternalServerException", f"Simulated HTTP {status}."))
    headers = {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return json_response({"message": message or default}, status=status, headers=headers)


def _auth_problem(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and header[7:].strip():
        return None
    match = _AUTHORIZATION.fullmatch(header)
    if match is None:
        return "Authorization header requires SigV4 'Credential', 'SignedHeaders' and 'Signature'."
    if match.group("service") != "bedrock":
        return f"Credential should be scoped to correct service: 'bedrock', not {match.group('service')!r}."
    signed = match.group("signed").split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "SignedHeaders must include host and x-amz-date."
    date = request.headers.get("X-Amz-Date", "")
    if not date.startswith(match.group("date")):
        return "X-Amz-Date is missing or does not match the credential scope date."
    if "x-amz-security-token" in request.headers and "x-amz-security-token" not in signed:
        return "X-Amz-Security-Token must be signed."
    return None


async def converse(request: web.Request) -> web.StreamResponse:
    """Respond to ``POST /model/{modelId}/converse``."""
    return await _respond(request, stream=False)


async def converse_stream(request: web.Request) -> web.StreamResponse:
    """Respond to ``POST /model/{modelId}/converse-stream`` with the binary event stream."""
    return await _respond(request, stream=True)


async def _respond(request: web.Request, *, stream: bool) -> web.StreamResponse:
    simulator = request.app[SIMULATOR]
    problem = _auth_problem(request)
    if problem is not None:
        return json_response(
            {"message": problem},
            status=403,
            headers={"x-amzn-ErrorType": "IncompleteSignatureException:"},
        )
    body, parsed = await read_json(request)
    log_request(request, body)
    if not parsed or not isinstance(body, dict):
        return _error(400, "Malformed input request, please reformat your input and try again.")
    invalid = _validate(body)
    if invalid is not None:
        return _error(400, invalid)

    plan = simulator.plan(request.match_info.get("deployment", "default"))
    if plan.delay_s:
        await asyncio.sleep(plan.delay_s)
    step = plan.step
    if plan.error_status is not None:
        return _error(plan.error_status, step.message, step.retry_after)
    if step.error_after_chunks is not None and not stream:
        return _error(500, step.message)

    header_bytes = request.headers.get("x-sim-answer-bytes")
    answer_bytes = step.answer_bytes or (int(header_bytes) if header_bytes and header_bytes.isdigit() else None)
    blocks = _blocks(body, simulator, answer_bytes)
    prompt = count_texts(_prompt_texts(body))
    cached = min(step.cached_tokens, prompt)
    output = sum(reply.completion_tokens for reply in blocks)
    usage = {
        "inputTokens": prompt - cached,
        "outputTokens": output,
        "totalTokens": prompt + output,
        "cacheReadInputTokens": cached,
        "cacheWriteInputTokens": 0,
    }
    stop_reason = _STOP[blocks[-1].finish]
    tool_ids = ["tooluse_sim" + simulator.next_id() for _ in blocks]

    if not stream:
        content = [_content_block(reply, tool_id) for reply, tool_id in zip(blocks, tool_ids, strict=True)]
        answer = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": usage,
            "metrics": {"latencyMs": 12},
        }
        return await send_json_answer(request, answer, plan, {})

    events = _stream_events(blocks, tool_ids, stop_reason, usage, simulator)
    error_event = _exception(
        "serviceUnavailableException", step.message or "Bedrock is unable to process your request."
    )
    return await send_events(request, events, plan, error_event, {}, content_type="application/vnd.amazon.eventstream")


def _validate(body: dict[str, Any]) -> str | None:
    if "model" in body or "modelId" in body:
        return "extraneous key [model] is not permitted"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _FIRST_USER
    if messages[0].get("role") != "user":
        return _FIRST_USER

    previous_role = None
    open_tool_ids: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return f"messages.{index}.role: must be user or assistant"
        if role == previous_role:
            return "A conversation must alternate between user and assistant roles."
        previous_role = role
        content = message.get("content")
        if not isinstance(content, list) or not content:
            return f"messages.{index}.content: must be a non-empty list of content blocks"
        results: set[str] = set()
        for block_index, block in enumerate(content):
            problem = _block_problem(block, f"messages.{index}.content.{block_index}")
            if problem is not None:
                return problem
            if "toolResult" in block:
                results.add(block["toolResult"].get("toolUseId"))
        if role == "user":
            if results - open_tool_ids:
                return "The toolResult blocks don't match the toolUse blocks of the previous turn."
            open_tool_ids = set()
        else:
            open_tool_ids = {block["toolUse"]["toolUseId"] for block in content if "toolUse" in block}
    has_tool_blocks = any(
        "toolUse" in block or "toolResult" in block for message in messages for block in message["content"]
    )
    if has_tool_blocks and "toolConfig" not in body:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    system = body.get("system")
    if system is not None and (
        not isinstance(system, list) or not all(isinstance(b, dict) and isinstance(b.get("text"), str) for b in system)
    ):
        return "system: must be a list of text blocks"
    return None


def _block_problem(block: Any, where: str) -> str | None:
    if not isinstance(block, dict) or len(block) != 1:
        return f"{where}: a content block must have exactly one member"
    kind, value = next(iter(block.items()))
    if kind == "text":
        return None if isinstance(value, str) and value else f"{where}.text: must be a non-empty string"
    if kind == "image":
        if value.get("format") not in _IMAGE_FORMATS:
            return f"{where}.image.format: must be one of png, jpeg, gif, webp"
        source = value.get("source") or {}
        if "bytes" in source:
            try:
                base64.b64decode(source["bytes"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                return f"{where}.image.source.bytes: invalid base64"
        elif "s3Location" not in source:
            return f"{where}.image.source: must have bytes or s3Location"
        return None
    if kind == "document":
        return None if value.get("name") and value.get("format") else f"{where}.document: name and format are required"
    if kind == "toolUse":
        ok = isinstance(value.get("toolUseId"), str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value["toolUseId"])
        return None if ok and isinstance(value.get("input"), dict) else f"{where}.toolUse: invalid toolUseId or input"
    if kind == "toolResult":
        return None if isinstance(value.get("content"), list) else f"{where}.toolResult.content: must be a list"
    return f"{where}: unknown content block type {kind!r}"


def _texts(blocks: list[Any], *, with_results: bool) -> list[str]:
    texts: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif with_results and isinstance(block.get("toolResult"), dict):
            for inner in block["toolResult"].get("content") or ():
                if isinstance(inner.get("text"), str):
                    texts.append(inner["text"])
                elif "json" in inner:
                    texts.append(orjson.dumps(inner["json"]).decode())
    return texts


def _prompt_texts(body: dict[str, Any]) -> list[str]:
    texts = _texts(body.get("system") or [], with_results=False)
    for message in body["messages"]:
        texts.extend(_texts(message["content"], with_results=True))
    return texts


def _blocks(body: dict[str, Any], simulator: Simulator, answer_bytes: int | None) -> list[Reply]:
    """Decide the response content: one text block, or a short text and a tool call.

    With the ``auto`` tool choice a short text block comes before the call, as Claude
    models on Bedrock do.
    """
    messages = body["messages"]
    tool_config = body.get("toolConfig") or {}
    specs = [tool["toolSpec"] for tool in tool_config.get("tools") or [] if isinstance(tool.get("toolSpec"), dict)]
    choice = tool_config.get("toolChoice") or {"auto": {}}
    answering = any("toolResult" in block for block in messages[-1]["content"])
    if specs and not answering:
        spec = specs[0]
        if "tool" in choice:
            spec = next((item for item in specs if item.get("name") == choice["tool"].get("name")), spec)
        call = Reply(
            text="",
            tool_name=spec.get("name", "tool"),
            tool_arguments=sample_arguments((spec.get("inputSchema") or {}).get("json")),
            finish="tool_calls",
        )
        return [Reply(text=f"Calling {call.tool_name}."), call] if "auto" in choice else [call]

    last_user = ""
    for message in reversed(messages):
        if message["role"] == "user":
            texts = _texts(message["content"], with_results=False)
            if texts:
                last_user = " ".join(texts)
                break
    text = pad_answer(ANSWER_PREFIX + last_user, answer_bytes or simulator.config.answer_bytes)
    config = body.get("inferenceConfig") or {}
    stop = [item for item in config.get("stopSequences") or [] if isinstance(item, str)]
    limit = config.get("maxTokens")
    text, finish, matched = truncate(text, limit if isinstance(limit, int) else None, stop)
    return [Reply(text=text, finish=finish, stop_sequence=matched)]


def _content_block(reply: Reply, tool_id: str) -> dict[str, Any]:
    if reply.tool_name is None:
        return {"text": reply.text}
    return {"toolUse": {"toolUseId": tool_id, "name": reply.tool_name, "input": orjson.loads(reply.tool_arguments)}}


def _stream_events(
    blocks: list[Reply], tool_ids: list[str], stop_reason: str, usage: dict[str, Any], simulator: Simulator
) -> list[bytes]:
    events = [_event("messageStart", {"role": "assistant"})]
    for index, (reply, tool_id) in enumerate(zip(blocks, tool_ids, strict=True)):
        if reply.tool_name is None:
            for piece in split_pieces(reply.text, simulator.config.tokens_per_chunk):
                events.append(_event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}))
        else:
            start = {"toolUse": {"toolUseId": tool_id, "name": reply.tool_name}}
            events.append(_event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            for piece in split_json(reply.tool_arguments):
                delta = {"toolUse": {"input": piece}}
                events.append(_event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        events.append(_event("contentBlockStop", {"contentBlockIndex": index}))
    events.append(_event("messageStop", {"stopReason": stop_reason}))
    events.append(_event("metadata", {"usage": usage, "metrics": {"latencyMs": 12}}))
    return events
