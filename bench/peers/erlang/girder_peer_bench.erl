%% The `girder bench` workloads on Erlang/OTP, for side-by-side numbers.
%% Run: erl -noshell +P 2000000 -pa DIR -run girder_peer_bench main SCALE
%% Prints one JSON line per workload with the same names and keys as `girder bench --json`.
-module(girder_peer_bench).
-behaviour(gen_server).

-export([main/1]).
-export([init/1, handle_call/3, handle_cast/2, start_idle/0]).

main([ScaleStr]) ->
    main([ScaleStr, "all"]);
main([ScaleStr, Which]) ->
    Scale = to_float(ScaleStr),
    All = [spawn, ring, pingpong, call_c1, call_c100, fanin, supervisor_churn, timers],
    Selected = case Which of
                   "all" -> All;
                   W -> [list_to_atom(W)]
               end,
    lists:foreach(fun(W) -> run(W, Scale), timer:sleep(200) end, Selected),
    halt(0).

to_float(S) ->
    case string:to_float(S) of
        {F, []} -> F;
        _ -> float(list_to_integer(S))
    end.

scaled(N, Scale) -> max(1, round(N * Scale)).

now_ns() -> erlang:monotonic_time(nanosecond).

emit(Workload, Pairs) ->
    Fields = [io_lib:format(",\"~s\":~s", [K, num(V)]) || {K, V} <- Pairs],
    io:format("{\"system\":\"erlang\",\"workload\":\"~s\"~s}~n", [Workload, Fields]).

num(V) when is_integer(V) -> integer_to_list(V);
num(V) -> float_to_list(V, [{decimals, 2}]).

run(spawn, Scale) -> spawn_bench(scaled(1000000, Scale));
run(ring, Scale) -> ring(1000, scaled(10000000, Scale));
run(pingpong, Scale) -> pingpong(scaled(2000000, Scale));
run(call_c1, Scale) -> calls(call_c1, 1, scaled(1000000, Scale));
run(call_c100, Scale) -> calls(call_c100, 100, scaled(10000, Scale));
run(fanin, Scale) -> fanin(100, scaled(100000, Scale));
run(supervisor_churn, Scale) -> supervisor_churn(scaled(100000, Scale));
run(timers, Scale) -> timers(scaled(1000000, Scale)).

%% spawn: N idle processes each waiting for one message, then stopped.
%% Memory: erlang:memory(processes) delta / N, less the growth of this process's own memory
%% (it holds the list of pids, as the Rust peers hold a vector of handles).
spawn_bench(N) ->
    erlang:garbage_collect(),
    Count0 = erlang:system_info(process_count),
    M0 = erlang:memory(processes),
    {memory, Self0} = erlang:process_info(self(), memory),
    T0 = now_ns(),
    Pids = spawn_idle(N, []),
    T1 = now_ns(),
    wait_idle(Pids),
    M1 = erlang:memory(processes),
    {memory, Self1} = erlang:process_info(self(), memory),
    PerProc = ((M1 - M0) - (Self1 - Self0)) / N,
    [P ! stop || P <- Pids],
    wait_process_count(Count0),
    emit(spawn, [{spawn_ns_per_proc, (T1 - T0) / N}, {mem_bytes_per_proc, round(PerProc)}]).

%% Untimed: until every spawned process has run and waits in its receive.
wait_idle([]) -> ok;
wait_idle([P | Rest] = Pids) ->
    case erlang:process_info(P, status) of
        {status, waiting} -> wait_idle(Rest);
        _ -> timer:sleep(5), wait_idle(Pids)
    end.

%% Untimed: until the stopped processes are gone.
wait_process_count(Count) ->
    case erlang:system_info(process_count) > Count of
        true -> timer:sleep(5), wait_process_count(Count);
        false -> ok
    end.

spawn_idle(0, Acc) -> Acc;
spawn_idle(N, Acc) -> spawn_idle(N - 1, [spawn(fun() -> receive stop -> ok end end) | Acc]).

%% ring: Procs processes pass a token Hops times in all.
ring(Procs, Hops) ->
    Parent = self(),
    Nodes = [spawn(fun() -> ring_start(Parent) end) || _ <- lists:seq(1, Procs)],
    wire(Nodes, hd(Nodes)),
    T0 = now_ns(),
    hd(Nodes) ! {token, Hops},
    receive ring_done -> ok end,
    T1 = now_ns(),
    flush(ring_done),
    emit(ring, [{hops_per_s, Hops / ((T1 - T0) / 1.0e9)}]).

wire([Last], First) -> Last ! {next, First};
wire([A, B | Rest], First) -> A ! {next, B}, wire([B | Rest], First).

ring_start(Parent) ->
    receive {next, Next} -> ring_loop(Parent, Next) end.

ring_loop(Parent, Next) ->
    receive
        {token, 0} -> Parent ! ring_done, Next ! {token, 0};
        {token, Left} -> Next ! {token, Left - 1}, ring_loop(Parent, Next)
    end.

flush(Msg) ->
    receive Msg -> flush(Msg) after 100 -> ok end.

%% pingpong: two processes, N round trips.
pingpong(N) ->
    Pong = spawn(fun pong/0),
    T0 = now_ns(),
    Pong ! {self(), N},
    ping(Pong),
    T1 = now_ns(),
    emit(pingpong, [{round_trips_per_s, N / ((T1 - T0) / 1.0e9)}]).

pong() ->
    receive
        {_, 0} -> ok;
        {From, K} -> From ! {self(), K}, pong()
    end.

