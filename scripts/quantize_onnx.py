#!/usr/bin/env python3
"""Makes the int8 graph of a model's fp32 ONNX file, for `dtype = "int8"` on the onnx backend.

The recipe (ONNX Runtime's dynamic quantization, chosen against quality gates; see the README's
"int8" section and BENCHMARKS.md for the figures):
  - weights int8, one scale per output channel; activations uint8, scaled per batch at run time;
    on a CPU without VNNI (AVX2 alone) the weights are uint8 instead, since ONNX Runtime sums
    uint8 x int8 products there in saturating 16-bit lanes (the gates failed: lowest cosine 0.96);
  - only MatMuls with a weight are quantized (attention's activation-by-activation products stay
    fp32, as do embeddings, layer norms and softmax);
  - outlier channels stay fp32: on the calibration texts (scripts/data/calibration.txt, never the
    texts the gates measure on) each weight MatMul's input gets max|x| / std over real tokens.
    One int8 step of an input with ratio r is r/127 standard deviations, so at a high ratio most
    values round to a handful of levels. In an input above --threshold (default 30) the few
    channels whose own peak is above --channel-threshold (default 20) standard deviations of the
    whole input are split off: the int8 MatMul sees the input with those channels zeroed, and a
    small fp32 MatMul over just those channels (with the matching weight rows) is added to its
    result. In BERT-family models these are a handful of channels of the first layers' FFN
    down-projection inputs (GELU outputs) and attention inputs (layer-norm outputs). Keeping
    whole MatMuls fp32 instead passes the same gates but costs ~15% of the speed (BENCHMARKS.md).
  - jina-embeddings-v3's export merges each layer's LoRA adapter into its weight at run time
    (x @ (W + s * B[task] @ A[task]).T), so no weight is a constant there. The graph is first
    rewritten into the equivalent low-rank form x @ W.T + s * (x @ A[task].T) @ B[task].T, whose
    base product has a constant weight to quantize while the rank-4 adapter path stays fp32; the
    rewrite is checked against the original on the calibration texts for every task.

Writes MODEL_int8.onnx beside the source (model.onnx -> model_int8.onnx, onnx/model.onnx ->
onnx/model_int8.onnx) and MODEL_int8.json with the SHA-256 of the source and its external weight
files, the recipe, its settings and which channels stayed fp32. Run again, it does nothing while
the source, the calibration texts and the recipe are unchanged.

Usage: quantize_onnx.py MODEL_DIR [--source FILE] [--calibration FILE] [--threshold R]
       [--channel-threshold R]
Needs: numpy, onnx, onnxruntime, tokenizers (scripts/setup.sh puts them in .assets/venv).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from tokenizers import Tokenizer

from digest import sha256

ROOT = Path(__file__).resolve().parent
BATCH = 32
# Bumped whenever the recipe changes what it writes, so older int8 graphs are made again.
RECIPE_VERSION = 2


def has_vnni() -> bool:
    """Whether this CPU has VNNI (AVX-512 VNNI or AVX-VNNI), with which ONNX Runtime multiplies
    uint8 activations by int8 weights exactly. Without it (AVX2 alone) the product pairs are
    summed in saturating 16-bit lanes (vpmaddubsw), which int8 weights overflow; uint8 weights
    take ONNX Runtime's uint8 x uint8 kernel, which does not saturate."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def with_weight_files(source: Path) -> list[Path]:
    """`source` and the external weight files it names (e.g. `model.onnx_data`): a change to
    either must make a new int8 graph."""
    graph = onnx.load(str(source), load_external_data=False).graph
    locations = {
        entry.value
        for tensor in graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return [source] + [source.parent / location for location in sorted(locations)]


def source_file(model_dir: Path, named: str | None) -> Path:
    candidates = [model_dir / named] if named else [model_dir / "model.onnx", model_dir / "onnx/model.onnx"]
    for path in candidates:
        if path.is_file():
            return path
    raise SystemExit(f"no ONNX file: looked for {[str(c) for c in candidates]}")


def weight_matmuls(model: onnx.ModelProto):
    """(node, activation input) of every MatMul with a weight, and the names of the others."""
    weights = {i.name for i in model.graph.initializer}
    with_weight, without = [], []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        activations = [x for x in node.input if x not in weights]
        if len(activations) == 1:
            with_weight.append((node, activations[0]))
        else:
            without.append(node.name)
    return with_weight, without


def unmerge_lora(model: onnx.ModelProto) -> int:
    """Rewrites every `x @ Transpose(W + s * (B @ A))` into `x @ W.T + s * (x @ A.T) @ B.T`.

    Returns how many MatMuls were rewritten; nodes left unused are removed.
    """
    initializers = {i.name: i for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}

    def made_by(name, op):
        node = producer.get(name)
        return node if node is not None and node.op_type == op else None

    rewritten, new_nodes = 0, []
    for node in list(model.graph.node):
        if node.op_type != "MatMul":
            continue
        transpose = made_by(node.input[1], "Transpose")
        add = transpose and made_by(transpose.input[0], "Add")
        if not add or add.input[0] not in initializers:
            continue
        mul = made_by(add.input[1], "Mul")
        product = mul and made_by(mul.input[0], "MatMul")
        if not product:
            continue
        weight = initializers[add.input[0]]
        x, b_sel, a_sel, scale = node.input[0], product.input[0], product.input[1], mul.input[1]
        name = node.name or node.output[0]
        transposed = numpy_helper.from_array(
            np.ascontiguousarray(numpy_helper.to_array(weight).T), f"{weight.name}.T")
        model.graph.initializer.append(transposed)
        def n(suffix, name=name):
            return f"{name}/unmerged/{suffix}"

        new_nodes.extend([
            helper.make_node("MatMul", [x, transposed.name], [n("base")], name=n("base")),
            helper.make_node("Transpose", [a_sel], [n("a_t")], name=n("a_t"), perm=[1, 0]),
            helper.make_node("Transpose", [b_sel], [n("b_t")], name=n("b_t"), perm=[1, 0]),
            helper.make_node("MatMul", [x, n("a_t")], [n("down")], name=n("down")),
            helper.make_node("MatMul", [n("down"), n("b_t")], [n("up")], name=n("up")),
            helper.make_node("Mul", [n("up"), scale], [n("scaled")], name=n("scaled")),
            helper.make_node("Add", [n("base"), n("scaled")], [node.output[0]], name=n("sum")),
        ])
        model.graph.node.remove(node)
        rewritten += 1
    if not rewritten:
        return 0
    # The new nodes are appended, then everything is put back in topological order.
    nodes = list(model.graph.node) + new_nodes
    del model.graph.node[:]
    model.graph.node.extend(topological(nodes, model))
    remove_unused(model)
    return rewritten


def topological(nodes, model):
    """`nodes` ordered so that each comes after the producers of its inputs."""
    available = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    ordered, pending = [], list(nodes)
    while pending:
        ready = [node for node in pending if all(x in available for x in node.input)]
        if not ready:
            raise SystemExit("the rewritten graph has a cycle or a missing input")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [node for node in pending if node not in ready]
    return ordered


def remove_unused(model: onnx.ModelProto) -> None:
    """Drops nodes and initializers nothing reaches the graph's outputs through."""
    needed = {o.name for o in model.graph.output}
    kept = []
    for node in reversed(list(model.graph.node)):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    del model.graph.node[:]
    model.graph.node.extend(reversed(kept))
    unused = [i for i in model.graph.initializer if i.name not in needed]
    for initializer in unused:
        model.graph.initializer.remove(initializer)


def weight_bytes(model: onnx.ModelProto) -> int:
    """The size of `model`'s weights (a protobuf over 2 GB cannot even be measured whole)."""
    return sum(t.ByteSize() for t in model.graph.initializer)


def save(model: onnx.ModelProto, path: Path) -> None:
    """Saves `model`, its weights in `<path>_data` when they are too large for one protobuf."""
    if weight_bytes(model) < 1.8e9:
        onnx.save(model, str(path))
    else:
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + "_data")


