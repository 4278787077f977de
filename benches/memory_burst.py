"""Resident memory of an embedding server around one burst (benches/memory.sh runs it).

Against a running server (URL, and its PID to read /proc): its memory once ready (idle), after
steady traffic of short requests (steady: 400 requests of 10 sentences from 8 clients, then 10 s
of rest), its peak during one request of 2,048 inputs of ~128 tokens, and its memory every
quarter second for 30 s after that request was answered. Writes a JSON summary.

Usage: python3 benches/memory_burst.py URL PID LABEL OUT.json
"""

import json
import sys
import threading
import time
import urllib.request
from pathlib import Path

SENTENCES = (Path(__file__).parent / "data" / "sentences.txt").read_text().splitlines()
# About 128 tokens for all-MiniLM-L6-v2's tokenizer; 2,048 of them stay under the default
# per-request token total (300,000).
LONG_TEXT = "the quick brown fox jumps over the lazy dog " * 14
BURST_INPUTS = 2048
AFTER_SECONDS = 30.0
SAMPLE_EVERY = 0.25


def status_mb(pid, field):
    """A `VmRSS:` (now) or `VmHWM:` (peak) line of /proc/PID/status, in MB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def post(url, inputs, timeout=300):
    """Posts an embeddings request of `inputs`; returns how many vectors came back."""
    body = json.dumps({"input": inputs}).encode()
    request = urllib.request.Request(
        f"{url}/v1/embeddings", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return len(json.load(response)["data"])


def steady_traffic(url, clients=8, requests=400):
    """Sends `requests` requests of 10 sentences from `clients` threads."""
    def client(first):
        for i in range(first, requests, clients):
            start = (i * 10) % (len(SENTENCES) - 10)
            assert post(url, SENTENCES[start : start + 10]) == 10

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main():
    url, pid, label, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    idle = status_mb(pid, "VmRSS:")
    steady_traffic(url)
    time.sleep(10)
    steady = status_mb(pid, "VmRSS:")
    started = time.monotonic()
    assert post(url, [LONG_TEXT] * BURST_INPUTS) == BURST_INPUTS
    burst_seconds = time.monotonic() - started
    peak = status_mb(pid, "VmHWM:")
    samples = []
    answered = time.monotonic()
    while (elapsed := time.monotonic() - answered) < AFTER_SECONDS:
        samples.append((round(elapsed, 2), round(status_mb(pid, "VmRSS:"), 1)))
        time.sleep(SAMPLE_EVERY)
    bound = steady * 1.25
    back = next((t for t, mb in samples if mb <= bound), None)

    def at(seconds):
        return next(mb for t, mb in samples if t >= seconds - SAMPLE_EVERY / 2)

    summary = {
        "label": label,
        "idle_rss_mb": round(idle, 1),
        "steady_rss_mb": round(steady, 1),
        "peak_rss_mb": round(peak, 1),
        "burst_seconds": round(burst_seconds, 2),
        "rss_after_1s_mb": at(1),
        "rss_after_10s_mb": at(10),
        "rss_after_30s_mb": at(AFTER_SECONDS - SAMPLE_EVERY),
        "seconds_to_within_25pct": back,
        "samples": samples,
    }
    Path(out).write_text(json.dumps(summary, indent=2))
    print(
        f"{label}: idle {idle:.0f} MB, steady {steady:.0f}, peak {peak:.0f}, "
        f"after 1 s {at(1):.0f}, 10 s {at(10):.0f}, 30 s {summary['rss_after_30s_mb']:.0f}; "
        f"within 25% of steady after {back} s; burst took {burst_seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
