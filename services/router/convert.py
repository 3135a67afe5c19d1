"""Conversion between the typed chat messages and OpenAI-shaped dicts.

gRPC clients send typed ``ChatCompletionParams``; the pipeline works on OpenAI dicts.
Written out by hand because ``json_format`` would give proto JSON names and enum
names, not OpenAI's shapes.
"""

from __future__ import annotations

from typing import Any

from aigateway.type.v1 import chat_pb2
from google.protobuf import json_format

_ROLE_NAMES = {
    chat_pb2.ROLE_SYSTEM: "system",
    chat_pb2.ROLE_DEVELOPER: "developer",
    chat_pb2.ROLE_USER: "user",
    chat_pb2.ROLE_ASSISTANT: "assistant",
    chat_pb2.ROLE_TOOL: "tool",
}
_ROLE_VALUES = {name: value for value, name in _ROLE_NAMES.items()}


def params_to_request(params: chat_pb2.ChatCompletionParams) -> dict[str, Any]:
    """Return the OpenAI request dict for typed parameters.

    An unset role becomes ``"unspecified"`` so that validation rejects it naming the field.
    """
    request: dict[str, Any] = {}
    if params.HasField("extra_body"):
        request.update(json_format.MessageToDict(params.extra_body))
    request["model"] = params.model
    request["messages"] = [_message_to_dict(message) for message in params.messages]
    if params.tools:
        request["tools"] = [_tool_to_dict(tool) for tool in params.tools]
    which = params.tool_choice.WhichOneof("choice") if params.HasField("tool_choice") else None
    if which == "mode":
        request["tool_choice"] = params.tool_choice.mode
    elif which == "function_name":
        request["tool_choice"] = {"type": "function", "function": {"name": params.tool_choice.function_name}}
    if params.HasField("response_format"):
        request["response_format"] = _response_format_to_dict(params.response_format)
    if params.stop:
        request["stop"] = list(params.stop)
    for name in (
        "parallel_tool_calls",
        "n",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "seed",
        "presence_penalty",
        "frequency_penalty",
    ):
        if params.HasField(name):
            request[name] = getattr(params, name)
    if params.user:
        request["user"] = params.user
    if params.metadata:
        request["metadata"] = dict(params.metadata)
    if params.reasoning_effort:
        request["reasoning_effort"] = params.reasoning_effort
    if params.HasField("stream_options"):
        request["stream_options"] = {"include_usage": params.stream_options.include_usage}
    return request


