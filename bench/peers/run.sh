#!/usr/bin/env bash
# Runs the girder bench workloads on every system, in one go, on this machine:
#   girder, raw tokio, actix, ractor, kameo, Erlang/OTP (supervisor_churn: girder and Erlang).
# Prints one JSON line per system, workload and run (with "run": N) on stdout.
#
#   bench/peers/run.sh [--scale F] [--runs N] [--girder CMD] > results.jsonl
#   python3 bench/peers/summarize.py results.jsonl      # medians and ratios, as markdown
#
# --girder CMD replaces the girder command (default: the workspace's release `girder bench`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
scale=1
runs=3
girder=""
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --girder) girder="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

echo "building girder and the Rust peers (release)..." >&2
(cd "$root" && cargo build --release -q -p girder-cli)
(cd "$here/rust" && cargo build --release -q)
[ -n "$girder" ] || girder="$root/target/release/girder bench --json"
peers="$here/rust/target/release/girder-peers"

beam=""
if command -v erlc >/dev/null 2>&1 && command -v erl >/dev/null 2>&1; then
  beam="$(mktemp -d)"
  erlc -o "$beam" "$here/erlang/girder_peer_bench.erl"
else
  echo "erl/erlc not found (apt-get install erlang-nox): skipping the Erlang column" >&2
fi

tag() { sed "s/}\$/,\"run\":$1}/"; }

for run in $(seq 1 "$runs"); do
  echo "run $run of $runs" >&2
  for w in spawn ring pingpong call_c1 call_c100 fanin supervisor_churn timers; do
    $girder --scale "$scale" -w "$w" | tag "$run"
    # The Rust peers have no supervisor: supervisor_churn is Girder and Erlang only.
    case "$w" in
      supervisor_churn) rust_peers="" ;;
      *) rust_peers="tokio actix ractor kameo" ;;
    esac
    for s in $rust_peers; do
      "$peers" --system "$s" --workload "$w" --scale "$scale" | tag "$run"
    done
    if [ -n "$beam" ]; then
      erl -noshell +P 2000000 -pa "$beam" -run girder_peer_bench main "$scale" "$w" | tag "$run"
    fi
  done
done
