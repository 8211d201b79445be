#!/usr/bin/env bash
# Usage: bench/peers/erlang/detect.sh kill|stop   (prints one JSON line; `stop` takes ~60 s)
# Erlang distribution failure detection: a watcher monitors a victim node; the victim gets
# SIGKILL (the kernel closes its sockets) or SIGSTOP (silent, as a frozen host or a cut cable).
set -euo pipefail
mode="${1:-kill}"
work=$(mktemp -d)
cd "$work"
host=$(hostname -s)
erl -sname victim -setcookie girderbench -noshell -eval 'timer:sleep(infinity)' &
victim=$!
sleep 4
erl -sname watcher -setcookie girderbench -noshell -eval "
  net_kernel:monitor_nodes(true),
  pong = net_adm:ping('victim@$host'),
  io:format(\"ready~n\"),
  receive {nodedown, _} -> io:format(\"down ~p~n\", [erlang:system_time(millisecond)]) end,
  halt()." > watcher.out &
watcher=$!
until grep -q ready watcher.out 2>/dev/null; do sleep 0.1; done
sleep 1
if [ "$mode" = stop ]; then kill -STOP $victim; else kill -KILL $victim; fi
t0=$(date +%s%3N)
wait $watcher
t1=$(grep down watcher.out | awk '{print $2}')
echo "{\"system\":\"erlang\",\"workload\":\"detect_$mode\",\"detect_s\":$(echo "scale=3; ($t1 - $t0)/1000" | bc)}"
kill -KILL $victim 2>/dev/null || true
