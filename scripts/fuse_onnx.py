#!/usr/bin/env python3
"""Writes the fused fp32 graph of a model's ONNX file: ONNX Runtime's transformer optimizer
(multi-head attention, skip layer norm, bias GELU and layer norm fusions; the same offline pass
Infinity's ONNX engine runs through optimum), which ONNX Runtime's own session optimizations do
not apply to a plain PyTorch export. The numbers stay fp32; nothing is quantized.

Writes MODEL_fused.onnx beside the source (onnx/model.onnx -> onnx/model_fused.onnx) and
MODEL_fused.json with the SHA-256 of the source; run again, it does nothing while the source is
unchanged. Serve it with `options = { file = "onnx/model_fused.onnx" }` on the onnx backend.

Usage: fuse_onnx.py MODEL_DIR [--source FILE]
Needs: onnx, onnxruntime (scripts/setup.sh puts them in .assets/venv).
"""

import argparse
import json
from pathlib import Path

from onnxruntime.transformers.optimizer import optimize_model
from quantize_onnx import sha256, source_file, with_weight_files


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--source", help="the fp32 ONNX file, relative to MODEL_DIR")
    args = parser.parse_args()
    source = source_file(args.model_dir, args.source)
    out = source.with_name(source.stem + "_fused.onnx")
    stamp = out.with_suffix(".json")
    digest = sha256(*with_weight_files(source))
    if out.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("source_sha256") == digest:
        print(f"{out} is up to date")
        return
    config = json.loads((args.model_dir / "config.json").read_text())
    model = optimize_model(
        str(source),
        model_type="bert",
        num_heads=config["num_attention_heads"],
        hidden_size=config["hidden_size"],
        opt_level=0,  # fusions only; the session applies its own optimizations at load
        use_gpu=False,
    )
    fused = {op: count for op, count in model.get_fused_operator_statistics().items() if count}
    model.save_model_to_file(str(out), use_external_data_format=source.stat().st_size > 1 << 31)
    stamp.write_text(json.dumps({"source": source.name, "source_sha256": digest, "fused": fused}, indent=2))
    print(f"wrote {out}: {fused}")


if __name__ == "__main__":
    main()
