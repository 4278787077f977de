#!/usr/bin/env python3
"""Prints Markdown tables of embedrt-bench's JSON summaries: the one table printer of benches/.

    benches/table.py [--no-header] [--ratio TAG=NUM/DEN] COLUMN... -- FILE...

Each COLUMN is KEY[:FORMAT][=TITLE]: KEY is a field of the summary (label, concurrency, batch,
requests_per_s, inputs_per_s, p50_ms, p95_ms, p99_ms, max_ms, errors, requests,
server_cpu_ms_per_input, ...) or one of its tags (`embedrt-bench --tag KEY=VALUE`); FORMAT is a
Python format spec (default: .1f for floats); TITLE is the header (default: KEY). A column `-` is
an empty cell. One row per file, in the order given.

With --ratio TAG=NUM/DEN (e.g. build=head/base), the files are paired by their other tags and their
load (concurrency, batch), and each pair is one row: columns of measured numbers are NUM's value
over DEN's (`1.23x`), the others NUM's own. Standard library only.
"""

import json
import sys
from pathlib import Path


def parse_column(spec):
    """(key, format, title) of a column spec."""
    if spec == "-":
        return "-", "", ""
    key, _, title = spec.partition("=")
    key, _, fmt = key.partition(":")
    return key, fmt, title or key


def value(summary, key):
    """The summary's field, else its tag, else an empty string."""
    if key in summary:
        return summary[key]
    return summary.get("tags", {}).get(key, "")


def cell(item, fmt):
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return str(item)
    if not fmt:
        fmt = "d" if isinstance(item, int) else ".1f"
    return format(item, fmt)


def rows(summaries, columns):
    for summary in summaries:
        yield [cell(value(summary, key), fmt) if key != "-" else "" for key, fmt, _ in columns]


# The fields that say what load a run put on the server (the same in both runs of a pair).
LOAD = ("concurrency", "batch")


def ratio_rows(summaries, columns, tag, numerator, denominator):
    groups = {}
    for summary in summaries:
        tags = dict(summary.get("tags", {}))
        which = tags.pop(tag, None)
        key = tuple(sorted(tags.items())) + tuple(summary.get(field) for field in LOAD)
        groups.setdefault(key, {})[which] = summary
    for pair in groups.values():
        if numerator not in pair or denominator not in pair:
            raise SystemExit(f"no {tag}={numerator} and {tag}={denominator} pair in {sorted(pair)}")
        num, den = pair[numerator], pair[denominator]
        row = []
        for key, fmt, _ in columns:
            a, b = value(num, key), value(den, key)
            if key == "-":
                row.append("")
            elif key in LOAD:
                row.append(cell(a, fmt))
            elif isinstance(a, (int, float)) and not isinstance(a, bool) and b:
                row.append(f"{a / b:.2f}x")
            else:
                row.append(cell(a, fmt))
        yield row


def main(argv):
    header, ratio = True, None
    while argv and argv[0].startswith("--") and argv[0] != "--":
        flag = argv.pop(0)
        if flag == "--no-header":
            header = False
        elif flag == "--ratio":
            tag, _, pair = argv.pop(0).partition("=")
            numerator, _, denominator = pair.partition("/")
            ratio = (tag, numerator, denominator)
        else:
            raise SystemExit(f"unknown option {flag}")
    if "--" not in argv:
        raise SystemExit(__doc__)
    split = argv.index("--")
    columns = [parse_column(spec) for spec in argv[:split]]
    summaries = [json.loads(Path(path).read_text()) for path in argv[split + 1:]]
    table = list(ratio_rows(summaries, columns, *ratio) if ratio else rows(summaries, columns))
    if header:
        # Numbers right-aligned, text left.
        def numeric(i):
            return all(row[i].rstrip("x").replace(".", "", 1).lstrip("-").isdigit()
                       for row in table if row[i])
        print("| " + " | ".join(title for _, _, title in columns) + " |")
        print("|" + "|".join("---:" if numeric(i) else "---" for i in range(len(columns))) + "|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
