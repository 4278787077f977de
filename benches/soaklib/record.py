"""What a soak saw: outcomes and latencies per 10 s, retries and failures, memory samples and
the faults' events; its per-minute summary and its chart."""

import threading
import time
from dataclasses import dataclass, field

BUCKET_SECONDS = 10


@dataclass
class Record:
    """What happened, shared by the client threads."""
    started: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict = field(default_factory=dict)  # bucket -> [seconds]
    by_kind: dict = field(default_factory=dict)  # "protocol model" -> [seconds]
    counts: dict = field(default_factory=dict)  # (bucket, outcome) -> n
    failures: list = field(default_factory=list)
    retries: list = field(default_factory=list)
    memory: list = field(default_factory=list)  # (t, [mb per replica])
    events: list = field(default_factory=list)  # (t, text)

    def bucket(self, at):
        return int((at - self.started) // BUCKET_SECONDS)

    def add(self, outcome, at, latency=None, why=None, call=None):
        with self.lock:
            key = (self.bucket(at), outcome)
            self.counts[key] = self.counts.get(key, 0) + 1
            if latency is not None:
                self.latencies.setdefault(self.bucket(at), []).append(latency)
                kind = f"{call.protocol} {call.body['model']}"
                self.by_kind.setdefault(kind, []).append(latency)
            kept = self.retries if outcome == "retried" else self.failures
            if why and len(kept) < 200:
                kept.append({"t": round(at - self.started, 1), "why": why,
                                      "protocol": call.protocol, "style": call.style,
                                      "body": str(call.body)[:300]})

    def event(self, label, text):
        """Notes a fault (`label`: a word or two for the chart) and what came of it."""
        with self.lock:
            self.events.append((round(time.monotonic() - self.started, 1), label, text))
        print(f"[soak] {self.events[-1][0]:7.1f} s  {label}: {text}", flush=True)


def percentile(values, share):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(len(values) * share + 0.999999) - 1))]


def summarize(record, seconds):
    minutes = []
    per_minute = 60 // BUCKET_SECONDS
    for minute in range(int((seconds + 59) // 60)):
        buckets = range(minute * per_minute, (minute + 1) * per_minute)
        latencies = [v for b in buckets for v in record.latencies.get(b, [])]
        count = lambda outcome: sum(record.counts.get((b, outcome), 0) for b in buckets)  # noqa: E731
        memory = [sum(m for m in mb if m) for t, mb in record.memory if minute * 60 <= t < (minute + 1) * 60]
        minutes.append({
            "minute": minute + 1,
            "valid_ok": count("ok"),
            "valid_failed": count("failed"),
            "invalid_refused": count("invalid_refused"),
            "invalid_wrong": count("invalid_wrong"),
            "vanished": count("vanished"),
            "retried": count("retried"),
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
            "rss_mb_max": round(max(memory), 1) if memory else None,
        })
    return minutes


def draw(record, seconds, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = sorted(record.latencies)
    times = [(b + 0.5) * BUCKET_SECONDS / 60 for b in buckets]
    p50 = [percentile(record.latencies[b], 0.5) * 1000 for b in buckets]
    p99 = [percentile(record.latencies[b], 0.99) * 1000 for b in buckets]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    top.plot(times, p50, label="p50")
    top.plot(times, p99, label="p99")
    top.set_ylabel(f"latency, ms (per {BUCKET_SECONDS} s)")
    top.set_yscale("log")
    top.legend(loc="upper left")
    for index in range(2):
        points = [(t / 60, mb[index]) for t, mb in record.memory if mb[index] is not None]
        bottom.plot([p[0] for p in points], [p[1] for p in points], ".", markersize=2,
                    label=f"replica {index}")
    bottom.set_ylabel("resident memory, MB")
    bottom.set_xlabel("minutes")
    bottom.legend(loc="upper left")
    for at, label, _ in record.events:
        for axis in (top, bottom):
            axis.axvline(at / 60, color="grey", linewidth=0.6, linestyle=":")
        top.annotate(label, (at / 60, top.get_ylim()[1]), rotation=90, fontsize=7, va="top",
                     ha="right", color="dimgrey")
    failed = sum(n for (b, o), n in record.counts.items() if o == "failed")
    top.set_title(f"embedrt soak: {seconds / 60:.0f} min, failed valid requests: {failed}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
