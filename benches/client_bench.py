"""Embedding 10,000 distinct sentences through one embedrt server, four ways: a naive loop (one
text per request, sequential, `requests`), `embedrt.Client.embed` with all of them, and
`embedrt.AsyncClient` with 200 concurrent callers of one text each, coalescing on and off.

Usage: client_bench.py URL SENTENCES_FILE JSON_OUT [COUNT]
Prints a Markdown table; every way's vectors are checked against the batched client's.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import numpy as np
import requests
from embedrt import AsyncClient, Client

CALLERS = 200


def naive(url, texts):
    vectors = []
    for text in texts:
        response = requests.post(f"{url}/v1/embeddings", json={"input": text})
        response.raise_for_status()
        vectors.append(response.json()["data"][0]["embedding"])
    return np.array(vectors, dtype=np.float32)


def batched(url, texts):
    with Client(url) as client:
        return client.embed_numpy(texts)


def callers(url, texts, coalesce_ms):
    async def run():
        out = [None] * len(texts)
        async with AsyncClient(url, coalesce_ms=coalesce_ms) as client:

            async def caller(first):
                for i in range(first, len(texts), CALLERS):
                    out[i] = await client.embed(texts[i])

            await asyncio.gather(*(caller(k) for k in range(CALLERS)))
        return np.array(out, dtype=np.float32)

    return asyncio.run(run())


def cpu_seconds():
    """CPU time of this process (every thread), user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    url, sentences, json_out = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 10_000
    with open(sentences) as file:
        lines = [line.strip() for line in file if line.strip()]
    texts = [f"{lines[i % len(lines)]} ({i // len(lines)})" for i in range(count)]
    batched(url, texts[:500])  # warm-up: connections, the engine's first shapes
    ways = [
        ("naive loop: 1 text per request, sequential (`requests`)", lambda: naive(url, texts)),
        ("`Client.embed` (all texts in one call)", lambda: batched(url, texts)),
        (
            f"`AsyncClient`, {CALLERS} one-text callers, coalescing on (2 ms)",
            lambda: callers(url, texts, 2.0),
        ),
        (
            f"`AsyncClient`, {CALLERS} one-text callers, coalescing off",
            lambda: callers(url, texts, 0),
        ),
    ]
    results, reference = [], None
    for name, way in ways:
        started, cpu_before = time.perf_counter(), cpu_seconds()
        vectors = way()
        seconds = time.perf_counter() - started
        client_cpu = cpu_seconds() - cpu_before
        if reference is None:
            reference = vectors
        cosine = float((vectors * reference).sum(1).min())
        results.append(
            {
                "way": name,
                "seconds": seconds,
                "sentences_per_s": count / seconds,
                "min_cosine_to_first": cosine,
                "client_cpu_s": client_cpu,
            }
        )
    with open(json_out, "w") as file:
        json.dump(results, file, indent=2)
    base = results[0]["seconds"]
    print(
        f"| {count:,} sentences | wall s | sentences/s | vs naive loop | client CPU s "
        "| lowest cosine vs naive |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['way']} | {r['seconds']:.1f} | {r['sentences_per_s']:.0f} | "
            f"{base / r['seconds']:.1f}x | {r['client_cpu_s']:.1f} | {r['min_cosine_to_first']:.5f} |"
        )


if __name__ == "__main__":
    main()
