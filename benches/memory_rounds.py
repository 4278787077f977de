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
from concurrent.futures import ThreadPoolExecutor

from memory_burst import post, status_mb

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


def main():
    url, pid, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    clients = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    requests = traffic()
    memory = [status_mb(pid, "VmRSS:")]
    print(f"ready: {memory[0]:.0f} MB", flush=True)
    with ThreadPoolExecutor(clients) as pool:
        for round_ in range(1, rounds + 1):
            # list() re-raises a failed request's error.
            counts = list(pool.map(lambda texts: post(url, texts, timeout=600), requests))
            assert counts == [len(texts) for texts in requests]
            time.sleep(SETTLE_SECONDS)
            memory.append(status_mb(pid, "VmRSS:"))
            print(f"after round {round_}: {memory[-1]:.0f} MB", flush=True)
    if len(sys.argv) > 5:
        with open(sys.argv[5], "w") as out:
            json.dump({"rss_mb": memory, "clients": clients}, out)


if __name__ == "__main__":
    main()
