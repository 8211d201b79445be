#!/usr/bin/env python3
"""Medians and ratios from bench/peers/run.sh output, as a markdown table.

    python3 bench/peers/summarize.py results.jsonl
"""
import json
import statistics
import sys
from collections import defaultdict

SYSTEMS = ["girder", "tokio", "actix", "ractor", "kameo", "erlang"]
ROWS = [
    ("spawn", "spawn_ns_per_proc", "spawn ns / proc", False),
    ("spawn", "mem_bytes_per_proc", "heap bytes / idle proc", False),
    ("ring", "hops_per_s", "ring hops/s", True),
    ("pingpong", "round_trips_per_s", "pingpong round trips/s", True),
    ("call_c1", "calls_per_s", "call_c1 calls/s", True),
    ("call_c1", "p99_us", "call_c1 p99 µs", False),
    ("call_c100", "calls_per_s", "call_c100 calls/s", True),
    ("call_c100", "p99_us", "call_c100 p99 µs", False),
    ("fanin", "msgs_per_s", "fanin msgs/s", True),
    ("detect", "detect_s", "detect s (SIGKILL to down)", False),
]


def fmt(v, key):
    if key.endswith("_per_s"):
        return f"{v / 1e6:.2f} M"
    if key.endswith("_us"):
        return f"{v:.1f}"
    if key.endswith("_s"):
        return f"{v:.2f}"
    return f"{v:,.0f}"


def main(path):
    values = defaultdict(list)
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        for k, v in rec.items():
            if isinstance(v, (int, float)) and k != "run":
                values[(rec["system"], rec["workload"], k)].append(v)
    present = [s for s in SYSTEMS if any(key[0] == s for key in values)]
    print("| workload | " + " | ".join(present) + " | girder ÷ best peer |")
    print("|---|" + "---|" * (len(present) + 1))
    for workload, key, label, higher_better in ROWS:
        med = {s: statistics.median(values[(s, workload, key)]) for s in present if values.get((s, workload, key))}
        if not med:
            continue
        cells = [fmt(med[s], key) if s in med else "-" for s in present]
        peers = [v for s, v in med.items() if s != "girder"]
        ratio = "-"
        if "girder" in med and peers:
            best = max(peers) if higher_better else min(peers)
            r = med["girder"] / best if higher_better else best / med["girder"]
            ratio = f"{r:.2f}×"
        print(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    n = max((len(v) for v in values.values()), default=0)
    print(f"\nMedians of {n} runs. Ratio > 1 means Girder is better (faster, or less memory / latency).")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/dev/stdin")
