"""The cache servicer's embedding front: batching, reuse and errors, with a stand-in model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from services.cache.service import EmbeddingCache


class RecordingEmbedder:
    """Returns one vector per text (its length repeated) and records each batch."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.gate = gate

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(5)
        self.batches.append(list(texts))
        return np.array([[float(len(text))] * 3 for text in texts], dtype=np.float32)


class FailingEmbedder:
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("model failed")


async def test_waiting_prompts_share_a_pass() -> None:
    gate = threading.Event()
    embedder = RecordingEmbedder(gate)
    cache = EmbeddingCache(embedder, max_batch=8)  # type: ignore[arg-type]

    first = asyncio.ensure_future(cache.embed("a"))
    await asyncio.sleep(0.01)  # the first pass starts and waits at the gate
    rest = [asyncio.ensure_future(cache.embed(text)) for text in ("bb", "ccc", "dddd")]
    await asyncio.sleep(0.01)
    gate.set()
    vectors = await asyncio.gather(first, *rest)

    assert embedder.batches == [["a"], ["bb", "ccc", "dddd"]]
    assert [float(vector[0]) for vector in vectors] == [1.0, 2.0, 3.0, 4.0]


async def test_batches_are_bounded() -> None:
    gate = threading.Event()
    embedder = RecordingEmbedder(gate)
    cache = EmbeddingCache(embedder, max_batch=2)  # type: ignore[arg-type]

    first = asyncio.ensure_future(cache.embed("x"))
    await asyncio.sleep(0.01)
    rest = [asyncio.ensure_future(cache.embed(text)) for text in ("a", "bb", "ccc")]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, *rest)

    assert embedder.batches == [["x"], ["a", "bb"], ["ccc"]]


async def test_same_text_embedded_once() -> None:
    embedder = RecordingEmbedder()
    cache = EmbeddingCache(embedder)  # type: ignore[arg-type]

    together = await asyncio.gather(cache.embed("same"), cache.embed("same"))
    later = await cache.embed("same")

    assert embedder.batches == [["same"]]
    assert float(together[0][0]) == 4.0
    assert float(together[1][0]) == 4.0
    assert float(later[0]) == 4.0


async def test_model_error_reaches_every_caller() -> None:
    cache = EmbeddingCache(FailingEmbedder())  # type: ignore[arg-type]

    results = await asyncio.gather(cache.embed("a"), cache.embed("b"), return_exceptions=True)

    assert all(isinstance(result, RuntimeError) for result in results)
    with pytest.raises(RuntimeError, match="model failed"):
        await cache.embed("a")