# Families whose positions start after the padding id (RoBERTa's rule); the others count from 0.
POSITIONS_AFTER_PADDING = {"xlm-roberta", "roberta", "mpnet"}


class Feeder:
    """How the calibration texts are fed to a model's graph: its tokenizer, its number of task
    adapters (graphs with a `task_id` run once per adapter) and the position id of a row's first
    token (graphs with `position_ids`)."""

    def __init__(self, model_dir: Path):
        config = json.loads((model_dir / "config.json").read_text())
        self.adapters = len(config.get("lora_adaptations", [])) or 1
        self.first_position = 0
        if config.get("model_type") in POSITIONS_AFTER_PADDING:
            self.first_position = config.get("pad_token_id", 1) + 1
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(512)

    def batches(self, texts, graph_inputs):
        """Feeds of BATCH texts each (right-padded), for every adapter when the graph takes a
        `task_id`, with each feed's attention mask."""
        for start in range(0, len(texts), BATCH):
            encodings = self.tokenizer.encode_batch(texts[start:start + BATCH])
            length = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(encodings), length), np.int64)
            mask = np.zeros_like(ids)
            for row, encoding in enumerate(encodings):
                ids[row, :len(encoding.ids)] = encoding.ids
                mask[row, :len(encoding.ids)] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in graph_inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            if "position_ids" in graph_inputs:
                positions = self.first_position + np.arange(length)
                feed["position_ids"] = np.broadcast_to(positions, ids.shape).copy()
            if "task_id" in graph_inputs:
                for adapter in range(self.adapters):
                    yield {**feed, "task_id": np.array(adapter, np.int64)}, mask
            else:
                yield feed, mask


