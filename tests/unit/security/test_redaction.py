"""Restoring placeholders in whole and streamed model output."""

from __future__ import annotations

import random

import pytest

from libs.redaction import StreamRestorer, restore

MAPPING = {
    "[EMAIL_1]": "rosa.lind@harbour.example",
    "[EMAIL_2]": "[not a placeholder]",
    "[PHONE_1]": "+46 70 123 45 67",
    "[CREDIT_CARD_12]": "4111 1111 1111 1111",
}
SAMPLE = (
    "Write to [EMAIL_1] or [EMAIL_2]; call [PHONE_1]. Card [CREDIT_CARD_12] and "
    "[CREDIT_CARD_1] stay, [x] and [ and [EMAIL_ are text. End [PHONE_1]"
)


def stream(mapping: dict[str, str], deltas: list[str]) -> str:
    restorer = StreamRestorer(mapping)
    return "".join(restorer.feed(delta) for delta in deltas) + restorer.flush()


def test_restore_replaces_known_placeholders() -> None:
    assert restore("Hi [EMAIL_1], card [CREDIT_CARD_12].", MAPPING) == (
        "Hi rosa.lind@harbour.example, card 4111 1111 1111 1111."
    )


def test_restore_leaves_unknown_placeholders() -> None:
    assert restore("[EMAIL_9] and [PHONE] and [phone_1]", MAPPING) == (
        "[EMAIL_9] and [PHONE] and [phone_1]"
    )


def test_restore_does_not_reexpand_values() -> None:
    assert restore("[EMAIL_2]", MAPPING) == "[not a placeholder]"


def test_restore_empty_mapping() -> None:
    assert restore("[EMAIL_1]", {}) == "[EMAIL_1]"


@pytest.mark.parametrize("cut", range(len(SAMPLE) + 1))
def test_every_two_way_split_matches(cut: int) -> None:
    assert stream(MAPPING, [SAMPLE[:cut], SAMPLE[cut:]]) == restore(SAMPLE, MAPPING)


def test_character_deltas_match() -> None:
    assert stream(MAPPING, list(SAMPLE)) == restore(SAMPLE, MAPPING)


def test_random_deltas_match() -> None:
    generator = random.Random(20240611)
    expected = restore(SAMPLE, MAPPING)
    for _ in range(300):
        cuts = sorted(generator.sample(range(1, len(SAMPLE)), generator.randint(1, 12)))
        bounds = [0, *cuts, len(SAMPLE)]
        deltas = [SAMPLE[low:high] for low, high in zip(bounds, bounds[1:], strict=False)]
        assert stream(MAPPING, deltas) == expected


def test_feed_holds_back_placeholder_prefix() -> None:
    restorer = StreamRestorer(MAPPING)
    assert restorer.feed("Contact [EMA") == "Contact "
    assert restorer.feed("IL_1] today") == "rosa.lind@harbour.example today"
    assert restorer.flush() == ""


def test_feed_releases_non_placeholder_bracket() -> None:
    restorer = StreamRestorer(MAPPING)
    assert restorer.feed("array[") == "array"
    assert restorer.feed("0]") == "[0]"


def test_flush_returns_unfinished_prefix() -> None:
    restorer = StreamRestorer(MAPPING)
    assert restorer.feed("cut off [PHON") == "cut off "
    assert restorer.flush() == "[PHON"
    assert restorer.flush() == ""


def test_empty_mapping_passes_through() -> None:
    restorer = StreamRestorer({})
    assert restorer.feed("[EMA") == "[EMA"
    assert restorer.feed("IL_1]") == "IL_1]"
    assert restorer.flush() == ""