def _message_to_dict(message: chat_pb2.ChatMessage) -> dict[str, Any]:
    result: dict[str, Any] = {"role": _ROLE_NAMES.get(message.role, "unspecified")}
    if message.HasField("content"):
        result["content"] = message.content
    elif message.content_parts:
        parts: list[dict[str, Any]] = []
        for part in message.content_parts:
            if part.WhichOneof("part") == "text":
                parts.append({"type": "text", "text": part.text})
            elif part.WhichOneof("part") == "image_url":
                image: dict[str, Any] = {"url": part.image_url.url}
                if part.image_url.detail:
                    image["detail"] = part.image_url.detail
                parts.append({"type": "image_url", "image_url": image})
        result["content"] = parts
    else:
        result["content"] = None
    if message.name:
        result["name"] = message.name
    if message.tool_calls:
        result["tool_calls"] = [
            {
                "id": call.id,
                "type": call.type or "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        result["tool_call_id"] = message.tool_call_id
    if message.HasField("refusal"):
        result["refusal"] = message.refusal
    return result


def _tool_to_dict(tool: chat_pb2.Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.function.name}
    if tool.function.description:
        function["description"] = tool.function.description
    if tool.function.HasField("parameters"):
        function["parameters"] = json_format.MessageToDict(tool.function.parameters)
    if tool.function.HasField("strict"):
        function["strict"] = tool.function.strict
    return {"type": tool.type or "function", "function": function}


def _response_format_to_dict(response_format: chat_pb2.ResponseFormat) -> dict[str, Any]:
    result: dict[str, Any] = {"type": response_format.type or "text"}
    if response_format.HasField("json_schema"):
        schema: dict[str, Any] = {"name": response_format.json_schema.name}
        if response_format.json_schema.description:
            schema["description"] = response_format.json_schema.description
        if response_format.json_schema.HasField("schema"):
            schema["schema"] = json_format.MessageToDict(response_format.json_schema.schema)
        if response_format.json_schema.HasField("strict"):
            schema["strict"] = response_format.json_schema.strict
        result["json_schema"] = schema
    return result


def usage_message(usage: dict[str, Any] | None) -> chat_pb2.Usage | None:
    """Return OpenAI usage as the typed message; None when there is none."""
    if not usage:
        return None
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return chat_pb2.Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        total_tokens=int(usage.get("total_tokens") or 0),
        prompt_tokens_details=chat_pb2.PromptTokensDetails(
            cached_tokens=int(prompt_details.get("cached_tokens") or 0),
            audio_tokens=int(prompt_details.get("audio_tokens") or 0),
        ),
        completion_tokens_details=chat_pb2.CompletionTokensDetails(
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
            audio_tokens=int(completion_details.get("audio_tokens") or 0),
            accepted_prediction_tokens=int(completion_details.get("accepted_prediction_tokens") or 0),
            rejected_prediction_tokens=int(completion_details.get("rejected_prediction_tokens") or 0),
        ),
    )


def _tool_call(call: dict[str, Any]) -> chat_pb2.ToolCall:
    function = call.get("function") or {}
    return chat_pb2.ToolCall(
        id=call.get("id") or "",
        type=call.get("type") or "function",
        function=chat_pb2.FunctionCall(name=function.get("name") or "", arguments=function.get("arguments") or ""),
    )


def completion_to_message(body: dict[str, Any]) -> chat_pb2.ChatCompletion:
    """Return the typed completion for an OpenAI chat.completion dict."""
    completion = chat_pb2.ChatCompletion(
        id=body.get("id") or "",
        created=int(body.get("created") or 0),
        model=body.get("model") or "",
        system_fingerprint=body.get("system_fingerprint") or "",
        service_tier=body.get("service_tier") or "",
    )
    for choice in body.get("choices") or ():
        message = choice.get("message") or {}
        typed = chat_pb2.ChatMessage(role=_ROLE_VALUES.get(message.get("role", "assistant"), chat_pb2.ROLE_ASSISTANT))
        if isinstance(message.get("content"), str):
            typed.content = message["content"]
        if isinstance(message.get("refusal"), str):
            typed.refusal = message["refusal"]
        typed.tool_calls.extend(_tool_call(call) for call in message.get("tool_calls") or ())
        completion.choices.append(
            chat_pb2.Choice(
                index=int(choice.get("index") or 0), message=typed, finish_reason=choice.get("finish_reason") or ""
            )
        )
    usage = usage_message(body.get("usage"))
    if usage is not None:
        completion.usage.CopyFrom(usage)
    return completion


def chunk_to_message(chunk: dict[str, Any]) -> chat_pb2.ChatCompletionChunk:
    """Return the typed chunk for an OpenAI chat.completion.chunk dict."""
    typed = chat_pb2.ChatCompletionChunk(
        id=chunk.get("id") or "",
        created=int(chunk.get("created") or 0),
        model=chunk.get("model") or "",
    )
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        typed_delta = chat_pb2.ChunkDelta(role=_ROLE_VALUES.get(delta.get("role", ""), chat_pb2.ROLE_UNSPECIFIED))
        if isinstance(delta.get("content"), str):
            typed_delta.content = delta["content"]
        if isinstance(delta.get("refusal"), str):
            typed_delta.refusal = delta["refusal"]
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            typed_delta.tool_calls.append(
                chat_pb2.ToolCallDelta(
                    index=int(call.get("index") or 0),
                    id=call.get("id") or "",
                    type=call.get("type") or "",
                    function=chat_pb2.FunctionCall(
                        name=function.get("name") or "", arguments=function.get("arguments") or ""
                    ),
                )
            )
        typed.choices.append(
            chat_pb2.ChunkChoice(
                index=int(choice.get("index") or 0), delta=typed_delta, finish_reason=choice.get("finish_reason") or ""
            )
        )
    usage = usage_message(chunk.get("usage"))
    if usage is not None:
        typed.usage.CopyFrom(usage)
    return typed
