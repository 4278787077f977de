"""Resident memory of an embedding server over rounds of the same varied traffic.

Sends ROUNDS rounds of the same 86 requests from CLIENTS threads (default 1: one after the other):
each request holds 1 to 7 texts of 1 to 256 words (a fixed random draw), so the engine sees many
batch and sequence shapes: every round the same ones with one client, new combinations of them
each round with several (the scheduler batches what arrives together). Prints the server's
resident memory (from /proc/PID/status) once ready and after each round, read after a rest of
SETTLE_SECONDS (what an allocator hands back within a second or two is not counted as kept),
and writes them as JSON. An engine that keeps something per request grows
every round; one that caches per shape grows in the first round and then stays flat.

Usage: python3 benches/memory_rounds.py URL PID ROUNDS [CLIENTS [OUT.json]]
"""

import json
import random
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

REQUESTS = 86
# embedrt's jemalloc hands freed pages back after a second.
SETTLE_SECONDS = 2.0
WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing "
    "matches near the old river bank under grey autumn skies"
).split()


def traffic(seed=7):
    """The requests of one round: lists of 1-7 texts of 1-256 words, the same every call."""
    draw = random.Random(seed)
    return [
        [
            " ".join(draw.choice(WORDS) for _ in range(draw.randint(1, 256)))
            for _ in range(draw.randint(1, 7))
        ]
        for _ in range(REQUESTS)
    ]


def rss_mb(pid):
    """The process's resident memory now, in MB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmRSS")


def post(url, texts):
    """Posts one embeddings request and checks a vector came back for each text."""
    body = json.dumps({"input": texts}).encode()
    request = urllib.request.Request(
        f"{url}/v1/embeddings", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        assert len(json.load(response)["data"]) == len(texts)


def main():
    url, pid, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    clients = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    requests = traffic()
    memory = [rss_mb(pid)]
    print(f"ready: {memory[0]:.0f} MB", flush=True)
    with ThreadPoolExecutor(clients) as pool:
        for round_ in range(1, rounds + 1):
            # list() re-raises a failed request's error.
            list(pool.map(lambda texts: post(url, texts), requests))
            time.sleep(SETTLE_SECONDS)
            memory.append(rss_mb(pid))
            print(f"after round {round_}: {memory[-1]:.0f} MB", flush=True)
    if len(sys.argv) > 5:
        with open(sys.argv[5], "w") as out:
            json.dump({"rss_mb": memory, "clients": clients}, out)


if __name__ == "__main__":
    main()
