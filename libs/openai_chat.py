"""Parsing and validating OpenAI Chat Completions requests.

The router works on the request as a dict in OpenAI's JSON shape, so fields the gateway
does not model pass through to OpenAI-compatible providers unchanged. Validation checks
the fields the gateway reads and reports the first problem with the field's path
(``messages[2].content``), as OpenAI does in ``param``.

The router and the security service's screening at the edge share it, so both accept
and reject the same bodies.
"""

from __future__ import annotations

from typing import Any

import orjson

from libs.errors import InvalidRequestError

MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Content part types of OpenAI Chat Completions messages.
CONTENT_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})
MAX_STOP_SEQUENCES = 4
MAX_METADATA_PAIRS = 16


def _invalid(param: str, message: str, code: str = "invalid_value") -> InvalidRequestError:
    return InvalidRequestError(message, reason="INVALID_REQUEST", param=param, openai_code=code)


def parse_body(body: bytes) -> dict[str, Any]:
    """Decode a request body into a dict; reject bodies that are not one JSON object."""
    if not body:
        raise InvalidRequestError(
            "the request body is empty: send a JSON object with `model` and `messages`",
            reason="INVALID_JSON",
            openai_code="invalid_json",
        )
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"the request body is not valid JSON ({exc.msg} at character {exc.pos}): send a JSON object",
            reason="INVALID_JSON",
            openai_code="invalid_json",
        ) from None
    if not isinstance(request, dict):
        raise InvalidRequestError(
            f"the request body must be a JSON object, not a JSON {type(request).__name__}",
            reason="INVALID_JSON",
            openai_code="invalid_json",
        )
    return request


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _expect(request: dict[str, Any], name: str, kinds: tuple[type, ...], expected: str) -> Any:
    value = request.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in kinds:
        raise _invalid(name, f"invalid type for `{name}`: expected {expected}, got a boolean", "invalid_type")
    if not isinstance(value, kinds):
        raise _invalid(name, f"invalid type for `{name}`: expected {expected}, got {_type_name(value)}", "invalid_type")
    return value


def _number_in_range(request: dict[str, Any], name: str, low: float, high: float) -> None:
    value = _expect(request, name, (int, float), "a number")
    if value is not None and not low <= value <= high:
        raise _invalid(name, f"`{name}` is {value}; it must be between {low:g} and {high:g}")


def _positive_int(request: dict[str, Any], name: str) -> None:
    value = _expect(request, name, (int,), "an integer")
    if value is not None and value < 1:
        raise _invalid(name, f"`{name}` is {value}; it must be at least 1")


