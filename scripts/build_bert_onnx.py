#!/usr/bin/env python3
"""Builds an fp32 ONNX graph of a BERT-family encoder straight from its safetensors checkpoint.

Usage: build_bert_onnx.py MODEL_DIR OUTPUT.onnx

The graph takes `input_ids`, `attention_mask` and `token_type_ids` (int64, [batch, seq]) and returns
`last_hidden_state` (float32, [batch, seq, hidden]); pooling happens outside the graph, in embedrt.

No torch is needed: the graph is written node by node with `onnx.helper`, in the shapes a PyTorch
export produces (scaled dot-product attention as Div by sqrt(d), GELU through Erf, the additive mask
built by Unsqueeze/Cast/Sub/Mul), so ONNX Runtime's transformer fusions recognise it. Positions are a
Slice of a constant `[1, max_positions]` table, which ONNX Runtime's EmbedLayerNorm fusion accepts.
"""

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def read_safetensors(path: Path) -> dict:
    """Reads every tensor of a safetensors file as float32 (or int64) numpy arrays."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = memoryview(data)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = body[start:end]
        dtype = info["dtype"]
        if dtype == "F32":
            array = np.frombuffer(raw, dtype="<f4")
        elif dtype == "F16":
            array = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dtype == "BF16":
            array = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype == "I64":
            array = np.frombuffer(raw, dtype="<i8")
        else:
            raise SystemExit(f"unsupported dtype {dtype} for tensor {name}")
        tensors[name] = array.reshape(info["shape"])
    return tensors


class GraphBuilder:
    """Accumulates nodes and initializers, naming intermediate values uniquely."""

    def __init__(self):
        self.nodes = []
        self.initializers = []
        self.counter = 0

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list, **attrs) -> str:
        self.counter += 1
        out = f"{op_type.lower()}_{self.counter}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def linear(g: GraphBuilder, x: str, weights: dict, prefix: str) -> str:
    """x @ W^T + b, with W stored transposed so the graph is a plain MatMul + Add."""
    w = g.const(f"{prefix}.weight_t", np.ascontiguousarray(weights[f"{prefix}.weight"].T))
    b = g.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
    return g.op("Add", [g.op("MatMul", [x, w]), b])


def layer_norm(g: GraphBuilder, x: str, weights: dict, prefix: str, eps: float) -> str:
    gamma = g.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
    beta = g.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
    return g.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=eps)


def build(model_dir: Path) -> onnx.ModelProto:
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("hidden_act", "gelu") != "gelu":
        raise SystemExit(f"unsupported hidden_act {config['hidden_act']!r} (only gelu)")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise SystemExit("only absolute position embeddings are supported")
    weights = read_safetensors(model_dir / "model.safetensors")
    if any(k.startswith("bert.") for k in weights):
        weights = {k[len("bert.") :]: v for k, v in weights.items() if k.startswith("bert.")}

    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    max_pos = config["max_position_embeddings"]

    g = GraphBuilder()
    # Embeddings: word + token type + position, then LayerNorm.
    word = g.op("Gather", [g.const("word_embeddings", weights["embeddings.word_embeddings.weight"]), "input_ids"])
    token_type = g.op(
        "Gather", [g.const("token_type_embeddings", weights["embeddings.token_type_embeddings.weight"]), "token_type_ids"]
    )
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), g.const("dim_1", np.array([1], dtype=np.int64))], axis=0)
    positions = g.op(
        "Slice",
        [
            g.const("position_ids", np.arange(max_pos, dtype=np.int64)[None, :]),
            g.const("slice_start", np.array([0], dtype=np.int64)),
            seq_len,
            g.const("slice_axis", np.array([1], dtype=np.int64)),
        ],
    )
    position = g.op("Gather", [g.const("position_embeddings", weights["embeddings.position_embeddings.weight"]), positions])
    x = g.op("Add", [g.op("Add", [word, token_type]), position])
    x = layer_norm(g, x, weights, "embeddings.LayerNorm", eps)

    # Additive attention mask [batch, 1, 1, seq]: 0 for tokens, the float minimum for padding.
    mask = g.op("Unsqueeze", ["attention_mask", g.const("axis_1", np.array([1], dtype=np.int64))])
    mask = g.op("Unsqueeze", [mask, g.const("axis_2", np.array([2], dtype=np.int64))])
    mask = g.op("Cast", [mask], to=TensorProto.FLOAT)
    mask = g.op("Sub", [g.const("one", np.array(1.0, dtype=np.float32)), mask])
    mask = g.op("Mul", [mask, g.const("float_min", np.array(np.finfo(np.float32).min, dtype=np.float32))])

    split_heads = g.const("split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = g.const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = g.const("sqrt_head_dim", np.array(math.sqrt(head_dim), dtype=np.float32))
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    half = g.const("half", np.array(0.5, dtype=np.float32))
    one = "one"

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = g.op("Transpose", [g.op("Reshape", [linear(g, x, weights, f"{p}.attention.self.query"), split_heads])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(g, x, weights, f"{p}.attention.self.key"), split_heads])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [linear(g, x, weights, f"{p}.attention.self.value"), split_heads])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Div", [g.op("MatMul", [q, k]), scale]), mask])
        probs = g.op("Softmax", [scores], axis=-1)
        context = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3]), merge_heads])
        attended = linear(g, context, weights, f"{p}.attention.output.dense")
        x = layer_norm(g, g.op("Add", [attended, x]), weights, f"{p}.attention.output.LayerNorm", eps)

        inner = linear(g, x, weights, f"{p}.intermediate.dense")
        gelu = g.op("Mul", [g.op("Mul", [inner, g.op("Add", [g.op("Erf", [g.op("Div", [inner, sqrt2])]), one])]), half])
        out = linear(g, gelu, weights, f"{p}.output.dense")
        x = layer_norm(g, g.op("Add", [out, x]), weights, f"{p}.output.LayerNorm", eps)

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
    int_input = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
    graph = helper.make_graph(
        g.nodes,
        "bert",
        [int_input("input_ids"), int_input("attention_mask"), int_input("token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="embedrt")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    model = build(Path(sys.argv[1]))
    onnx.save(model, sys.argv[2])


if __name__ == "__main__":
    main()
