#!/usr/bin/env python3
"""Builds a jina-embeddings-v3 ONNX graph with the official export's interface from a checkpoint.

Usage: build_jina_onnx.py MODEL_DIR OUTPUT.onnx

Inputs `input_ids`, `attention_mask` (int64 [batch, seq]) and `task_id` (int64 scalar); output
`text_embeds` (float32 [batch, seq, hidden], un-pooled). As in the official export, every LoRA'd
weight is merged for the requested task on each run (W + scale * B_k @ A_k, and A_k @ B_k for the
embeddings), RoPE is rotate-half over the full head with cos/sin tables of [max_positions, d/2],
padded keys get -10000, LayerNorm and erf-GELU follow each block. Weights go to an external data
file next to the graph (`<name>_data`), as the official `model.onnx_data`.

Used for benchmarks (on a random-weight checkpoint of the real size) and checked against the
official outputs of the tiny fixture.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from build_bert_onnx import GraphBuilder, read_safetensors

OPSET = 17


def build(model_dir: Path) -> onnx.ModelProto:
    config = json.loads((model_dir / "config.json").read_text())
    w = read_safetensors(model_dir / "model.safetensors")
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-5))
    scale = float(config.get("lora_alpha", 1)) / float(config.get("lora_rank", 4))
    base = float(config.get("rotary_emb_base", 10000.0))
    max_pos = config["max_position_embeddings"]

    g = GraphBuilder()
    c = lambda name, array: g.const(name, np.ascontiguousarray(array))
    lora_scale = c("lora_scale", np.array(scale, dtype=np.float32))

    def merged(prefix: str, embedding: bool) -> str:
        """The task's merged weight, recomputed per run from the stacked adapters."""
        p = f"roberta.{prefix}.parametrizations.weight"
        a = g.op("Gather", [c(f"{prefix}.lora_A", w[f"{p}.0.lora_A"]), "task_id"], axis=0)
        b = g.op("Gather", [c(f"{prefix}.lora_B", w[f"{p}.0.lora_B"]), "task_id"], axis=0)
        delta = g.op("MatMul", [a, b] if embedding else [b, a])
        return g.op("Add", [c(f"{prefix}.weight", w[f"{p}.original"]), g.op("Mul", [delta, lora_scale])])

    def linear(x: str, prefix: str) -> str:
        weight = g.op("Transpose", [merged(prefix, False)], perm=[1, 0])
        return g.op("Add", [g.op("MatMul", [x, weight]), c(f"{prefix}.bias", w[f"roberta.{prefix}.bias"])])

    def layer_norm(x: str, prefix: str) -> str:
        gamma, beta = c(f"{prefix}.weight", w[f"roberta.{prefix}.weight"]), c(f"{prefix}.bias", w[f"roberta.{prefix}.bias"])
        return g.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=eps)

    words = g.op("Gather", [merged("embeddings.word_embeddings", True), "input_ids"])
    token_type = g.op("Gather", [merged("embeddings.token_type_embeddings", True), c("zero", np.array(0, dtype=np.int64))])
    x = layer_norm(g.op("Add", [words, token_type]), "emb_ln")

    # Additive key mask [batch, 1, 1, seq]: 0 for tokens, -10000 for padding.
    keep = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", c("axes_1_2", np.array([1, 2], dtype=np.int64))])], to=TensorProto.FLOAT)
    mask = g.op("Mul", [g.op("Sub", [c("one", np.array(1.0, dtype=np.float32)), keep]), c("masked", np.array(-10000.0, dtype=np.float32))])

    # RoPE tables sliced to the sequence length, duplicated to the full head: [seq, d].
    inv_freq = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    angles = np.outer(np.arange(max_pos, dtype=np.float32), inv_freq).astype(np.float32)
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), c("dim_1", np.array([1], dtype=np.int64))], axis=0)
    zero_1d, axis_0 = c("start_0", np.array([0], dtype=np.int64)), c("axis_0", np.array([0], dtype=np.int64))
    table = lambda name, values: g.op("Slice", [c(name, np.concatenate([values, values], axis=1)), zero_1d, seq_len, axis_0])
    cos, sin = table("rope_cos", np.cos(angles)), table("rope_sin", np.sin(angles))
    half = head_dim // 2
    split_heads = c("split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = c("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    first_half = (c("h0", np.array([0], dtype=np.int64)), c("h1", np.array([half], dtype=np.int64)))
    second_half = (c("h2", np.array([half], dtype=np.int64)), c("h3", np.array([head_dim], dtype=np.int64)))
    last_axis = c("axis_last", np.array([-1], dtype=np.int64))
    key_scale = c("key_scale", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    sqrt2, one_half = c("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32)), c("half", np.array(0.5, dtype=np.float32))

    def rope(t: str) -> str:  # t: [batch, heads, seq, d]
        x1 = g.op("Slice", [t, first_half[0], first_half[1], last_axis])
        x2 = g.op("Slice", [t, second_half[0], second_half[1], last_axis])
        rotated = g.op("Concat", [g.op("Neg", [x2]), x1], axis=-1)
        return g.op("Add", [g.op("Mul", [t, cos]), g.op("Mul", [rotated, sin])])

    for l in range(config["num_hidden_layers"]):
        p = f"encoder.layers.{l}"
        qkv = linear(x, f"{p}.mixer.Wqkv")
        q, k, v = (
            g.op("Transpose", [g.op("Reshape", [g.op("Slice", [qkv, c(f"s{l}{i}", np.array([i * hidden], dtype=np.int64)), c(f"e{l}{i}", np.array([(i + 1) * hidden], dtype=np.int64)), last_axis]), split_heads])], perm=[0, 2, 1, 3])
            for i in range(3)
        )
        q, k = rope(q), g.op("Mul", [rope(k), key_scale])
        scores = g.op("Add", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])]), mask])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
        x = layer_norm(g.op("Add", [linear(context, f"{p}.mixer.out_proj"), x]), f"{p}.norm1")
        inner = linear(x, f"{p}.mlp.fc1")
        gelu = g.op("Mul", [g.op("Mul", [inner, g.op("Add", [g.op("Erf", [g.op("Div", [inner, sqrt2])]), "one"])]), one_half])
        x = layer_norm(g.op("Add", [linear(gelu, f"{p}.mlp.fc2"), x]), f"{p}.norm2")

    g.nodes.append(helper.make_node("Identity", [x], ["text_embeds"], name="output"))
    ints = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, ["batch_size", "sequence_length"])
    graph = helper.make_graph(
        g.nodes,
        "jina_embeddings_v3",
        [ints("input_ids"), ints("attention_mask"), helper.make_tensor_value_info("task_id", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch_size", "sequence_length", hidden])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="embedrt")
    model.ir_version = 8
    return model


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    out = Path(sys.argv[2])
    model = build(Path(sys.argv[1]))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True, location=out.name + "_data", size_threshold=1024)
    onnx.checker.check_model(str(out))


if __name__ == "__main__":
    main()
