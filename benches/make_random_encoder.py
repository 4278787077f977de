#!/usr/bin/env python3
"""Writes a random-weight encoder, decoder embedder or cross-encoder (reranker) at a real model's
size, with its ONNX export, for speed benchmarks of the model families and of reranking.

Usage: make_random_encoder.py SIZE OUT_DIR TOKENIZER_DIR

SIZE is one of the real models below; OUT_DIR gets what a sentence-transformers repo of that
model holds: config.json (the real dimensions), model.safetensors (f32), the sentence-transformers
modules (the model's pooling, Normalize, its max length) and onnx/model.onnx (inputs input_ids and
attention_mask, output last_hidden_state, dynamic batch and sequence axes). A reranker's folder
is a cross-encoder repo instead: a sequence-classification model with one label, its activation
in config.json as sentence-transformers writes it, and onnx/model.onnx with output logits. A
decoder (Qwen3-Embedding) pools its last token, carries its prompts, and its graph also takes
position_ids (no KV cache), and its tokenizer pads on the left as Qwen3's does. The tokenizer
comes from TOKENIZER_DIR (MiniLM's WordPiece serves every size: speed depends on sequence lengths,
not on the vocabulary, and its token counts for English are the real models'; its [SEP] is the
end token a decoder pools), and the vocabulary is the tokenizer's unless the size names the real
one (which then only moves the embedding table).

Needs torch and transformers (the Infinity venv of benches/peers/infinity.sh has both; Qwen3
needs transformers >= 4.51, its TRANSFORMERS=4.51.3 venv).
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    ModernBertConfig,
    MPNetConfig,
    XLMRobertaConfig,
)

# Each real model's dimensions, its pooling and its sentence-transformers length limit.
SIZES = {
    # BAAI/bge-m3: XLM-RoBERTa large.
    "bge-m3": (XLMRobertaConfig, dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                      intermediate_size=4096, max_position_embeddings=8194), "cls", 8192),
    # intfloat/multilingual-e5-small.
    "multilingual-e5-small": (XLMRobertaConfig, dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                                                     intermediate_size=1536, max_position_embeddings=514), "mean", 512),
    # sentence-transformers/all-mpnet-base-v2.
    "all-mpnet-base-v2": (MPNetConfig, dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                            intermediate_size=3072, max_position_embeddings=514,
                                            relative_attention_num_buckets=32), "mean", 384),
    # nomic-ai/modernbert-embed-base (ModernBERT base).
    "modernbert-embed-base": (ModernBertConfig, dict(hidden_size=768, num_hidden_layers=22, num_attention_heads=12,
                                                     intermediate_size=1152, max_position_embeddings=8192,
                                                     global_attn_every_n_layers=3, local_attention=128,
                                                     global_rope_theta=160000.0, local_rope_theta=10000.0,
                                                     norm_eps=1e-5), "mean", 8192),
}

# Each real decoder embedder's dimensions (its vocabulary included), pooling, length limit and
# the prompts of its config_sentence_transformers.json.
DECODERS = {
    # Qwen/Qwen3-Embedding-0.6B.
    "qwen3-embedding-0.6b": (
        "Qwen3Config",
        dict(vocab_size=151669, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
             num_key_value_heads=8, head_dim=128, intermediate_size=3072, max_position_embeddings=32768,
             rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, use_cache=False,
             use_sliding_window=False, sliding_window=None, max_window_layers=28),
        "lasttoken", 32768,
        {"query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
         "document": ""},
    ),
}

# Each real cross-encoder's dimensions and the activation sentence-transformers applies (None:
# its default for one label, sigmoid).
RERANKERS = {
    # cross-encoder/ms-marco-MiniLM-L6-v2: scores are raw logits.
    "ms-marco-MiniLM-L6-v2": (BertConfig, dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                               intermediate_size=1536, max_position_embeddings=512),
                              "torch.nn.modules.linear.Identity"),
    # BAAI/bge-reranker-v2-m3: XLM-RoBERTa large, one token type, sigmoid scores.
    "bge-reranker-v2-m3": (XLMRobertaConfig, dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                                  intermediate_size=4096, max_position_embeddings=8194,
                                                  type_vocab_size=1), None),
}

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def main():
    size, out, tokenizer_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    vocab = len(json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"])
    pad = json.loads((tokenizer_dir / "config.json").read_text()).get("pad_token_id", 0)
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    if size in RERANKERS:
        model, inputs = write_reranker(size, out, vocab, pad)
        outputs = ["logits"]
    elif size in DECODERS:
        model, inputs = write_decoder(size, out, vocab, pad)
        outputs = ["last_hidden_state"]
    else:
        model, inputs = write_encoder(size, out, vocab, pad)
        outputs = ["last_hidden_state"]
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, out / name)
    # Like the real models' tokenizers, give token types only to models that take them:
    # ModernBERT's forward takes none, XLM-RoBERTa has one type, and a peer passing them would
    # fail where it would not on the real model.
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer_config["model_input_names"] = [name for name in inputs if name != "position_ids"]
    if size in DECODERS:
        tokenizer_config["padding_side"] = "left"  # as Qwen3-Embedding's: the peers pad so
    write_json(out / "tokenizer_config.json", tokenizer_config)
    example = torch.randint(min(1000, vocab // 2), vocab, (2, 16))
    mask = torch.ones_like(example)
    mask[1, 10:] = 0
    tensors = {"input_ids": example, "attention_mask": mask, "token_type_ids": torch.zeros_like(example),
               "position_ids": torch.arange(16).expand(2, 16)}
    (out / "onnx").mkdir(exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model, tuple(tensors[name] for name in inputs), str(out / "onnx/model.onnx"),
            input_names=inputs, output_names=outputs,
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in inputs}
            | {name: {0: "batch"} if name == "logits" else {0: "batch", 1: "sequence"} for name in outputs},
            opset_version=17, dynamo=False,
        )
    print(f"{out}: {size}, {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters")


def write_encoder(size, out, vocab, pad):
    """An encoder with its sentence-transformers modules; returns it and its inputs."""
    config_class, dims, pooling, max_length = SIZES[size]
    config = config_class(vocab_size=vocab, pad_token_id=pad, **dims)
    if config_class is ModernBertConfig:
        config._attn_implementation = "eager"  # exports without flash or SDPA kernels
    model = AutoModel.from_config(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    write_modules(out, config.hidden_size, pooling, max_length, {})
    return model, ["input_ids", "attention_mask"]


def write_decoder(size, out, vocab, pad):
    """A decoder embedder with its sentence-transformers modules and prompts; returns it and its
    graph's inputs."""
    import transformers

    config_name, dims, pooling, max_length, prompts = DECODERS[size]
    config = getattr(transformers, config_name)(**(dict(vocab_size=vocab, pad_token_id=pad) | dims))
    config._attn_implementation = "eager"  # exports without SDPA kernels
    model = AutoModel.from_config(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    write_modules(out, config.hidden_size, pooling, max_length, prompts)
    return model, ["input_ids", "attention_mask", "position_ids"]


def write_modules(out, hidden_size, pooling, max_length, prompts):
    """The sentence-transformers modules of an embedder: Transformer, Pooling, Normalize."""
    write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(out / "1_Pooling/config.json", {
        "word_embedding_dimension": hidden_size,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_lasttoken": pooling == "lasttoken",
        "include_prompt": True,
    })
    write_json(out / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
    write_json(out / "config_sentence_transformers.json", {"prompts": prompts, "default_prompt_name": None})


def write_reranker(size, out, vocab, pad):
    """A cross-encoder (one label, its activation named); returns it and its inputs."""
    config_class, dims, activation = RERANKERS[size]
    config = config_class(vocab_size=vocab, pad_token_id=pad, num_labels=1, **dims)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    if activation is not None:
        saved = json.loads((out / "config.json").read_text())
        saved["sentence_transformers"] = {"activation_fn": activation}
        write_json(out / "config.json", saved)
    inputs = ["input_ids", "attention_mask"]
    return model, inputs + ["token_type_ids"] if config.type_vocab_size > 1 else inputs


if __name__ == "__main__":
    main()
