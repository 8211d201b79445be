#!/usr/bin/env bash
# A/B of two `girder` builds on this machine: the same workloads, alternating builds round by
# round, so both see the same noise. Prints one JSON line per build, workload and round, tagged
# with "build": "a" or "b" and "round"; summarize with bench/ab_summary.py.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [WORKLOAD ...] > ab.jsonl
set -euo pipefail
a="$1"; b="$2"; rounds="${3:-5}"; shift 3 || shift $#
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(spawn ring pingpong call_c1 call_c100 fanin)
for r in $(seq 1 "$rounds"); do
  for w in "${workloads[@]}"; do
    for build in a b; do
      bin="$a"; [ "$build" = b ] && bin="$b"
      "$bin" bench --json -w "$w" | sed "s/}\$/,\"build\":\"$build\",\"round\":$r}/"
    done
  done
done
