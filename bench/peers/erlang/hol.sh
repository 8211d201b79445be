#!/usr/bin/env bash
# Erlang/OTP distribution on `girder bench -w hol`: head-of-line blocking across two nodes (two OS
# processes on loopback). Calls to B's echo gen_server alone, then beside 10 processes flooding a
# process on B that never receives. Prints one JSON line (keys as `girder bench -w hol --json`,
# plus Erlang-only ones: slow_mailbox_len, slow_memory_mb, beam_memory_mb, busy_dist_port_events…).
#   bench/peers/erlang/hol.sh [--scale F]   (20,000 calls per phase x F; flood capped at 20 s
#                                             and at 2 GB of memory on B)
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
  echo "erl/erlc not found (apt-get install erlang-nox): no Erlang hol numbers" >&2
  exit 0
fi

work="$(mktemp -d)"
srv_pid=""
cli_pid=""
# Kill one node: TERM, then KILL if it is still there after 0.5 s; reap it.
reap() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 5); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
# On any exit (error, Ctrl-C, timeout): both nodes are killed, the temp dir goes, and a failed
# run shows the server's log.
cleanup() {
  rc=$?
  trap - EXIT INT TERM
  reap "$cli_pid"
  reap "$srv_pid"
  if [ "$rc" -ne 0 ] && [ -s "$work/server.log" ]; then
    echo "server node log:" >&2
    cat "$work/server.log" >&2
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export ERL_CRASH_DUMP_SECONDS=0
erlc -o "$work" "$here/girder_hol_bench.erl"
tag="$$_$RANDOM"
cookie="girder_hol_bench_$tag"
server="hsrv_$tag@127.0.0.1"
# /usr/bin/erl execs the emulator, so $! is the beam process itself.
erl -noshell -name "$server" -setcookie "$cookie" -pa "$work" -s girder_hol_bench serve \
  >"$work/server.log" 2>&1 &
srv_pid=$!
erl -noshell -name "hcli_$tag@127.0.0.1" -setcookie "$cookie" -pa "$work" \
  -run girder_hol_bench main "$server" "$scale" &
cli_pid=$!
# Hard limit on the whole run: the flood is capped at 20 s and the loaded calls at 120 s after
# it, so 300 s means something is stuck.
# (Its sleep is killed with it, and holds no stdout: `$(hol.sh)` must not wait for it.)
( sleep 300 & s=$!; trap 'kill $s; exit 0' TERM; wait $s; kill "$cli_pid" ) >/dev/null 2>&1 &
watchdog=$!
rc=0
wait "$cli_pid" || rc=$?
kill "$watchdog" 2>/dev/null || true
wait "$watchdog" 2>/dev/null || true
cli_pid=""
for _ in $(seq 50); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
exit "$rc"
