"""The all-MiniLM-L6-v2 embedder: shape, normalisation, reference values, both runtimes.

Reference check, done once: sentence-transformers 6.3.0 on torch 2.13.0 (CPU) in a
separate virtual environment encoded ten texts (empty, one letter, German, Japanese,
Russian, code with emoji, and a 600-word text cut at 256 word pieces). The largest
absolute difference from this embedder was 2.3e-7 at batch size 1 and 2.0e-7 at 32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from libs.config import ConfigError, Env
from services.cache.config import CacheConfig
from services.cache.embeddings import MAX_TOKENS, Embedder, EmbeddingModelError, default_model_dir


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def test_embed_shape_dtype_and_unit_length(embedder: Embedder) -> None:
    vectors = embedder.embed(["first text", "a second, somewhat longer text", ""])

    assert embedder.dimension == 384
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embed_empty_batch(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, 384)


def test_embed_rejects_single_string(embedder: Embedder) -> None:
    with pytest.raises(TypeError, match="sequence of texts"):
        embedder.embed("one string")  # type: ignore[arg-type]


def test_password_paraphrase_similarity(embedder: Embedder) -> None:
    reset, change, weather = embedder.embed(
        [
            "How do I reset my password?",
            "What are the steps to change my password?",
            "Heavy rain is expected along the coast tomorrow.",
        ]
    )

    # sentence-transformers gives 0.8228 for the first pair.
    assert cosine(reset, change) == pytest.approx(0.8228, abs=0.002)
    assert abs(cosine(reset, weather)) < 0.15


def test_reference_vector_prefix(embedder: Embedder) -> None:
    (vector,) = embedder.embed(["How do I reset my password?"])

    # The first values sentence-transformers 6.3.0 returns for this text.
    expected = np.array(
        [0.00690306, -0.06302342, -0.07204398, -0.03249612, -0.04270934], dtype=np.float32
    )
    np.testing.assert_allclose(vector[:5], expected, atol=1e-6)


def test_batching_does_not_change_vectors(embedder: Embedder) -> None:
    texts = [
        "short",
        "a much longer sentence that needs several more word pieces to encode",
        "mid length text",
    ]

    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([text]) for text in texts])

    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_long_text_truncated_to_max_tokens(embedder: Embedder) -> None:
    base = " ".join(["caching"] * (MAX_TOKENS - 2))
    longer = base + " " + " ".join(["unrelated tail words about gardening"] * 50)

    first, second = embedder.embed([base, longer])

    # Everything after word piece 256 is cut, so both texts encode the same 256 pieces.
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_load_names_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-model-here"

    with pytest.raises(EmbeddingModelError, match=str(missing)):
        Embedder.load(missing)


def test_default_model_dir_has_weights() -> None:
    assert (default_model_dir() / "model.safetensors").is_file()


def test_runtimes_give_the_same_vectors(embedder: Embedder) -> None:
    numpy_embedder = Embedder.load(threads=1, runtime="numpy")
    texts = [
        "How do I reset my password?",
        "",
        "Wie spät ist es in Tokio?",
        # Longer than the others, so the batch pads them and masks the padding.
        "A customer wrote in about a refund for an order that arrived late and damaged.",
    ]

    assert embedder.runtime == "onnxruntime"
    np.testing.assert_allclose(embedder.embed(texts), numpy_embedder.embed(texts), atol=1e-6)


def test_unknown_runtime_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CACHE_EMBEDDING_RUNTIME='torch' is invalid: use onnxruntime or numpy"):
        CacheConfig.from_env(Env("CACHE", {"CACHE_EMBEDDING_RUNTIME": "torch"}))
    assert CacheConfig.from_env(Env("CACHE", {})).embedding_runtime == "onnxruntime"
