#!/usr/bin/env bash
# Erlang/OTP distribution on the remote workloads: a server node and a client node, two OS
# processes on loopback. Prints dist_send, dist_call_c1 and dist_call_c50 as JSON lines.
#   bench/peers/erlang/dist.sh [--scale F]     (counts x F, at least 1; full scale ~20 s)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
scale=1
case "${1:-}" in
  "") ;;
  --scale) scale="${2:?usage: $0 [--scale F]}" ;;
  *) echo "usage: $0 [--scale F]" >&2; exit 2 ;;
esac
if ! [[ "$scale" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
  echo "usage: $0 [--scale F]   (F like 1, 0.01 or 2.5)" >&2
  exit 2
fi
if ! command -v erl >/dev/null 2>&1 || ! command -v erlc >/dev/null 2>&1; then
  echo "erl/erlc not found (apt-get install erlang-nox): no Erlang distribution numbers" >&2
  exit 0
fi

work="$(mktemp -d)"
srv_pid=""
# On any exit: reap the server node (killing it if the client never stopped it), drop the temp
# dir, and show the server's log if the run failed.
cleanup() {
  rc=$?
  if [ -n "$srv_pid" ] && kill -0 "$srv_pid" 2>/dev/null; then
    kill "$srv_pid" 2>/dev/null || true
    sleep 0.5
    kill -KILL "$srv_pid" 2>/dev/null || true
  fi
  [ -n "$srv_pid" ] && wait "$srv_pid" 2>/dev/null || true
  if [ "$rc" -ne 0 ] && [ -s "$work/server.log" ]; then
    echo "server node log:" >&2
    cat "$work/server.log" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A node that fails would otherwise write erl_crash.dump into the current directory.
export ERL_CRASH_DUMP_SECONDS=0
erlc -o "$work" "$here/girder_dist_bench.erl"
# Unique names and cookie per run: runs back to back (or a stale node) never meet.
tag="$$_$RANDOM"
cookie="girder_dist_bench_$tag"
server="srv_$tag@127.0.0.1"
# -name with 127.0.0.1 needs no DNS; erl starts epmd if it isn't running (epmd stays, as usual).
# /usr/bin/erl execs the emulator, so $! is the beam process itself.
erl -noshell -name "$server" -setcookie "$cookie" -pa "$work" -s girder_dist_bench serve \
  >"$work/server.log" 2>&1 &
srv_pid=$!
# The client waits for the server to come up, runs the workloads, then stops the server node.
erl -noshell -name "cli_$tag@127.0.0.1" -setcookie "$cookie" -pa "$work" \
  -run girder_dist_bench main "$server" "$scale"
# Give the server a moment to finish halting; cleanup kills it if it's still there.
for _ in $(seq 50); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
