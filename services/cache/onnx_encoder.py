"""The BERT encoder layers of the embedding model, run by ONNX Runtime.

The graph is built in memory from the same weights as the NumPy forward pass, so no
model file is converted or downloaded. It computes the same maths: fused query, key and
value products, scaled dot-product attention with a bias for padded keys, exact (erf)
GELU and layer norms. ONNX Runtime fuses these operators and runs each layer in a few
native kernels instead of the dozens of NumPy calls of the fallback. For one prompt of
18 word pieces that is about three times faster (4.2 against 13.6 ms on one core of a
2-core Xeon), and the vectors differ by about 1e-7.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from services.cache.embeddings import _Layer

__all__ = ["OnnxEncoder"]

# LayerNormalization is in the default domain from opset 17, Gelu from opset 20.
_OPSET = 20
_IR_VERSION = 9


class OnnxEncoder:
    """Encoder layers in an ONNX Runtime session: hidden states (batch, length, hidden) in, same shape out."""

    def __init__(self, layers: Sequence[_Layer], heads: int, eps: float, threads: int) -> None:
        """Build the graph from ``layers`` and open a session with ``threads`` intra-op threads.

        Raises ImportError when onnxruntime or onnx is not installed.
        """
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads would otherwise spin and take CPU from the other services.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        model = _build_model(layers, heads, eps)
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def run(self, hidden: np.ndarray, key_bias: np.ndarray) -> np.ndarray:
        """Return the last layer's hidden states.

        ``hidden`` is float32 (batch, length, hidden) after the embedding layer norm, and
        ``key_bias`` is float32 (batch, 1, 1, length): 0 for real tokens, -1e9 for padding.
        """
        (output,) = self._session.run(None, {"hidden": hidden, "key_bias": key_bias})
        return output  # type: ignore[no-any-return]


def _build_model(layers: Sequence[_Layer], heads: int, eps: float) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    hidden_size = layers[0].attn_out_w.shape[0]
    head_size = hidden_size // heads
    nodes: list[Any] = []
    initializers: list[Any] = []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(kind: str, inputs: list[str], **attributes: Any) -> str:
        output = f"n{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [output], **attributes))
        return output

    split_heads = constant("split_heads", np.array([0, 0, heads, head_size], dtype=np.int64))
    merge_heads = constant("merge_heads", np.array([0, 0, hidden_size], dtype=np.int64))
    scale = constant("scale", np.array(1.0 / np.sqrt(head_size), dtype=np.float32))

    state = "hidden"
    for index, layer in enumerate(layers):
        prefix = f"layer{index}."

        def dense(x: str, weight: np.ndarray, bias: np.ndarray, name: str, prefix: str = prefix) -> str:
            product = op("MatMul", [x, constant(prefix + name + ".weight", weight)])
            return op("Add", [product, constant(prefix + name + ".bias", bias)])

        def norm(x: str, weight: np.ndarray, bias: np.ndarray, name: str, prefix: str = prefix) -> str:
            return op(
                "LayerNormalization",
                [x, constant(prefix + name + ".weight", weight), constant(prefix + name + ".bias", bias)],
                axis=-1,
                epsilon=eps,
            )

        def per_head(x: str, perm: list[int]) -> str:
            return op("Transpose", [op("Reshape", [x, split_heads])], perm=perm)

        query_w, key_w, value_w = np.split(layer.qkv_w, 3, axis=1)
        query_b, key_b, value_b = np.split(layer.qkv_b, 3)
        # (batch, length, hidden) -> (batch, heads, length, head_size), keys transposed for Q @ K^T.
        query = per_head(dense(state, query_w, query_b, "query"), [0, 2, 1, 3])
        key = per_head(dense(state, key_w, key_b, "key"), [0, 2, 3, 1])
        value = per_head(dense(state, value_w, value_b, "value"), [0, 2, 1, 3])

        scores = op("Add", [op("Mul", [op("MatMul", [query, key]), scale]), "key_bias"])
        weights = op("Softmax", [scores], axis=-1)
        context = op("Reshape", [op("Transpose", [op("MatMul", [weights, value])], perm=[0, 2, 1, 3]), merge_heads])

        attended = op("Add", [dense(context, layer.attn_out_w, layer.attn_out_b, "attention_output"), state])
        normed = norm(attended, layer.attn_norm_w, layer.attn_norm_b, "attention_norm")
        intermediate = op("Gelu", [dense(normed, layer.inter_w, layer.inter_b, "intermediate")])
        output = op("Add", [dense(intermediate, layer.out_w, layer.out_b, "output"), normed])
        state = norm(output, layer.out_norm_w, layer.out_norm_b, "output_norm")

    nodes.append(helper.make_node("Identity", [state], ["last_hidden"]))
    graph = helper.make_graph(
        nodes,
        "minilm_encoder",
        [
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "length", hidden_size]),
            helper.make_tensor_value_info("key_bias", TensorProto.FLOAT, ["batch", 1, 1, "length"]),
        ],
        [helper.make_tensor_value_info("last_hidden", TensorProto.FLOAT, ["batch", "length", hidden_size])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    return model.SerializeToString()  # type: ignore[no-any-return]
