"""Tests for the incremental SSE parser and writer."""

from __future__ import annotations

import pytest

from libs.sse import SSEEvent, SSEParser, format_comment, format_event

SAMPLE = (
    ": keep-alive\n\n"
    "event: message_start\n"
    'data: {"text": "Grüße, 世界 👋"}\n\n'
    "data:no space after the colon\n\n"
    "id: 7\n"
    "data: first line\n"
    "data: second line\n\n"
    "data: [DONE]\n\n"
).encode()

EXPECTED = [
    SSEEvent(data='{"text": "Grüße, 世界 👋"}', event="message_start"),
    SSEEvent(data="no space after the colon"),
    SSEEvent(data="first line\nsecond line", id="7"),
    SSEEvent(data="[DONE]", id="7"),
]


def feed_all(parser: SSEParser, pieces: list[bytes]) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    return events


def test_parser_whole_sample() -> None:
    assert feed_all(SSEParser(), [SAMPLE]) == EXPECTED


@pytest.mark.parametrize("split", range(1, len(SAMPLE)))
def test_parser_split_at_every_byte(split: int) -> None:
    assert feed_all(SSEParser(), [SAMPLE[:split], SAMPLE[split:]]) == EXPECTED


def test_parser_one_byte_at_a_time() -> None:
    pieces = [SAMPLE[index : index + 1] for index in range(len(SAMPLE))]
    assert feed_all(SSEParser(), pieces) == EXPECTED


def test_parser_sample_has_multibyte_characters() -> None:
    # Guards the split tests above: they must cut inside multi-byte characters.
    assert len(SAMPLE) > len(SAMPLE.decode())


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"])
def test_parser_line_endings(newline: bytes) -> None:
    stream = SAMPLE.replace(b"\n", newline)
    pieces = [stream[index : index + 3] for index in range(0, len(stream), 3)]
    assert feed_all(SSEParser(), pieces) == EXPECTED


def test_parser_crlf_split_between_cr_and_lf() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == [SSEEvent(data="a")]
    assert parser.feed(b"\ndata: b\r\n\r\n") == [SSEEvent(data="b")]


def test_parser_comments_only_yield_nothing() -> None:
    parser = SSEParser()
    assert parser.feed(b": ping\n\n:\n\n") == []
    assert parser.has_pending is False


def test_parser_event_without_data_is_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: ping\n\ndata: x\n\n") == [SSEEvent(data="x")]


def test_parser_empty_data_field_dispatches_empty_string() -> None:
    assert SSEParser().feed(b"data:\n\n") == [SSEEvent(data="")]


def test_parser_strips_leading_bom() -> None:
    assert SSEParser().feed(b"\xef\xbb\xbfdata: x\n\n") == [SSEEvent(data="x")]


def test_parser_retry_and_unknown_fields() -> None:
    events = SSEParser().feed(b"retry: 1500\nfoo: bar\ndata: x\n\n")
    assert events == [SSEEvent(data="x", retry=1500)]


def test_parser_reports_cut_off_event() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"partial":') == []
    assert parser.has_pending is True


def test_format_event_single_line() -> None:
    assert format_event('{"a":1}') == b'data: {"a":1}\n\n'


def test_format_event_with_name_and_newlines() -> None:
    encoded = format_event(b"one\ntwo", event="message_delta")
    assert encoded == b"event: message_delta\ndata: one\ndata: two\n\n"
    assert SSEParser().feed(encoded) == [SSEEvent(data="one\ntwo", event="message_delta")]


def test_format_event_rejects_newline_in_name() -> None:
    with pytest.raises(ValueError, match="line break"):
        format_event("x", event="bad\nname")


def test_format_comment() -> None:
    assert format_comment("ping") == b": ping\n\n"
    assert SSEParser().feed(format_comment("ping")) == []
