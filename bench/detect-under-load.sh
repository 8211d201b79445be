#!/usr/bin/env bash
# False positives of failure detection under load: three `girder node`s on loopback while
# `girder bench` keeps both cores busy for DURATION seconds (default 600). Prints how many
# bench runs were made and every "member down" seen; at the end the nodes are stopped with
# SIGTERM, so exactly the graceful leaves of the shutdown should appear (2), nothing earlier.
#
#   cargo build --release -p girder-cli && bench/detect-under-load.sh 600
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
B="$root/target/release/girder"
work=$(mktemp -d)
cd "$work"
printf 'false-positive-run-cookie\n' > cookie
"$B" node --name a@127.0.0.1 --listen 127.0.0.1:4470 --cookie-file cookie > a.log 2>&1 &
sleep 0.3
"$B" node --name b@127.0.0.1 --listen 127.0.0.1:4471 --seed 127.0.0.1:4470 --cookie-file cookie > b.log 2>&1 &
"$B" node --name c@127.0.0.1 --listen 127.0.0.1:4472 --seed 127.0.0.1:4470 --cookie-file cookie > c.log 2>&1 &
sleep 2
end=$(( $(date +%s) + ${1:-600} ))
runs=0
while [ "$(date +%s)" -lt "$end" ]; do
  "$B" bench --scale 0.5 -w ring -w call_c100 -w fanin -w pingpong > /dev/null 2>&1
  runs=$((runs+1))
done
pkill -TERM -f "girder node --name [abc]@127.0.0.1" || true
sleep 1
echo "load runs: $runs"
echo "member down lines (with times since each node started):"
grep -h "member down" a.log b.log c.log || true
