#!/usr/bin/env python3
"""Writes a jina-embeddings-v3-sized checkpoint with random weights, for speed benchmarks.

Usage: make_random_jina.py OUT_DIR TOKENIZER_DIR [--layers N]

OUT_DIR gets config.json with the real dimensions (vocab 250002, hidden 1024, 24 layers, 16 heads,
intermediate 4096, five rank-4 adapters, Matryoshka sizes), model.safetensors in bf16 (as the real
checkpoint) with every tensor of the real layout, and the tokenizer files of TOKENIZER_DIR (speed
does not depend on the vocabulary, only on sequence lengths, so any tokenizer whose ids are below
250002 serves). Both LoRA matrices are random, so every task computes something different.
Then build the ONNX graph with scripts/build_jina_onnx.py.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np

TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]


def tensors(config):
    """(name, shape, kind) of every tensor; kind picks the initialisation."""
    v, h, i, t, r = config["vocab_size"], config["hidden_size"], config["intermediate_size"], len(TASKS), config["lora_rank"]
    out = []

    def lora_linear(prefix, inputs, outputs):
        p = f"roberta.{prefix}"
        out.extend([
            (f"{p}.parametrizations.weight.original", (outputs, inputs), "weight"),
            (f"{p}.parametrizations.weight.0.lora_A", (t, r, inputs), "weight"),
            (f"{p}.parametrizations.weight.0.lora_B", (t, outputs, r), "weight"),
            (f"{p}.bias", (outputs,), "zero"),
        ])

    for name, rows in (("word_embeddings", v), ("token_type_embeddings", 1)):
        p = f"roberta.embeddings.{name}.parametrizations.weight"
        out.extend([(f"{p}.original", (rows, h), "weight"), (f"{p}.0.lora_A", (t, rows, r), "weight"), (f"{p}.0.lora_B", (t, r, h), "weight")])
    out.extend([("roberta.emb_ln.weight", (h,), "one"), ("roberta.emb_ln.bias", (h,), "zero")])
    for l in range(config["num_hidden_layers"]):
        p = f"encoder.layers.{l}"
        lora_linear(f"{p}.mixer.Wqkv", h, 3 * h)
        lora_linear(f"{p}.mixer.out_proj", h, h)
        lora_linear(f"{p}.mlp.fc1", h, i)
        lora_linear(f"{p}.mlp.fc2", i, h)
        for norm in ("norm1", "norm2"):
            out.extend([(f"roberta.{p}.{norm}.weight", (h,), "one"), (f"roberta.{p}.{norm}.bias", (h,), "zero")])
    lora_linear("pooler.dense", h, h)
    return out


def to_bf16(array):
    bits = array.astype(np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even


def main():
    args = sys.argv[1:]
    layers = 24
    if "--layers" in args:
        k = args.index("--layers")
        layers = int(args[k + 1])
        del args[k : k + 2]
    if len(args) != 2:
        raise SystemExit(__doc__)
    out, tokenizer_dir = Path(args[0]), Path(args[1])
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["XLMRobertaModel"], "hidden_act": "gelu", "hidden_size": 1024, "intermediate_size": 4096,
        "layer_norm_eps": 1e-05, "lora_adaptations": TASKS, "lora_alpha": 1, "lora_rank": 4,
        "matryoshka_dimensions": [32, 64, 128, 256, 512, 768, 1024], "max_position_embeddings": 8194,
        "num_attention_heads": 16, "num_hidden_layers": layers, "pad_token_id": 1, "position_embedding_type": "rotary",
        "rotary_emb_base": 20000.0, "torch_dtype": "bfloat16", "type_vocab_size": 1, "vocab_size": 250002,
        "task_instructions": {
            "retrieval.query": "Represent the query for retrieving evidence documents: ",
            "retrieval.passage": "Represent the document for retrieval: ",
            "separation": "", "classification": "", "text-matching": "",
        },
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, out / name)

    rng = np.random.default_rng(0)
    specs = tensors(config)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in specs:
        size = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header_bytes = json.dumps(header).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(out / "model.safetensors", "wb") as f:
        f.write(len(header_bytes).to_bytes(8, "little"))
        f.write(header_bytes)
        for name, shape, kind in specs:
            if kind == "weight":
                values = rng.standard_normal(shape, dtype=np.float32) * 0.02
            else:
                values = np.full(shape, 1.0 if kind == "one" else 0.0, dtype=np.float32)
            f.write(to_bf16(values).tobytes())
    print(f"wrote {out} ({offset / 2**30:.2f} GiB of bf16 weights, {layers} layers)")


if __name__ == "__main__":
    main()
