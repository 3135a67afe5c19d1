"""Tests for the simulator's response text, token counts and sample tool arguments."""

from __future__ import annotations

import orjson
import pytest

from tools.simulator.content import (
    count_tokens,
    pad_answer,
    sample_arguments,
    split_json,
    split_pieces,
    truncate,
)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("Hello, world!", 4), ("  spaced   out  ", 2), ("2+2=4?", 6), ("naïve café", 2)],
)
def test_count_tokens(text: str, tokens: int) -> None:
    assert count_tokens(text) == tokens


@pytest.mark.parametrize("per_piece", [1, 2, 5])
def test_split_pieces_join_back(per_piece: int) -> None:
    text = "  Simulated answer to: what's 2+2?\nThanks!  "
    pieces = split_pieces(text, per_piece)
    assert "".join(pieces) == text
    assert len(pieces) == -(-(count_tokens(text) + 1) // per_piece)


def test_split_json_several_parts() -> None:
    arguments = '{"city":"sample city","unit":"c"}'
    parts = split_json(arguments)
    assert len(parts) == 4
    assert "".join(parts) == arguments


def test_pad_answer_reaches_size() -> None:
    padded = pad_answer("Simulated answer to: hi", 1024)
    assert padded.startswith("Simulated answer to: hi ")
    assert 900 <= len(padded.encode()) <= 1024


def test_pad_answer_keeps_long_text() -> None:
    text = "x" * 50
    assert pad_answer(text, 10) == text
    assert pad_answer(text, None) == text


def test_truncate_stop_sequence() -> None:
    assert truncate("one two END three", None, ["END", "two"]) == ("one ", "stop_sequence", "two")


def test_truncate_max_tokens() -> None:
    assert truncate("one, two three", 2, []) == ("one,", "length", None)
    assert truncate("one two", 5, []) == ("one two", "stop", None)


def test_sample_arguments_required_only() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 3},
            "when": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "exact": {"type": "boolean"},
            "where": {
                "type": "object",
                "properties": {"lat": {"type": "number"}},
                "required": ["lat"],
            },
            "optional": {"type": "string"},
        },
        "required": ["city", "unit", "days", "when", "tags", "exact", "where"],
    }
    assert orjson.loads(sample_arguments(schema)) == {
        "city": "sample city",
        "unit": "celsius",
        "days": 3,
        "when": "2024-01-01",
        "tags": ["sample tags"],
        "exact": True,
        "where": {"lat": 1.5},
    }


def test_sample_arguments_without_schema() -> None:
    assert sample_arguments(None) == "{}"
    assert sample_arguments({"type": "object", "properties": {}}) == "{}"
