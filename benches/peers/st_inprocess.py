#!/usr/bin/env python3
"""sentence-transformers in-process on a model folder: the ceiling a Python app reaches without a
server, at its best batch size. Writes one embedrt-bench-shaped JSON summary (label, tags,
inputs_per_s; the latency fields are one batch's mean; peak_rss_mb, the process's peak resident
memory), so benches/table.py prints it beside the servers' rows.

Usage: st_inprocess.py MODEL_DIR SENTENCES_FILE JSON_OUT [--seconds S] [--passages FILE]
                       [--tag KEY=VALUE ...]

Each batch size in BATCHES encodes the sentences in turn for S seconds (after one warm-up batch);
the best one is written, with every size's rate in its tags. With --passages the model is a
cross-encoder: `CrossEncoder.predict` scores (sentence, passage) pairs, each sentence a query
against passages in turn, and the inputs counted are pairs.
"""

import json
import resource
import sys
import time

import torch
from sentence_transformers import CrossEncoder, SentenceTransformer

BATCHES = [1, 8, 32, 128]


def main():
    args = sys.argv[1:]
    model_dir, sentences_file, out = args[:3]
    seconds, tags, passages_file = 15.0, {}, None
    rest = args[3:]
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--seconds":
            seconds = float(value)
        elif flag == "--passages":
            passages_file = value
        elif flag == "--tag":
            key, _, val = value.partition("=")
            tags[key] = val
    sentences = [line.strip() for line in open(sentences_file) if line.strip()]
    torch.set_num_threads(torch.get_num_threads())
    if passages_file is None:
        inputs = sentences
        model = SentenceTransformer(model_dir, device="cpu")
        run = model.encode
    else:
        passages = [line.strip() for line in open(passages_file) if line.strip()]
        inputs = [(sentences[i // len(passages)], passage) for i, passage in
                  enumerate(passages * 4)]
        model = CrossEncoder(model_dir, device="cpu")
        run = model.predict
    rates = {}
    for batch in BATCHES:
        run(inputs[:batch], batch_size=batch)
        done, start, offset = 0, time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            chunk = [inputs[(offset + i) % len(inputs)] for i in range(batch)]
            offset += batch
            run(chunk, batch_size=batch)
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
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    json.dump(summary, open(out, "w"), indent=2)
    print(f"{model_dir}: best batch {best}, {rates[best][0]:.1f} inputs/s "
          f"({', '.join(f'{b}: {r:.1f}' for b, (r, _) in rates.items())})")


if __name__ == "__main__":
    main()
