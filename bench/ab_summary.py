#!/usr/bin/env python3
"""Medians of an A/B run (bench/ab.sh): per workload and key, build a, build b, and b/a."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
vals = defaultdict(list)
for r in rows:
    for k, v in r.items():
        if isinstance(v, (int, float)) and k not in ("round",):
            vals[(r["workload"], k, r["build"])].append(v)
print("| workload | key | a (median) | b (median) | b/a |")
print("|---|---|---|---|---|")
for (w, k) in sorted({(w, k) for (w, k, _) in vals}):
    a, b = vals.get((w, k, "a")), vals.get((w, k, "b"))
    if not a or not b:
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    ratio = f"{mb / ma:.3f}" if ma else "-"
    print(f"| {w} | {k} | {ma:.4g} | {mb:.4g} | {ratio} |")
