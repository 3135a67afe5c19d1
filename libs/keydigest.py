"""Key digest of the response cache: a Bloom filter of the keys that may have an entry.

The cache service keeps the filter and serves it with ``GetKeyDigest``. The router tests
each request against its copy and skips a Lookup whose keys are all absent, because such
a Lookup must miss. A Bloom filter has false positives (a Lookup that was not needed)
but no false negatives, so a skipped Lookup never loses a hit the cache could have served
when the filter was read. The same idea lets caching proxies skip queries to peers that
cannot hold an object (Squid's cache digests).

The layout is part of the cache contract (``GetKeyDigestResponse`` in
``aigateway/cache/v1/cache_service.proto``): bit ``n`` is ``0x80 >> (n % 8)`` of byte
``n // 8``, the order of Redis bitmaps, so the Redis-backed filter is read as it is stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from libs.cachekeys import KEY_VERSION

__all__ = [
    "DIGEST_VERSION",
    "HASH_COUNT",
    "KeyDigest",
    "check_shape",
    "entry_items",
    "exact_item",
    "item_bits",
    "scope_item",
]

DIGEST_VERSION = f"{KEY_VERSION}.bloom1"
"""Version of the key form and the item encoding. A client uses only a filter of its own version."""

HASH_COUNT = 4
"""Bits per item the cache service sets. With 2**20 bits, 100,000 live items give about
1% false positives. Readers take the count from the filter, not from here."""
MIN_BITS = 1024
MAX_BITS = 1 << 32
MAX_HASHES = 16
_MASK64 = (1 << 64) - 1


def exact_item(key: str) -> bytes:
    """Return the digest item of an exact-cache key (from ``cachekeys.exact_key``)."""
    return b"exact\x00" + key.encode()


def scope_item(tenant: str, model: str, context_hash: str) -> bytes:
    """Return the digest item of a semantic scope: tenant, model and context hash."""
    return b"scope\x00" + f"{tenant}\x00{model}\x00{context_hash}".encode()


def entry_items(tenant: str, request: Mapping[str, Any], key: str, context_hash: str | None) -> tuple[bytes, ...]:
    """Return the items of one cache entry: its exact ``key`` and, with a ``context_hash``, its scope.

    The router and the cache service both call this, so that they agree on every item.
    """
    if context_hash is None:
        return (exact_item(key),)
    return exact_item(key), scope_item(tenant, str(request.get("model", "")), context_hash)


def item_bits(item: bytes, bit_count: int, hash_count: int) -> list[int]:
    """Return the bit numbers of ``item``: (h1 + i * h2) mod ``bit_count`` (double hashing)."""
    digest = hashlib.blake2b(item, digest_size=16).digest()
    h1 = int.from_bytes(digest[:8], "little")
    h2 = int.from_bytes(digest[8:], "little")
    mask = bit_count - 1
    return [((h1 + i * h2) & _MASK64) & mask for i in range(hash_count)]


def check_shape(bit_count: int, hash_count: int) -> None:
    """Raise ValueError unless ``bit_count`` is a power of two in range and ``hash_count`` fits."""
    if bit_count < MIN_BITS or bit_count > MAX_BITS or bit_count & (bit_count - 1):
        raise ValueError(f"bit_count must be a power of two from {MIN_BITS} to 2**32, got {bit_count}")
    if not 1 <= hash_count <= MAX_HASHES:
        raise ValueError(f"hash_count must be from 1 to {MAX_HASHES}, got {hash_count}")


class KeyDigest:
    """A Bloom filter of ``bit_count`` bits with ``hash_count`` bits per item."""

    __slots__ = ("bit_count", "bits", "hash_count")

    def __init__(self, bit_count: int, hash_count: int, bits: bytes | bytearray | None = None) -> None:
        check_shape(bit_count, hash_count)
        size = bit_count // 8
        if bits is not None and len(bits) > size:
            raise ValueError(f"bits has {len(bits)} bytes; a filter of {bit_count} bits has {size}")
        self.bit_count = bit_count
        self.hash_count = hash_count
        # A shorter value is a filter whose last bytes are zero, as Redis returns it.
        self.bits = bytearray(size) if bits is None else bytearray(bits) + bytearray(size - len(bits))

    def add(self, item: bytes) -> None:
        """Set the bits of ``item``."""
        bits = self.bits
        for n in item_bits(item, self.bit_count, self.hash_count):
            bits[n >> 3] |= 0x80 >> (n & 7)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, bytes):
            return False
        bits = self.bits
        return all(bits[n >> 3] & (0x80 >> (n & 7)) for n in item_bits(item, self.bit_count, self.hash_count))

    def union(self, other: bytes | bytearray) -> None:
        """Set every bit that is set in ``other``, a filter of the same size (or shorter)."""
        if len(other) > len(self.bits):
            raise ValueError(f"cannot merge a filter of {len(other)} bytes into one of {len(self.bits)}")
        shift = 8 * (len(self.bits) - len(other))
        merged = int.from_bytes(self.bits, "big") | (int.from_bytes(other, "big") << shift)
        self.bits = bytearray(merged.to_bytes(len(self.bits), "big"))

    def fill_ratio(self) -> float:
        """Return the share of bits set, from 0 to 1. False positives grow with it."""
        return int.from_bytes(self.bits, "big").bit_count() / self.bit_count
