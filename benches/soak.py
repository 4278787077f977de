"""A soak with faults: embedrt replicas behind nginx with a Redis cache, driven by many clients of
mixed traffic while faults are injected on a schedule (benches/soak.sh sets it up and runs it).

What runs: `redis-server`, two `embedrt serve` replicas sharing one config file (the tiny
jina-embeddings-v3 of the fixtures, all-MiniLM-L6-v2, and an `echo` model that panics on one token
id), and nginx in front of them (deploy/nginx/nginx.conf.template). Clients go through nginx.

Traffic, per client, back to back after a short random pause: HTTP (OpenAI's request) or gRPC
(`Embed`); texts or token ids; jina's tasks, Matryoshka sizes and binary encodings; 5% invalid
requests (which must get a 4xx error in the API's format, never a 5xx); some clients upload slowly,
some give up after a few milliseconds (their requests count neither way).

Faults, at fixed shares of the run: the config file rewritten and reloaded on both replicas every
tenth of the run (minilm's batch size changed each time, so that it loads again; once jina moved
from onnx to candle: the engine swap), a poison input that panics the echo backend (its request
must fail alone, with a 500), one replica SIGKILLed and started again (out of nginx's list until
`/ready` answers, as a readiness probe does), Redis SIGKILLed and started again.

Clients retry, at most twice, what a client's own retry policy would: gRPC UNAVAILABLE, a gRPC
stream the proxy reset when its replica died under the call, and a kept-alive HTTP connection
closed under them; each retry is counted and reported. A valid request
that still fails after that is a failure.

Writes soak.json (per-minute failed valid requests, p50/p99 and resident memory, the events),
soak.png (latency and memory over time) and prints a Markdown table. Exits 1 when a valid request
failed, an invalid one got anything but a 4xx, or a fault could not be carried out.

Usage: python benches/soak.py --embedrt BIN --out DIR [--seconds 600] [--clients 60]
(the plugins are found beside BIN, the echo plugin among them)
"""

import argparse
import json
import threading
import time
from pathlib import Path

import grpc

from soaklib.cluster import SPAWNER, Cluster
from soaklib.record import Record, percentile, summarize, draw
from soaklib.traffic import client


def schedule(seconds):
    """(time, fault) pairs: a reload every tenth of the run, the engine swap at the middle,
    the other faults in between."""
    tenth = seconds / 10
    plan = [(tenth * i, "reload") for i in range(1, 10) if i != 5]
    plan += [(tenth * 5, "swap"), (tenth * 2.5, "poison"), (tenth * 3.5, "kill replica"),
             (tenth * 6.5, "kill redis"), (tenth * 7, "restart redis")]
    return sorted(plan)


def run_faults(cluster, record, stop, seconds):
    """Injects the faults of `schedule` at their times; a fault that cannot be carried out (a
    replica that does not come back) is recorded as "fault failed" and ends the schedule."""
    faults = {
        "reload": ("reload", cluster.reload_models),
        "swap": ("engine swap", lambda: cluster.reload_models(swap_engine=True)),
        "poison": ("backend panic", cluster.poison),
        "kill replica": ("replica SIGKILL", lambda: cluster.kill_replica(1)),
        "kill redis": ("Redis SIGKILL", cluster.kill_redis),
        "restart redis": ("Redis back", cluster.restart_redis),
    }
    for at, fault in schedule(seconds):
        while time.monotonic() - record.started < at:
            if stop.wait(0.2):
                return
        label, inject = faults[fault]
        try:
            record.event(label, inject())
        except Exception as error:  # noqa: BLE001 - reported, and the run fails
            record.event("fault failed", f"{label}: {error}")
            return


def sample_memory(cluster, record, stop):
    while not stop.wait(2):
        record.memory.append((round(time.monotonic() - record.started, 1), cluster.resident_mb()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedrt", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("--slow-clients", type=int, default=3)
    parser.add_argument("--think-ms", type=float, default=20)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cluster = Cluster(args)
    try:
        cluster.start()
        record = Record(started=time.monotonic())
        record.event("start", f"{args.clients} clients through nginx on 127.0.0.1:{cluster.nginx_http}")
        stop = threading.Event()
        channel = grpc.insecure_channel(f"127.0.0.1:{cluster.nginx_grpc}")
        threads = [threading.Thread(target=client, args=(i, args, cluster, record, channel, stop))
                   for i in range(args.clients)]
        threads.append(threading.Thread(target=sample_memory, args=(cluster, record, stop)))
        faults = threading.Thread(target=run_faults, args=(cluster, record, stop, args.seconds))
        for thread in threads + [faults]:
            thread.start()
        SPAWNER.serve(args.seconds)
        stop.set()
        while faults.is_alive():  # a fault under way may still start a process
            SPAWNER.serve(0.2)
        for thread in threads + [faults]:
            thread.join()
        record.event("end", f"{args.seconds:.0f} s")
    finally:
        cluster.stop()

    minutes = summarize(record, args.seconds)
    failed = sum(m["valid_failed"] for m in minutes)
    wrong = sum(m["invalid_wrong"] for m in minutes)
    kinds = {kind: {"requests": len(values),
                    "p50_ms": round(percentile(values, 0.5) * 1000, 1),
                    "p99_ms": round(percentile(values, 0.99) * 1000, 1)}
             for kind, values in sorted(record.by_kind.items())}
    (out / "soak.json").write_text(json.dumps({
        "seconds": args.seconds, "clients": args.clients, "minutes": minutes, "kinds": kinds,
        "events": record.events, "failures": record.failures, "retries": record.retries,
        "memory": record.memory,
    }, indent=1))
    draw(record, args.seconds, out / "soak.png")
    print("| minute | valid ok | valid failed | invalid refused (4xx) | invalid answered otherwise "
          "| vanished | retried | p50 ms | p99 ms | RSS of both replicas, max MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in minutes:
        print(f"| {m['minute']} | {m['valid_ok']} | {m['valid_failed']} | {m['invalid_refused']} "
              f"| {m['invalid_wrong']} | {m['vanished']} | {m['retried']} | {m['p50_ms']} "
              f"| {m['p99_ms']} | {m['rss_mb_max']} |")
    print("\n| protocol, model | valid requests answered | p50 ms | p99 ms |\n|---|---|---|---|")
    for kind, numbers in kinds.items():
        print(f"| {kind} | {numbers['requests']} | {numbers['p50_ms']} | {numbers['p99_ms']} |")
    print(f"\nfailed valid requests: {failed}; invalid requests answered other than 4xx: {wrong}")
    for failure in record.failures[:20]:
        print(f"  {failure}")
    broken = [text for _, label, text in record.events if label == "fault failed"]
    for text in broken:
        print(f"fault failed: {text}")
    return 1 if failed or wrong or broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
