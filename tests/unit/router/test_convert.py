"""Typed chat messages convert to OpenAI dicts and back without loss."""

from aigateway.type.v1 import chat_pb2
from google.protobuf import struct_pb2

from services.router.convert import chunk_to_message, completion_to_message, params_to_request


def test_params_to_request_maps_every_modelled_field() -> None:
    schema = struct_pb2.Struct()
    schema.update({"type": "object", "properties": {"city": {"type": "string"}}})
    extra = struct_pb2.Struct()
    extra.update({"logprobs": True})
    params = chat_pb2.ChatCompletionParams(
        model="gpt-4o-mini",
        messages=[
            chat_pb2.ChatMessage(role=chat_pb2.ROLE_DEVELOPER, content="Be brief."),
            chat_pb2.ChatMessage(
                role=chat_pb2.ROLE_USER,
                content_parts=[
                    chat_pb2.ContentPart(text="What is this?"),
                    chat_pb2.ContentPart(image_url=chat_pb2.ImageUrl(url="data:image/png;base64,AAAA", detail="low")),
                ],
            ),
            chat_pb2.ChatMessage(
                role=chat_pb2.ROLE_ASSISTANT,
                tool_calls=[
                    chat_pb2.ToolCall(
                        id="call_1", type="function", function=chat_pb2.FunctionCall(name="w", arguments="{}")
                    )
                ],
            ),
            chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id="call_1", content="sunny"),
        ],
        tools=[chat_pb2.Tool(type="function", function=chat_pb2.FunctionDefinition(name="w", parameters=schema))],
        tool_choice=chat_pb2.ToolChoice(function_name="w"),
        stop=["END"],
        n=1,
        temperature=0.5,
        max_completion_tokens=64,
        seed=7,
        user="u-1",
        metadata={"team": "search"},
        stream_options=chat_pb2.StreamOptions(include_usage=True),
        extra_body=extra,
    )

    request = params_to_request(params)

    assert request["model"] == "gpt-4o-mini"
    assert request["messages"][0] == {"role": "developer", "content": "Be brief."}
    assert request["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
    }
    assert request["messages"][2]["content"] is None
    assert request["messages"][2]["tool_calls"][0]["function"] == {"name": "w", "arguments": "{}"}
    assert request["messages"][3] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    assert request["tools"][0]["function"]["parameters"]["properties"]["city"] == {"type": "string"}
    assert request["tool_choice"] == {"type": "function", "function": {"name": "w"}}
    assert (request["temperature"], request["max_completion_tokens"], request["seed"]) == (0.5, 64, 7)
    assert request["stop"] == ["END"]
    assert request["metadata"] == {"team": "search"}
    assert request["stream_options"] == {"include_usage": True}
    assert request["logprobs"] is True
    assert "max_tokens" not in request and "top_p" not in request


def test_unset_role_is_left_for_validation() -> None:
    params = chat_pb2.ChatCompletionParams(model="m", messages=[chat_pb2.ChatMessage(content="hi")])

    assert params_to_request(params)["messages"][0]["role"] == "unspecified"


def test_completion_to_message() -> None:
    body = {
        "id": "chatcmpl-1",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"a":1}'}}],
                },
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }

    message = completion_to_message(body)

    assert message.id == "chatcmpl-1"
    assert message.choices[0].message.role == chat_pb2.ROLE_ASSISTANT
    assert not message.choices[0].message.HasField("content")
    assert message.choices[0].message.tool_calls[0].function.arguments == '{"a":1}'
    assert message.usage.prompt_tokens_details.cached_tokens == 4
    assert message.usage.completion_tokens_details.reasoning_tokens == 2


def test_chunk_to_message() -> None:
    chunk = {
        "id": "c",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "content": "Hel",
                    "tool_calls": [
                        {"index": 1, "id": "t", "type": "function", "function": {"name": "f", "arguments": "{"}}
                    ],
                },
                "finish_reason": None,
            }
        ],
    }

    message = chunk_to_message(chunk)

    assert message.choices[0].delta.content == "Hel"
    assert message.choices[0].delta.role == chat_pb2.ROLE_ASSISTANT
    assert message.choices[0].delta.tool_calls[0].index == 1
    assert message.choices[0].finish_reason == ""
    assert not message.HasField("usage")