def run_all(path: Path, names, feeder: Feeder, texts):
    """The outputs `names` of the graph at `path` for every calibration batch (and task)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph_inputs = {i.name for i in session.get_inputs()}
    for feed, mask in feeder.batches(texts, graph_inputs):
        yield session.run(names, feed), mask


class Outliers:
    """Over real tokens of the calibration texts, per probed activation: its standard deviation
    and each channel's largest magnitude."""

    def __init__(self, std: float, channel_peaks: np.ndarray):
        self.std = std
        self.channel_peaks = channel_peaks

    def ratio(self) -> float:
        """max|x| / std over the whole activation."""
        return float(self.channel_peaks.max()) / self.std

    def channels_above(self, limit: float) -> np.ndarray:
        """The channels whose own peak is above `limit` standard deviations."""
        return np.flatnonzero(self.channel_peaks / self.std > limit)


def outliers(model, probes, texts, feeder: Feeder, scratch: Path) -> dict:
    """The [`Outliers`] of each probed activation, on `texts`."""
    names = sorted({activation for _, activation in probes})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    save(probe, scratch)
    peaks = {n: None for n in names}
    total = {n: 0.0 for n in names}
    squares = {n: 0.0 for n in names}
    count = {n: 0 for n in names}
    for values, mask in run_all(scratch, names, feeder, texts):
        for name, value in zip(names, values):
            real = value[mask.astype(bool)] if value.ndim == 3 else value.reshape(-1, value.shape[-1])
            real = real.astype(np.float64)
            peak = np.abs(real).max(axis=0)
            peaks[name] = peak if peaks[name] is None else np.maximum(peaks[name], peak)
            total[name] += float(real.sum())
            squares[name] += float((real * real).sum())
            count[name] += real.size
    found = {}
    for name in names:
        mean = total[name] / count[name]
        std = max(squares[name] / count[name] - mean * mean, 1e-30) ** 0.5
        found[name] = Outliers(std, peaks[name])
    return found


def split_outlier_channels(model: onnx.ModelProto, probes, channels: dict) -> list:
    """For each activation in `channels` (name -> channel indices), makes every weight MatMul
    reading it compute `int8part(x with those channels zeroed) + x[..., channels] @ W[channels]`,
    the second product in fp32. Returns the names of the fp32 MatMuls added (not to quantize)."""
    initializers = {i.name: i for i in model.graph.initializer}
    readers = {}
    for node, activation in probes:
        readers.setdefault(activation, []).append(node)
    new_nodes, fp32_products = [], []
    for activation, picked in channels.items():
        width = initializers[readers[activation][0].input[1]].dims[0]
        keep = np.ones(width, np.float32)
        keep[picked] = 0.0
        inliers, outliers_out = f"{activation}/inliers", f"{activation}/outlier_channels"
        model.graph.initializer.extend([
            numpy_helper.from_array(keep, f"{activation}/inlier_mask"),
            numpy_helper.from_array(picked.astype(np.int64), f"{activation}/outlier_index"),
        ])
        new_nodes += [
            helper.make_node("Mul", [activation, f"{activation}/inlier_mask"], [inliers], name=inliers),
            helper.make_node("Gather", [activation, f"{activation}/outlier_index"], [outliers_out],
                             name=outliers_out, axis=-1),
        ]
        for node in readers[activation]:
            weight = numpy_helper.to_array(initializers[node.input[1]])
            rows = numpy_helper.from_array(np.ascontiguousarray(weight[picked]), f"{node.input[1]}/outlier_rows")
            model.graph.initializer.append(rows)
            result = node.output[0]
            node.input[0] = inliers
            node.output[0] = f"{result}/int8_part"
            fp32 = f"{result}/fp32_part"
            new_nodes += [
                helper.make_node("MatMul", [outliers_out, rows.name], [fp32], name=fp32),
                helper.make_node("Add", [node.output[0], fp32], [result], name=f"{result}/sum"),
            ]
            fp32_products.append(fp32)
    nodes = list(model.graph.node) + new_nodes
    del model.graph.node[:]
    model.graph.node.extend(topological(nodes, model))
    return fp32_products