def validate(request: dict[str, Any]) -> None:
    """Check the fields the gateway reads; raise InvalidRequestError naming the first bad one."""
    model = request.get("model")
    if model is None:
        raise _invalid("model", "missing required parameter `model`", "missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise _invalid(
            "model", f"invalid type for `model`: expected a non-empty string, got {_type_name(model)}", "invalid_type"
        )

    messages = request.get("messages")
    if messages is None:
        raise _invalid("messages", "missing required parameter `messages`", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _invalid(
            "messages", f"invalid type for `messages`: expected an array, got {_type_name(messages)}", "invalid_type"
        )
    if not messages:
        raise _invalid("messages", "`messages` is empty: send at least one message")
    for index, message in enumerate(messages):
        _validate_message(index, message)

    _number_in_range(request, "temperature", 0, 2)
    _number_in_range(request, "top_p", 0, 1)
    _number_in_range(request, "presence_penalty", -2, 2)
    _number_in_range(request, "frequency_penalty", -2, 2)
    _positive_int(request, "n")
    _positive_int(request, "max_tokens")
    _positive_int(request, "max_completion_tokens")
    _expect(request, "seed", (int,), "an integer")
    _expect(request, "stream", (bool,), "a boolean")
    _expect(request, "user", (str,), "a string")
    _expect(request, "parallel_tool_calls", (bool,), "a boolean")
    options = _expect(request, "stream_options", (dict,), "an object")
    if options is not None and "include_usage" in options and not isinstance(options["include_usage"], bool):
        raise _invalid(
            "stream_options.include_usage",
            "invalid type for `stream_options.include_usage`: "
            f"expected a boolean, got {_type_name(options['include_usage'])}",
            "invalid_type",
        )

    stop = request.get("stop")
    if stop is not None:
        if isinstance(stop, list):
            if len(stop) > MAX_STOP_SEQUENCES:
                raise _invalid("stop", f"`stop` has {len(stop)} sequences; at most {MAX_STOP_SEQUENCES} are allowed")
            for index, item in enumerate(stop):
                if not isinstance(item, str):
                    raise _invalid(
                        f"stop[{index}]", f"invalid type for `stop[{index}]`: expected a string", "invalid_type"
                    )
        elif not isinstance(stop, str):
            raise _invalid(
                "stop",
                f"invalid type for `stop`: expected a string or an array of strings, got {_type_name(stop)}",
                "invalid_type",
            )

    metadata = _expect(request, "metadata", (dict,), "an object")
    if metadata is not None:
        if len(metadata) > MAX_METADATA_PAIRS:
            raise _invalid("metadata", f"`metadata` has {len(metadata)} keys; at most {MAX_METADATA_PAIRS} are allowed")
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise _invalid(
                    f"metadata.{key}", f"invalid type for `metadata.{key}`: expected a string", "invalid_type"
                )

    tools = _expect(request, "tools", (list,), "an array")
    for index, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise _invalid(f"tools[{index}]", f"invalid type for `tools[{index}]`: expected an object", "invalid_type")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise _invalid(
                f"tools[{index}].function.name",
                f"missing required parameter `tools[{index}].function.name`",
                "missing_required_parameter",
            )
    tool_choice = request.get("tool_choice")
    if tool_choice is not None and not isinstance(tool_choice, (str, dict)):
        raise _invalid("tool_choice", "invalid type for `tool_choice`: expected a string or an object", "invalid_type")
    _expect(request, "response_format", (dict,), "an object")


def _validate_message(index: int, message: Any) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _invalid(
            where, f"invalid type for `{where}`: expected an object, got {_type_name(message)}", "invalid_type"
        )
    role = message.get("role")
    if role is None:
        raise _invalid(f"{where}.role", f"missing required parameter `{where}.role`", "missing_required_parameter")
    if role not in MESSAGE_ROLES:
        raise _invalid(
            f"{where}.role",
            f"`{where}.role` is {role!r}; use one of " + ", ".join(sorted(MESSAGE_ROLES - {"function"})),
        )
    content = message.get("content")
    if content is None:
        if role in ("assistant",) and (message.get("tool_calls") or message.get("refusal") is not None):
            return
        if role == "assistant" and "content" in message:
            return
        raise _invalid(
            f"{where}.content", f"missing required parameter `{where}.content`", "missing_required_parameter"
        )
    if isinstance(content, str):
        pass
    elif isinstance(content, list):
        for part_index, part in enumerate(content):
            part_where = f"{where}.content[{part_index}]"
            if not isinstance(part, dict):
                raise _invalid(part_where, f"invalid type for `{part_where}`: expected an object", "invalid_type")
            kind = part.get("type")
            if kind not in CONTENT_PART_TYPES:
                # Screening reads only `text` parts, so no other kind may carry prompt text.
                raise _invalid(
                    f"{part_where}.type",
                    f"`{part_where}.type` is {kind!r}; use one of " + ", ".join(sorted(CONTENT_PART_TYPES)),
                )
            if kind == "text" and not isinstance(part.get("text"), str):
                raise _invalid(
                    f"{part_where}.text", f"invalid type for `{part_where}.text`: expected a string", "invalid_type"
                )
            if kind == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if not isinstance(url, str) or not url:
                    raise _invalid(
                        f"{part_where}.image_url.url",
                        f"missing required parameter `{part_where}.image_url.url`",
                        "missing_required_parameter",
                    )
    else:
        raise _invalid(
            f"{where}.content",
            f"invalid type for `{where}.content`: expected a string or an array "
            f"of content parts, got {_type_name(content)}",
            "invalid_type",
        )
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise _invalid(
            f"{where}.tool_call_id", f"missing required parameter `{where}.tool_call_id`", "missing_required_parameter"
        )