ping(Pong) ->
    receive
        {_, 1} -> Pong ! {self(), 0};
        {_, K} -> Pong ! {self(), K - 1}, ping(Pong)
    end.

%% call: a gen_server with a trivial handle_call; Callers processes make PerCaller calls each.
%% (init/1 also serves supervisor_churn's simple_one_for_one supervisor.)
init(churn_sup) ->
    {ok, {#{strategy => simple_one_for_one, intensity => 1, period => 5},
          [#{id => conn, start => {?MODULE, start_idle, []}, restart => temporary,
             shutdown => 5000}]}};
init([]) -> {ok, nostate}.
handle_call(N, _From, S) -> {reply, N + 1, S}.
handle_cast(_, S) -> {noreply, S}.

calls(Name, Callers, PerCaller) ->
    {ok, Srv} = gen_server:start(?MODULE, [], []),
    Parent = self(),
    T0 = now_ns(),
    Pids = [spawn(fun() -> caller(Parent, Srv, PerCaller) end) || _ <- lists:seq(1, Callers)],
    [receive {finished, P} -> ok end || P <- Pids],
    T1 = now_ns(),
    Lat = lists:sort(lists:append([receive {latencies, P, L} -> L end || P <- Pids])),
    gen_server:stop(Srv),
    Total = Callers * PerCaller,
    emit(Name, [{calls_per_s, Total / ((T1 - T0) / 1.0e9)},
                {p50_us, pct(Lat, Total, 0.50) / 1000.0},
                {p99_us, pct(Lat, Total, 0.99) / 1000.0}]).

caller(Parent, Srv, N) ->
    L = caller_loop(Srv, N, []),
    Parent ! {finished, self()},
    Parent ! {latencies, self(), L}.

caller_loop(_, 0, Acc) -> Acc;
caller_loop(Srv, N, Acc) ->
    S = now_ns(),
    _ = gen_server:call(Srv, N),
    caller_loop(Srv, N - 1, [now_ns() - S | Acc]).

pct(Sorted, Total, Q) -> lists:nth(max(1, min(Total, round(Q * Total))), Sorted).

%% fanin: Producers processes send Each messages to one process.
fanin(Producers, Each) ->
    Total = Producers * Each,
    Parent = self(),
    Sink = spawn(fun() -> sink(Parent, Total) end),
    T0 = now_ns(),
    [spawn(fun() -> produce(Sink, Each) end) || _ <- lists:seq(1, Producers)],
    receive fanin_done -> ok end,
    T1 = now_ns(),
    emit(fanin, [{msgs_per_s, Total / ((T1 - T0) / 1.0e9)}]).

sink(Parent, 0) -> Parent ! fanin_done;
sink(Parent, Left) -> receive _ -> sink(Parent, Left - 1) end.

produce(_, 0) -> ok;
produce(Sink, N) -> Sink ! N, produce(Sink, N - 1).

%% supervisor_churn: a simple_one_for_one supervisor; the median of 7 rounds of 1,000
%% start_child + terminate_child pairs alone, then beside N idle children; then the time to
%% shut the supervisor down with its N children.
start_idle() -> {ok, spawn_link(fun idle/0)}.

idle() -> receive _ -> idle() end.

supervisor_churn(N) ->
    {ok, Sup} = supervisor:start_link(?MODULE, churn_sup),
    unlink(Sup),
    Alone = churn_median(Sup),
    [{ok, _} = supervisor:start_child(Sup, []) || _ <- lists:seq(1, N)],
    Beside = churn_median(Sup),
    Ref = monitor(process, Sup),
    T0 = now_ns(),
    exit(Sup, shutdown),
    receive {'DOWN', Ref, process, Sup, _} -> ok end,
    T1 = now_ns(),
    emit(supervisor_churn, [{idle_children, N},
                            {pair_us_alone, Alone / 1000 / 1000.0},
                            {pair_us_beside, Beside / 1000 / 1000.0},
                            {churn_ratio, Beside / Alone},
                            {shutdown_s, (T1 - T0) / 1.0e9}]).

churn_median(Sup) ->
    Rounds = lists:sort([churn_round(Sup) || _ <- lists:seq(1, 7)]),
    lists:nth(4, Rounds).

churn_round(Sup) ->
    T0 = now_ns(),
    lists:foreach(fun(_) ->
                          {ok, P} = supervisor:start_child(Sup, []),
                          ok = supervisor:terminate_child(Sup, P)
                  end, lists:seq(1, 1000)),
    now_ns() - T0.

%% timers: N timers armed far in the future with erlang:send_after, then cancelled with
%% erlang:cancel_timer. Memory: erlang:memory(total) delta while armed / N.
timers(N) ->
    erlang:garbage_collect(),
    M0 = erlang:memory(total),
    T0 = now_ns(),
    Refs = arm(N, []),
    T1 = now_ns(),
    M1 = erlang:memory(total),
    T2 = now_ns(),
    lists:foreach(fun(R) -> erlang:cancel_timer(R) end, Refs),
    T3 = now_ns(),
    %% The list of references is the caller's, as a Rust caller holds a vector of handles.
    ListBytes = N * 2 * erlang:system_info(wordsize) + N * 5 * erlang:system_info(wordsize),
    emit(timers, [{arm_ns, (T1 - T0) / N},
                  {cancel_ns, (T3 - T2) / N},
                  {bytes_per_timer, round(((M1 - M0) - ListBytes) / N)}]).

arm(0, Acc) -> Acc;
arm(N, Acc) -> arm(N - 1, [erlang:send_after(3600000, self(), tick) | Acc]).
