#!/usr/bin/env bash
# Usage: bench/peers/erlang/attack.sh [SECONDS]   (prints one JSON line)
# Erlang/OTP beside `girder bench -w attack`: two connected nodes, victim and peer. First
# silent connections are held (256, then 2,000) and the victim's resident memory per connection
# measured; then for SECONDS (20) eight attackers open handshakes claiming to be peer
# (answering the acceptor's "alive" with "true") and hang up at the challenge, while the
# victim pings peer every 10 ms and counts nodedown.
set -euo pipefail
seconds="${1:-20}"
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
cd "$work"
host=$(hostname -s)
ulimit -n 10000 || true
erl -sname peer -setcookie girderbench -noshell -eval 'timer:sleep(infinity)' &
peer=$!
until epmd -names 2>/dev/null | grep -q "name peer "; do sleep 0.1; done
erl -sname victim -setcookie girderbench -noshell -eval "
  net_kernel:monitor_nodes(true),
  Peer = 'peer@$host',
  pong = net_adm:ping(Peer),
  io:format(\"ready~n\"),
  Loop = fun L(Up, Since, Down, Downs) ->
    receive
      {nodedown, Peer} -> L(false, erlang:monotonic_time(millisecond), Down, Downs + 1);
      {nodeup, Peer} when not Up -> L(true, 0, Down + erlang:monotonic_time(millisecond) - Since, Downs);
      report -> io:format(\"report ~p ~p~n\", [Down, Downs]), L(Up, Since, Down, Downs);
      _ -> L(Up, Since, Down, Downs)
    after 10 -> net_adm:ping(Peer), L(Up, Since, Down, Downs)
    end end,
  register(watch, self()),
  Loop(true, 0, 0, 0)." > victim.out &
victim=$!
for _ in $(seq 300); do grep -q ready victim.out 2>/dev/null && break; sleep 0.1; done
grep -q ready victim.out || { echo "the victim did not start: $(cat victim.out)" >&2; exit 1; }
out=$(python3 "$here/attack.py" victim "peer@$host" "$victim" "$seconds")
erl -sname reporter -setcookie girderbench -noshell -eval "
  {watch, 'victim@$host'} ! report, timer:sleep(500), halt()."
sleep 0.5
read -r down_ms downs < <(grep report victim.out | tail -1 | awk '{print $2, $3}')
connected=$(echo "scale=2; 100 - $down_ms / ($seconds * 10)" | bc)
echo "$out" | sed "s/}$/, \"claim_flood_connected_pct\": $connected, \"claim_flood_nodedowns\": $downs}/"
kill -KILL $victim $peer 2>/dev/null || true
