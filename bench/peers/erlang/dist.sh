#!/usr/bin/env bash
# Erlang/OTP distribution on the remote workloads: a server node and a client node, two OS
# processes on loopback. Prints dist_send, dist_call_c1 and dist_call_c50 as JSON lines.
#   bench/peers/erlang/dist.sh [--scale F]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
scale=1
[ "${1:-}" = "--scale" ] && scale="$2"
if ! command -v erl >/dev/null 2>&1 || ! command -v erlc >/dev/null 2>&1; then
  echo "erl/erlc not found (apt-get install erlang-nox): no Erlang distribution numbers" >&2
  exit 0
fi
beam="$(mktemp -d)"
erlc -o "$beam" "$here/girder_dist_bench.erl"
tag="$$_$RANDOM"
cookie="girder_dist_bench_$tag"
server="srv_$tag@127.0.0.1"
erl -noshell -name "$server" -setcookie "$cookie" -pa "$beam" -s girder_dist_bench serve >/dev/null 2>&1 &
srv_pid=$!
cleanup() { kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; rm -rf "$beam"; }
trap cleanup EXIT
erl -noshell -name "cli_$tag@127.0.0.1" -setcookie "$cookie" -pa "$beam" \
  -run girder_dist_bench main "$server" "$scale"
