#!/usr/bin/env python3
"""sentence-transformers in-process on a model folder: the ceiling a Python app reaches without a
server, at its best batch size. Writes one embedrt-bench-shaped JSON summary (label, tags,
inputs_per_s; the latency fields are one batch's mean), so benches/table.py prints it beside the
servers' rows.

Usage: st_inprocess.py MODEL_DIR SENTENCES_FILE JSON_OUT [--seconds S] [--tag KEY=VALUE ...]

Each batch size in BATCHES encodes the sentences in turn for S seconds (after one warm-up batch);
the best one is written, with every size's rate in its tags.
"""

import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

BATCHES = [1, 8, 32, 128]


def main():
    args = sys.argv[1:]
    model_dir, sentences_file, out = args[:3]
    seconds, tags = 15.0, {}
    rest = args[3:]
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--seconds":
            seconds = float(value)
        elif flag == "--tag":
            key, _, val = value.partition("=")
            tags[key] = val
    sentences = [line.strip() for line in open(sentences_file) if line.strip()]
    torch.set_num_threads(torch.get_num_threads())
    model = SentenceTransformer(model_dir, device="cpu")
    rates = {}
    for batch in BATCHES:
        model.encode(sentences[:batch], batch_size=batch)
        done, start, offset = 0, time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            chunk = [sentences[(offset + i) % len(sentences)] for i in range(batch)]
            offset += batch
            model.encode(chunk, batch_size=batch)
            done += batch
        elapsed = time.perf_counter() - start
        rates[batch] = (done / elapsed, elapsed / (done / batch) * 1000)
    best = max(rates, key=lambda b: rates[b][0])
    tags.update({f"batch {b}": f"{rate:.1f}/s" for b, (rate, _) in rates.items()})
    tags["best batch"] = str(best)
    summary = {
        "label": "sentence-transformers", "tags": tags, "concurrency": 1, "batch": best,
        "seconds": seconds, "requests": 0, "errors": 0, "requests_per_s": rates[best][0] / best,
        "inputs_per_s": rates[best][0], "p50_ms": rates[best][1], "p95_ms": rates[best][1],
        "p99_ms": rates[best][1], "max_ms": rates[best][1],
    }
    json.dump(summary, open(out, "w"), indent=2)
    print(f"{model_dir}: best batch {best}, {rates[best][0]:.1f} sentences/s "
          f"({', '.join(f'{b}: {r:.1f}' for b, (r, _) in rates.items())})")


if __name__ == "__main__":
    main()
