"""The key digest's Bloom filter: no false negatives, few false positives, Redis bit order."""

from __future__ import annotations

import pytest

from libs.keydigest import KeyDigest, entry_items, exact_item, item_bits, scope_item


def test_every_added_item_tests_positive() -> None:
    digest = KeyDigest(1 << 16, 4)
    items = [exact_item(f"acme:{n:064x}") for n in range(2000)]
    for item in items:
        digest.add(item)

    assert all(item in digest for item in items)


def test_absent_items_rarely_test_positive() -> None:
    digest = KeyDigest(1 << 20, 4)
    for n in range(10_000):
        digest.add(exact_item(f"acme:{n:064x}"))

    false_positives = sum(exact_item(f"other:{n:064x}") in digest for n in range(10_000))
    # About 2 in a million are expected at this fill, so a handful would still be fine.
    assert false_positives <= 5


def test_scope_and_exact_items_differ() -> None:
    digest = KeyDigest(1 << 12, 4)
    digest.add(scope_item("acme", "gpt-4o-mini", "ab" * 32))

    assert scope_item("acme", "gpt-4o-mini", "ab" * 32) in digest
    assert scope_item("globex", "gpt-4o-mini", "ab" * 32) not in digest
    assert exact_item("acme:" + "ab" * 32) not in digest


def test_bit_order_is_redis_bitmap_order() -> None:
    digest = KeyDigest(1024, 1)
    item = b"exact\x00acme:probe"
    [n] = item_bits(item, 1024, 1)
    digest.add(item)

    # SETBIT key n 1 sets the bit of value 0x80 >> (n % 8) in byte n // 8.
    expected = bytearray(128)
    expected[n // 8] = 0x80 >> (n % 8)
    assert digest.bits == expected


def test_union_pads_a_shorter_filter() -> None:
    first = KeyDigest(1024, 4)
    first.add(b"a")
    second = KeyDigest(1024, 4)
    second.add(b"b")
    trimmed = bytes(second.bits).rstrip(b"\x00")

    first.union(trimmed)

    assert b"a" in first
    assert b"b" in first
    assert len(first.bits) == 128


def test_key_digest_pads_bits_shorter_than_its_size() -> None:
    full = KeyDigest(2048, 3)
    full.add(b"item")

    read = KeyDigest(2048, 3, bytes(full.bits).rstrip(b"\x00"))

    assert b"item" in read
    assert len(read.bits) == 256


@pytest.mark.parametrize(("bit_count", "hash_count"), [(1000, 4), (512, 4), (1 << 33, 4), (1024, 0), (1024, 17)])
def test_bad_shapes_are_refused(bit_count: int, hash_count: int) -> None:
    with pytest.raises(ValueError, match="bit_count|hash_count"):
        KeyDigest(bit_count, hash_count)


def test_bits_longer_than_the_size_are_refused() -> None:
    with pytest.raises(ValueError, match="bits has 200 bytes"):
        KeyDigest(1024, 4, bytes(200))


def test_fill_ratio_counts_set_bits() -> None:
    digest = KeyDigest(1024, 1)
    assert digest.fill_ratio() == 0
    digest.bits[0] = 0xFF

    assert digest.fill_ratio() == 8 / 1024


def test_entry_items_exact_and_scope() -> None:
    request = {"model": "gpt-4o-mini", "messages": []}

    assert entry_items("acme", request, "acme:key", None) == (exact_item("acme:key"),)
    assert entry_items("acme", request, "acme:key", "c" * 64) == (
        exact_item("acme:key"),
        scope_item("acme", "gpt-4o-mini", "c" * 64),
    )
