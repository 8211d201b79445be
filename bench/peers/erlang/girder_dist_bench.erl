%% The `girder bench` remote workloads on Erlang/OTP distribution: two nodes, two OS processes,
%% loopback. `dist.sh` starts the server node (serve/0) and runs the client (main/1).
%% Prints one JSON line per workload with the same names and keys as `girder bench --json`:
%%   dist_send      msgs_per_s                   1 sender -> 1 registered remote process
%%   dist_call_c1   calls_per_s, p50_us, p99_us  1 caller x 100,000 remote gen_server calls
%%   dist_call_c50  calls_per_s, p50_us, p99_us  50 callers x 4,000 calls each
-module(girder_dist_bench).
-behaviour(gen_server).

-export([serve/0, main/1]).
-export([init/1, handle_call/3, handle_cast/2]).

%% ---- server node ----

%% A registered sink that counts messages, and an echo gen_server. Started by `erl -s`, so this
%% returns at once; the node stays up (-noshell) until the client stops it.
serve() ->
    register(sink, spawn(fun() -> sink(undefined, 0, 0) end)),
    %% Registered last: the client takes `echo` being there to mean both are ready.
    {ok, _} = gen_server:start({local, echo}, ?MODULE, [], []),
    ok.

%% The sink is told how many to expect and whom to tell, then counts. `expect` and the data come
%% from the same client process, and Erlang keeps per-pair order, so no data can overtake it.
sink(Notify, Expect, Seen) when Seen =:= Expect, Notify =/= undefined ->
    Notify ! {done, Seen},
    sink(undefined, 0, 0);
sink(Notify, Expect, Seen) ->
    receive
        {expect, N, Who} -> sink(Who, N, 0);
        {data, _} -> sink(Notify, Expect, Seen + 1)
    end.

init([]) -> {ok, nostate}.
handle_call(X, _From, S) -> {reply, X, S}.
handle_cast(_, S) -> {noreply, S}.

%% ---- client node ----

main([ServerStr, ScaleStr]) ->
    Server = list_to_atom(ServerStr),
    Scale = to_float(ScaleStr),
    %% The server node is started just before us and may not be listening yet.
    pong = wait_for(Server, 50),
    ok = wait_registered(Server, 100),
    %% A dead server then fails the run with an error instead of hanging it.
    true = erlang:monitor_node(Server, true),
    dist_send(Server, scaled(1000000, Scale)),
    timer:sleep(200),
    calls(Server, dist_call_c1, 1, scaled(100000, Scale)),
    timer:sleep(200),
    calls(Server, dist_call_c50, 50, scaled(4000, Scale)),
    stop_server(Server),
    halt(0).

wait_for(_, 0) -> pang;
wait_for(Node, N) ->
    case net_adm:ping(Node) of
        pong -> pong;
        pang -> timer:sleep(100), wait_for(Node, N - 1)
    end.

wait_registered(_, 0) -> not_registered;
wait_registered(Node, N) ->
    case rpc:call(Node, erlang, whereis, [echo]) of
        Pid when is_pid(Pid) -> ok;
        _ -> timer:sleep(100), wait_registered(Node, N - 1)
    end.

%% Stops the server node cleanly and waits for its connection to close, so dist.sh only has to
%% reap it (halting straight after the request could lose it in the outgoing buffer).
stop_server(Server) ->
    spawn(Server, init, stop, []),
    receive {nodedown, Server} -> ok after 5000 -> ok end.

to_float(S) ->
    case string:to_float(S) of
        {F, []} -> F;
        _ -> float(list_to_integer(S))
    end.

scaled(N, Scale) -> max(1, round(N * Scale)).

%% 1% of a count, for warm-ups: enough to get the connection, schedulers and heaps past their
%% first-use costs, too little to matter for the run time.
warmup(N) -> max(1, N div 100).

now_ns() -> erlang:monotonic_time(nanosecond).

per_s(Count, Ns) -> round(Count / (Ns / 1.0e9)).

emit(Workload, Pairs) ->
    Fields = [io_lib:format(",\"~s\":~s", [K, num(V)]) || {K, V} <- Pairs],
    io:format("{\"system\":\"erlang\",\"workload\":\"~s\"~s}~n", [Workload, Fields]).

num(V) when is_integer(V) -> integer_to_list(V);
num(V) -> float_to_list(V, [{decimals, 2}]).

%% ---- dist_send ----

%% One process sends N small messages to the remote sink; timed from before the first send until
%% the sink says it has them all (so messages still queued in the sender's buffers count).
dist_send(Server, N) ->
    Sink = {sink, Server},
    _ = send_batch(Server, Sink, warmup(N)),
    Ns = send_batch(Server, Sink, N),
    emit(dist_send, [{msgs_per_s, per_s(N, Ns)}]).

send_batch(Server, Sink, N) ->
    Sink ! {expect, N, self()},
    T0 = now_ns(),
    send_loop(Sink, N),
    receive
        {done, N} -> now_ns() - T0;
        {nodedown, Server} -> exit(server_down)
    end.

send_loop(_, 0) -> ok;
send_loop(Sink, N) ->
    Sink ! {data, N},
    send_loop(Sink, N - 1).

%% ---- dist_call_cN ----

%% Callers processes each make PerCaller gen_server:call's to the remote echo. Throughput is all
%% calls over the wall time from the common start to the last caller finishing.
calls(Server, Name, Callers, PerCaller) ->
    Echo = {echo, Server},
    %% Warm-up in the same shape (same concurrency), untimed and discarded.
    _ = run_callers(Echo, Callers, warmup(PerCaller)),
    {Ns, Lat} = run_callers(Echo, Callers, PerCaller),
    Sorted = lists:sort(Lat),
    emit(Name, [{calls_per_s, per_s(Callers * PerCaller, Ns)},
                {p50_us, pct(Sorted, 50) / 1000.0},
                {p99_us, pct(Sorted, 99) / 1000.0}]).

%% Returns {wall ns, every call's latency in ns}. Callers are spawned first and released together,
%% so spawning 50 processes is not in the time and the first ones don't run ahead alone.
%% Linked: a failed call (e.g. a 5 s gen_server timeout) fails the run.
run_callers(Echo, Callers, PerCaller) ->
    Parent = self(),
    Pids = [spawn_link(fun() -> caller(Parent, Echo, PerCaller) end)
            || _ <- lists:seq(1, Callers)],
    [receive {ready, P} -> ok end || P <- Pids],
    T0 = now_ns(),
    [P ! go || P <- Pids],
    [receive {finished, P} -> ok end || P <- Pids],
    T1 = now_ns(),
    %% Collected after the clock stops: copying the latency lists is not the workload.
    Lat = lists:append([receive {latencies, P, L} -> L end || P <- Pids]),
    {T1 - T0, Lat}.

caller(Parent, Echo, N) ->
    Parent ! {ready, self()},
    receive go -> ok end,
    L = caller_loop(Echo, N, []),
    Parent ! {finished, self()},
    Parent ! {latencies, self(), L}.

caller_loop(_, 0, Acc) -> Acc;
caller_loop(Echo, N, Acc) ->
    S = now_ns(),
    N = gen_server:call(Echo, N),   % the echo must return the request
    caller_loop(Echo, N - 1, [now_ns() - S | Acc]).

%% The P-th percentile of a sorted list: the element at ceil(P/100 * Len), in integers so that
%% float rounding of 0.99 * Len cannot move it by one.
pct(Sorted, P) ->
    Len = length(Sorted),
    lists:nth(max(1, (P * Len + 99) div 100), Sorted).
