"""Cache settings read from CACHE_* variables: the key digest's size."""

from __future__ import annotations

import pytest

from libs.config import ConfigError, Env
from services.cache.config import CacheConfig


def load(**variables: str) -> CacheConfig:
    return CacheConfig.from_env(Env("CACHE", {f"CACHE_{key}": value for key, value in variables.items()}))


def test_digest_bits_default_to_128_kib() -> None:
    assert load().digest_bits == 1 << 20
    assert load(DIGEST_BITS="8388608").digest_bits == 1 << 23


@pytest.mark.parametrize("value", ["1000", "512", "8589934592"])
def test_digest_bits_out_of_range(value: str) -> None:
    with pytest.raises(ConfigError, match=f"CACHE_DIGEST_BITS={value} is not a power of two from 1024"):
        load(DIGEST_BITS=value)
