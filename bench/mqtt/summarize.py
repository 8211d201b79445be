#!/usr/bin/env python3
"""Medians and ratios from `girder-mqtt bench --json` lines, as markdown tables.

    python3 bench/mqtt/summarize.py bench/mqtt/results/FILE.jsonl

Every ratio is girder's against the peer, oriented so that > 1 means Girder is better
(more msgs/s or connects/s; less latency or memory).
"""
import json
import statistics
import sys
from collections import defaultdict

SYSTEMS = ["girder", "mosquitto", "rumqttd"]
PEERS = ["mosquitto", "rumqttd"]
FLOWS = [(w, q) for w in ["fan_in", "fan_out", "p2p"] for q in [0, 1]]


def load(paths):
    runs = defaultdict(list)
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    r = json.loads(line)
                    runs[(r["system"], r["workload"], r["qos"], r["mode"])].append(r)
    return runs


def med(runs, key, field):
    vals = [r[field] for r in runs.get(key, []) if r.get(field) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=0):
    if v is None:
        return "–"
    if digits == 0 and abs(v) >= 1e6:
        return f"{v / 1e6:.2f} M"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(g, p, higher_better):
    if g is None or p is None or g == 0 or p == 0:
        return "–"
    return f"{(g / p) if higher_better else (p / g):.2f}×"


def main(paths):
    runs = load(paths)
    n = max((len(v) for v in runs.values()), default=0)
    print(f"Medians of {n} runs. Ratio > 1 means Girder is better.\n")

    print("### Full rate: delivered msgs/s (delivered % of what was published)\n")
    print("| workload | QoS | girder | mosquitto | rumqttd | ÷ mosquitto | ÷ rumqttd |")
    print("|---|---|---|---|---|---|---|")
    for w, q in FLOWS:
        cells, vals = [], {}
        for s in SYSTEMS:
            k = (s, w, q, "max")
            vals[s] = med(runs, k, "msgs_per_s")
            pct = med(runs, k, "delivered_pct")
            cells.append(f"{fmt(vals[s])} ({fmt(pct, 0)}%)" if vals[s] else "–")
        rs = [ratio(vals["girder"], vals[p], True) for p in PEERS]
        print(f"| {w} | {q} | " + " | ".join(cells + rs) + " |")

    print("\n### Full rate: end-to-end latency p50 / p99, ms\n")
    print("| workload | QoS | girder | mosquitto | rumqttd |")
    print("|---|---|---|---|---|")
    for w, q in FLOWS:
        cells = []
        for s in SYSTEMS:
            k = (s, w, q, "max")
            p50, p99 = med(runs, k, "p50_us"), med(runs, k, "p99_us")
            cells.append("–" if p50 is None else f"{p50 / 1000:,.1f} / {p99 / 1000:,.1f}")
        print(f"| {w} | {q} | " + " | ".join(cells) + " |")

    print("\n### Paced below saturation: p99 (p50) end-to-end latency, µs\n")
    print("| workload | QoS | deliveries/s | girder | mosquitto | rumqttd | ÷ mosquitto | ÷ rumqttd |")
    print("|---|---|---|---|---|---|---|---|")
    for w, q in FLOWS:
        cells, vals = [], {}
        target = med(runs, ("girder", w, q, "paced"), "target_msgs_per_s")
        for s in SYSTEMS:
            k = (s, w, q, "paced")
            vals[s] = med(runs, k, "p99_us")
            p50 = med(runs, k, "p50_us")
            cells.append("–" if vals[s] is None else f"{fmt(vals[s])} ({fmt(p50)})")
        rs = [ratio(vals["girder"], vals[p], False) for p in PEERS]
        print(f"| {w} | {q} | {fmt(target)} | " + " | ".join(cells + rs) + " |")

    print("\n### Peak broker memory (VmHWM) in the full-rate runs, MB\n")
    print("| workload | QoS | girder | mosquitto | rumqttd | ÷ mosquitto | ÷ rumqttd |")
    print("|---|---|---|---|---|---|---|")
    for w, q in FLOWS:
        vals = {s: med(runs, (s, w, q, "max"), "rss_mb") for s in SYSTEMS}
        cells = [fmt(vals[s], 1) for s in SYSTEMS]
        rs = [ratio(vals["girder"], vals[p], False) for p in PEERS]
        print(f"| {w} | {q} | " + " | ".join(cells + rs) + " |")

    print("\n### Idle connections\n")
    conns = med(runs, ("girder", "idle", None, "idle"), "conns")
    print(f"| {fmt(conns)} connections | girder | mosquitto | rumqttd | ÷ mosquitto | ÷ rumqttd |")
    print("|---|---|---|---|---|---|")
    for field, label, hb, d in [
        ("connects_per_s", "connects/s", True, 0),
        ("reconnects_per_s", "connects/s, again (a reconnect storm)", True, 0),
        ("kb_per_conn", "broker kB / connection", False, 1),
        ("rss_mb", "broker peak MB", False, 1),
    ]:
        vals = {s: med(runs, (s, "idle", None, "idle"), field) for s in SYSTEMS}
        cells = [fmt(vals[s], d) for s in SYSTEMS]
        rs = [ratio(vals["girder"], vals[p], hb) for p in PEERS]
        print(f"| {label} | " + " | ".join(cells + rs) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