def check_same(source: Path, rewritten: Path, output: str, feeder: Feeder, texts) -> float:
    """The largest difference between the two graphs' `output` relative to its scale."""
    worst = 0.0
    original = run_all(source, [output], feeder, texts)
    for (mine, _), (theirs, _) in zip(run_all(rewritten, [output], feeder, texts), original):
        worst = max(worst, float(np.abs(mine[0] - theirs[0]).max() / (np.abs(theirs[0]).max() + 1e-12)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--source", help="the fp32 ONNX file, relative to MODEL_DIR")
    parser.add_argument("--calibration", type=Path, default=ROOT / "data/calibration.txt")
    parser.add_argument("--threshold", type=float, default=30.0,
                        help="max|x|/std of a MatMul input above which its outlier channels stay fp32")
    parser.add_argument("--channel-threshold", type=float, default=20.0,
                        help="a channel's peak, in standard deviations of its input, above which it stays fp32")
    args = parser.parse_args()

    source = source_file(args.model_dir, args.source)
    out = source.with_name(source.stem + "_int8.onnx")
    meta_path = out.with_suffix(".json")
    key = {
        "source": source.name,
        "source_sha256": sha256(*with_weight_files(source)),
        "recipe_version": RECIPE_VERSION,
        "calibration": str(args.calibration.name),
        "calibration_sha256": sha256(args.calibration),
        "threshold": args.threshold,
        "channel_threshold": args.channel_threshold,
        # The graph suits the CPU kind it was made on: made again on one with or without VNNI.
        "weight_type": "int8" if has_vnni() else "uint8",
    }
    if out.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in key.items()):
            print(f"{out} is up to date")
            return

    feeder = Feeder(args.model_dir)
    texts = [t for t in args.calibration.read_text(encoding="utf-8").splitlines() if t.strip()]

    model = onnx.load(str(source))
    scratch = source.with_name(source.stem + "_scratch.onnx")
    try:
        unmerged = unmerge_lora(model)
        quantize_from = source
        if unmerged:
            quantize_from = source.with_name(source.stem + "_unmerged.onnx")
            save(model, quantize_from)
            output = model.graph.output[0].name
            difference = check_same(source, quantize_from, output, feeder, texts[:64])
            if difference > 1e-4:
                raise SystemExit(f"the low-rank rewrite changed `{output}` by {difference:.2e} (relative)")
            print(f"rewrote {unmerged} LoRA-merged MatMuls into low-rank form (same output within {difference:.1e})")
        probes, activation_products = weight_matmuls(model)
        found = outliers(model, probes, texts, feeder, scratch)
        channels = {name: stats.channels_above(args.channel_threshold)
                    for name, stats in found.items() if stats.ratio() > args.threshold}
        channels = {name: picked for name, picked in channels.items() if len(picked)}
        fp32_products = split_outlier_channels(model, probes, channels)
        if channels:
            quantize_from = source.with_name(source.stem + "_split.onnx")
            save(model, quantize_from)
        large = weight_bytes(model) > 1.8e9
        meta_path.unlink(missing_ok=True)  # the metadata, written last, says the graph is complete
        quantize_dynamic(
            str(quantize_from), str(out),
            per_channel=True,
            weight_type=QuantType.QInt8 if key["weight_type"] == "int8" else QuantType.QUInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=activation_products + fp32_products,
            use_external_data_format=large,
        )
    finally:
        for scratch_name in ("_scratch", "_unmerged", "_split"):
            for leftover in source.parent.glob(source.stem + scratch_name + ".onnx*"):
                leftover.unlink()
    fp32_channels = {name: {"ratio": round(found[name].ratio(), 1), "channels": picked.tolist()}
                     for name, picked in channels.items()}
    meta = {
        **key,
        "recipe": f"onnxruntime quantize_dynamic: per-channel {key['weight_type']} weights, uint8 dynamic activations, "
                  "MatMuls with a weight only; outlier channels of their inputs in a side fp32 MatMul",
        "onnxruntime": ort.__version__,
        "quantized_matmuls": len(probes),
        "fp32_channels": fp32_channels,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    split = {name: len(entry["channels"]) for name, entry in fp32_channels.items()}
    print(f"wrote {out}: {len(probes)} MatMuls int8; fp32 channels per input: {split or 'none'}")


if __name__ == "__main__":
    main()
