"""Checks a running embedrt server's engine against the reference vectors in ../shared/fixtures.

Used by scripts/test-gpu.sh. Standard library only (the GPU machine's Python need not have numpy).
Models it expects on the server: `minilm` (all-MiniLM-L6-v2) and `jina` (the tiny
jina-embeddings-v3 fixture). Exits non-zero when a vector's cosine similarity to the reference is
below --min-cosine, or a request fails.

Usage: check_engine.py --url http://127.0.0.1:PORT --fixtures DIR --min-cosine 0.999 --label NAME
"""

import argparse
import concurrent.futures
import json
import math
import sys
import urllib.error
import urllib.request


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm


def embed(url, body):
    """Returns (status, parsed body) of POST /v1/embeddings."""
    request = urllib.request.Request(
        f"{url}/v1/embeddings",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def vectors(answer):
    return [item["embedding"] for item in sorted(answer["data"], key=lambda d: d["index"])]


class Tally:
    """The lowest cosine seen per section, and the failures."""

    def __init__(self, min_cosine):
        self.min_cosine = min_cosine
        self.lowest = {}
        self.failures = []

    def compare(self, section, what, got, want):
        if len(got) != len(want):
            self.failures.append(f"{section} {what}: {len(got)} dimensions, expected {len(want)}")
            return
        similarity = cosine(got, want)
        self.lowest[section] = min(self.lowest.get(section, 1.0), similarity)
        if similarity < self.min_cosine:
            self.failures.append(f"{section} {what}: cosine {similarity:.6f}")


def check_minilm(url, fixtures, tally):
    expected = json.load(open(f"{fixtures}/all-MiniLM-L6-v2/expected.json"))
    status, answer = embed(url, {"model": "minilm", "input": expected["texts"]})
    if status != 200:
        tally.failures.append(f"minilm: HTTP {status}: {answer}")
        return
    for i, (got, want) in enumerate(zip(vectors(answer), expected["embeddings"])):
        tally.compare("all-MiniLM-L6-v2", f"text {i}", got, want)


def check_jina(url, fixtures, tally):
    expected = json.load(open(f"{fixtures}/jina-v3-tiny/expected.json"))
    skipped = 0
    for case in expected["cases"]:
        body = {
            "model": "jina",
            "input": expected["texts"],
            "dimensions": case["dimensions"],
            "task": case.get("task") or "none",
        }
        if case.get("normalized") is not None:
            body["normalized"] = case["normalized"]
        status, answer = embed(url, body)
        if status == 400 and body["task"] == "none" and answer["error"].get("param") == "task":
            skipped += 1  # graphs with a task_id input have no base-weights mode
            continue
        if status != 200:
            tally.failures.append(f"jina {body['task']}: HTTP {status}: {answer}")
            continue
        what = f"task {body['task']} dimensions {case['dimensions']}"
        for i, (got, want) in enumerate(zip(vectors(answer), case["embeddings"])):
            tally.compare("jina-v3 tasks and sizes", f"{what} text {i}", got, want)
    # The mixed batch: every row with its own task, sent at once so the scheduler batches them.
    mixed = expected["mixed_batch"]
    with concurrent.futures.ThreadPoolExecutor(len(mixed["rows"])) as pool:
        answers = list(pool.map(
            lambda row: embed(url, {"model": "jina", "input": row["text"], "task": row["task"]}),
            mixed["rows"],
        ))
    for i, ((status, answer), want) in enumerate(zip(answers, mixed["embeddings"])):
        if status != 200:
            tally.failures.append(f"jina mixed row {i}: HTTP {status}: {answer}")
            continue
        tally.compare("jina-v3 mixed batch", f"row {i} ({mixed['rows'][i]['task']})",
                      vectors(answer)[0], want)
    return skipped


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--min-cosine", type=float, default=0.999)
    parser.add_argument("--label", default="engine")
    args = parser.parse_args()
    tally = Tally(args.min_cosine)
    check_minilm(args.url, args.fixtures, tally)
    skipped = check_jina(args.url, args.fixtures, tally)
    for section, lowest in tally.lowest.items():
        print(f"{args.label}: {section}: lowest cosine {lowest:.6f}")
    if skipped:
        print(f"{args.label}: {skipped} base-weights cases skipped (no base mode in this graph)")
    for failure in tally.failures:
        print(f"{args.label}: FAIL {failure}")
    if tally.failures or not tally.lowest:
        sys.exit(1)
    print(f"{args.label}: PASS (every vector at cosine >= {args.min_cosine})")


if __name__ == "__main__":
    main()
