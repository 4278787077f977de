#!/usr/bin/env python3
"""Makes the int8 OpenVINO IR of a model's fp32 graph, for `dtype = "int8"` on the openvino backend.

The recipe: NNCF's post-training quantization (static: activation scales calibrated once) of the
fp32 graph (the model's IR, else its ONNX file), on the calibration texts
(scripts/data/calibration.txt, never the texts the quality gates measure on), with NNCF's
transformer settings, calibrated one unpadded text at a time (padding would count in the
activations' ranges), with
  - SmoothQuant at strength 0.95 for MatMuls (--smooth-quant): it moves an activation channel's
    outliers into the weights before the activations get one scale each;
  - the FFN down-projection of the second layer kept in f32 (--keep-layers, default 1): its
    input (a GELU output) holds the outlier channels, and with static scales an input of special
    tokens alone (the empty text) came out at cosine 0.95.
On all-MiniLM-L6-v2 (BENCHMARKS.md, "OpenVINO"), on the held-out texts: without SmoothQuant the
mean cosine to fp32 is 0.993 (below the 0.995 gate); at 0.95 it is 0.997 with the lowest 0.950
(the empty text); keeping one layer's MatMuls in f32 in turn showed the second layer's, and of
its eight MatMuls the down-projection alone brings the lowest to 0.985.

Writes openvino_model_int8.xml/.bin beside the source (in openvino/ for a source in a subfolder)
and openvino_model_int8.json with the SHA-256 of the source, its weights and the calibration
texts, and the recipe. Run again, it does nothing while those are unchanged.

Usage: quantize_openvino.py MODEL_DIR [--source FILE] [--calibration FILE] [--smooth-quant A]
       [--keep-layers L,...] [--check]
  --smooth-quant A  SmoothQuant's strength for MatMuls (-1: off)
  --keep-layers L,...  the layers (from 0) whose FFN down-projection stays f32 ("": none)
  --check  also prints the int8 graph's agreement with the fp32 one on the load generator's
           sentences (mean and lowest cosine); the Rust test holds it to the gates.
Needs: openvino, nncf, numpy, tokenizers (scripts/setup.sh puts them in .assets/openvino-venv).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import nncf
import openvino as ov
from tokenizers import Tokenizer

from digest import sha256

ROOT = Path(__file__).resolve().parent
SOURCES = ["openvino_model.xml", "openvino/openvino_model.xml", "model.onnx", "onnx/model.onnx"]
# Bumped whenever the recipe changes what it writes, so older int8 IRs are made again.
RECIPE_VERSION = 1


def weights_of(source: Path) -> list[Path]:
    """The files holding `source`'s weights besides itself: an IR's `.bin`, an ONNX file's
    external data."""
    companion = source.with_suffix(".bin") if source.suffix == ".xml" else Path(f"{source}_data")
    return [companion] if companion.is_file() else []


def encode(tokenizer: Tokenizer, texts: list[str], inputs: list[str]) -> list[dict]:
    """One feed per text (batch 1, no padding), with the inputs the graph takes."""
    feeds = []
    for encoding in tokenizer.encode_batch(texts):
        tensors = {
            "input_ids": encoding.ids,
            "attention_mask": encoding.attention_mask,
            "token_type_ids": encoding.type_ids,
            "position_ids": list(range(len(encoding.ids))),
        }
        feeds.append({name: np.array([tensors[name]], dtype=np.int64) for name in inputs})
    return feeds


def down_projections(model: ov.Model, config: dict) -> list[str]:
    """The FFN down-projections, in layer order: the MatMuls from the FFN's inner width
    (`intermediate_size`) back to `hidden_size`."""
    inner, hidden = config["intermediate_size"], config["hidden_size"]
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        weight, out = op.input(1).get_partial_shape(), op.output(0).get_partial_shape()
        if not weight.is_static or not out[out.rank.get_length() - 1].is_static:
            continue
        sizes = sorted(d.get_length() for d in weight)[-2:]
        if sizes == sorted([inner, hidden]) and out[out.rank.get_length() - 1].get_length() == hidden:
            found.append(op.get_friendly_name())
    return found


def pooled(compiled, feeds: list[dict]) -> np.ndarray:
    """Mean-pooled, normalized vectors of `feeds` (one text each)."""
    vectors = []
    for feed in feeds:
        hidden = compiled(feed)[0][0]
        vector = hidden.mean(axis=0)
        vectors.append(vector / np.linalg.norm(vector))
    return np.array(vectors)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--source", type=Path)
    parser.add_argument("--calibration", type=Path, default=ROOT / "data" / "calibration.txt")
    parser.add_argument("--smooth-quant", type=float, default=0.95)
    parser.add_argument("--keep-layers", default="1")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()

    source = args.source or next(
        (args.model_dir / name for name in SOURCES if (args.model_dir / name).is_file()), None
    )
    if source is None:
        raise SystemExit(f"{args.model_dir}: no graph (looked for {SOURCES})")
    folder = source.parent if source.parent == args.model_dir else args.model_dir / "openvino"
    target = folder / "openvino_model_int8.xml"
    record = folder / "openvino_model_int8.json"
    recipe = {
        "recipe_version": RECIPE_VERSION,
        "nncf": nncf.__version__,
        "openvino": ov.__version__,
        "smooth_quant": args.smooth_quant,
        "keep_layers": args.keep_layers,
    }
    key = {
        "source": str(source.relative_to(args.model_dir)),
        "source_sha256": sha256(source, *weights_of(source)),
        "calibration_sha256": sha256(args.calibration),
        **recipe,
    }
    if record.is_file() and target.is_file() and not args.check:
        known = json.loads(record.read_text())
        if all(known.get(k) == v for k, v in key.items()):
            print(f"{target} is up to date")
            return

    core = ov.Core()
    model = core.read_model(str(source))
    inputs = [port.get_any_name() for port in model.inputs]
    tokenizer = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    texts = [line for line in args.calibration.read_text().splitlines() if line.strip()]
    feeds = encode(tokenizer, texts, inputs)
    projections = down_projections(model, json.loads((args.model_dir / "config.json").read_text()))
    layers = [int(layer) for layer in args.keep_layers.split(",") if layer.strip()]
    kept = [projections[layer] for layer in layers if layer < len(projections)]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(feeds),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(feeds),
        ignored_scope=nncf.IgnoredScope(names=kept),
        advanced_parameters=nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=args.smooth_quant),
        ),
    )
    folder.mkdir(exist_ok=True)
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    record.write_text(json.dumps({**key, "kept_f32": kept}, indent=2) + "\n")
    print(f"wrote {target}: NNCF int8, SmoothQuant {args.smooth_quant}, f32: {kept}")

    if args.check:
        held = (ROOT.parent / "benches" / "data" / "sentences.txt").read_text().splitlines()
        held_feeds = encode(tokenizer, [t for t in held if t.strip()], inputs)
        fp32 = pooled(core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}), held_feeds)
        int8 = pooled(core.compile_model(str(target), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}), held_feeds)
        cosines = (fp32 * int8).sum(axis=1)
        print(f"held-out: mean cosine {cosines.mean():.4f}, lowest {cosines.min():.4f}")


if __name__ == "__main__":
    main()
