"""Cost, stream assembly and cached-answer streaming of the router pipeline."""

import pytest

from services.router.catalog import Price
from services.router.pipeline import _Assembly, completion_to_chunks, cost_usd

PRICE = Price(input_per_mtok=0.15, output_per_mtok=0.60, cached_input_per_mtok=0.075)


def test_cost_counts_cached_tokens_at_their_price() -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 500, "prompt_tokens_details": {"cached_tokens": 400}}

    assert cost_usd(PRICE, usage) == pytest.approx((600 * 0.15 + 400 * 0.075 + 500 * 0.60) / 1e6)


def test_cost_of_no_usage_is_zero() -> None:
    assert cost_usd(PRICE, None) == 0.0
    assert cost_usd(PRICE, {}) == 0.0


def test_assembly_joins_content_and_tool_call_fragments() -> None:
    assembly = _Assembly()
    chunks = [
        {
            "id": "x",
            "created": 5,
            "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}],
        },
        {"id": "x", "choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {
            "id": "x",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "w", "arguments": '{"ci'},
                            }
                        ]
                    },
                }
            ],
        },
        {
            "id": "x",
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]},
                    "finish_reason": "tool_calls",
                }
            ],
        },
        {"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
    ]
    for chunk in chunks:
        assembly.add(chunk)

    body = assembly.completion()

    assert body["choices"][0]["message"]["content"] == "Hello"
    assert body["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "w", "arguments": '{"city": "Oslo"}'}
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["usage"]["total_tokens"] == 7
    assert (body["id"], body["created"], body["model"]) == ("x", 5, "m")


def test_cached_completion_streams_as_chunks() -> None:
    body = {
        "id": "c",
        "created": 1,
        "model": "m",
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
    }

    without_usage = completion_to_chunks(body, include_usage=False)
    with_usage = completion_to_chunks(body, include_usage=True)

    assert [c["choices"][0]["delta"].get("content") for c in without_usage] == ["Hi", None]
    assert without_usage[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in with_usage)
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["total_tokens"] == 3


def test_routing_failures_map_to_client_errors() -> None:
    from services.router.pipeline import provider_error_to_gateway
    from services.router.providers.base import ProviderError
    from services.router.routing import AllDeploymentsFailedError

    def failed(last: ProviderError | None, retry_after_s: float | None = None) -> AllDeploymentsFailedError:
        return AllDeploymentsFailedError("m", [], last, retry_after_s)

    rate_limited = ProviderError("slow down", code="UPSTREAM_RATE_LIMITED", status=429, retryable=True, retry_after_s=3)
    unsupported = ProviderError("n > 1", code="UPSTREAM_UNSUPPORTED_REQUEST", retryable=True)
    timeout = ProviderError("timed out", code="UPSTREAM_TIMEOUT", retryable=True)
    bad = ProviderError("bad schema", code="UPSTREAM_BAD_REQUEST", status=400)

    assert (
        provider_error_to_gateway(failed(rate_limited)).http_status,
        provider_error_to_gateway(failed(rate_limited)).retry_after_s,
    ) == (429, 3)
    assert provider_error_to_gateway(failed(unsupported)).http_status == 400
    assert provider_error_to_gateway(failed(timeout)).http_status == 504
    assert provider_error_to_gateway(failed(None, 7.0)).retry_after_s == 7.0
    assert provider_error_to_gateway(bad).http_status == 400
    assert provider_error_to_gateway(bad).reason == "UPSTREAM_BAD_REQUEST"
