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
    ("supervisor_churn", "pair_us_alone", "supervisor_churn µs / start+stop, alone", False),
    ("supervisor_churn", "pair_us_beside", "supervisor_churn µs / start+stop, beside idle", False),
    ("supervisor_churn", "churn_ratio", "supervisor_churn beside ÷ alone", False),
    ("supervisor_churn", "shutdown_s", "supervisor_churn shutdown s", False),
    # timers: Girder's and Erlang's calls do all the work; the tokio-based peers leave some to
    # the runtime's workers (a timer task enters the wheel at its first poll, abort() leaves the
    # task to be dropped), so the "until" rows take their *_done_ns and Girder's and Erlang's
    # plain keys. The DelayQueue rows put tokio-util's DelayQueue (dq_* keys of the tokio line)
    # in the tokio column.
    ("timers", "arm_ns", "timers arm ns (the call)", False),
    ("timers", "arm_done_ns", "timers arm ns, until in the wheel", False, {"girder": "arm_ns", "erlang": "arm_ns"}),
    ("timers", "cancel_ns", "timers cancel ns (the call)", False),
    ("timers", "cancel_done_ns", "timers cancel ns, until freed", False, {"girder": "cancel_ns", "erlang": "cancel_ns"}),
    ("timers", "bytes_per_timer", "heap bytes / armed timer", False),
    ("timers", "dq_arm_ns", "timers arm ns, tokio = DelayQueue", False, {"girder": "arm_ns"}),
    ("timers", "dq_cancel_ns", "timers cancel ns, tokio = DelayQueue", False, {"girder": "cancel_ns"}),
    ("timers", "dq_bytes_per_timer", "heap bytes / timer, tokio = DelayQueue", False, {"girder": "bytes_per_timer"}),
    ("detect", "detect_s", "detect s (SIGKILL to down)", False),
]


def fmt(v, key):
    if key.endswith("_ns"):
        return f"{v:.1f}" if v < 100 else f"{v:,.0f}"
    if key.startswith("pair_us") or key == "churn_ratio":
        return f"{v:.2f}"
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
    for workload, key, label, higher_better, *alt in ROWS:
        # The key each system's value is read from (most rows: the same for all).
        key_of = {s: (alt[0] if alt else {}).get(s, key) for s in present}
        med = {
            s: statistics.median(values[(s, workload, key_of[s])])
            for s in present
            if values.get((s, workload, key_of[s]))
        }
        # A row of other keys stands in for no system's own: skip it (as a row of no values).
        if not med or (alt and not any(key_of[s] == key for s in med)):
            continue
        cells = [fmt(med[s], key) if s in med else "-" for s in present]
        peers = [v for s, v in med.items() if s != "girder"]
        ratio = "-"
        if "girder" in med and peers:
            best = max(peers) if higher_better else min(peers)
            den = best if higher_better else med["girder"]
            if den:  # a value printed as 0 at a small scale has no ratio
                r = med["girder"] / best if higher_better else best / med["girder"]
                ratio = f"{r:.2f}×"
        print(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    n = max((len(v) for v in values.values()), default=0)
    print(f"\nMedians of {n} runs. Ratio > 1 means Girder is better (faster, or less memory / latency).")
    if any(w == "timers" for (_, w, _) in values):
        print(
            "timers: ns and bytes per timer. Girder's and Erlang's calls arm and cancel outright; the"
            " tokio-based peers' leave work to the runtime (\"until\" rows). actix has no cancel rows:"
            " cancel_future defers the removal, which costs O(n²) (see bench/peers/README.md)."
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/dev/stdin")
