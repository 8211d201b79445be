%% The `girder bench` remote workloads on Erlang/OTP distribution: two nodes, two OS processes,
%% loopback. `dist.sh` starts the server node (serve/0) and runs the client (main/1).
%% Prints one JSON line per workload with the same names and keys as `girder bench --json`.
-module(girder_dist_bench).
-behaviour(gen_server).

-export([serve/0, main/1]).
-export([init/1, handle_call/3, handle_cast/2]).

%% Server node: a registered sink that counts messages and an echo gen_server.
serve() ->
    register(sink, spawn(fun() -> sink(undefined, 0, 0) end)),
    {ok, _} = gen_server:start({local, echo}, ?MODULE, [], []),
    ok.

%% The sink is told how many to expect and whom to tell, then counts.
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

main([ServerStr, ScaleStr]) ->
    Server = list_to_atom(ServerStr),
    Scale = to_float(ScaleStr),
    pong = wait_for(Server, 50),
    %% The server's processes may still be starting.
    ok = wait_registered(Server, 100),
    dist_send(Server, scaled(1000000, Scale)),
    timer:sleep(200),
    calls(Server, dist_call_c1, 1, scaled(100000, Scale)),
    timer:sleep(200),
    calls(Server, dist_call_c50, 50, scaled(4000, Scale)),
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

%% dist_send: one process sends N small messages to the remote sink; timed until the sink says
%% it has them all.
dist_send(Server, N) ->
    Sink = {sink, Server},
    Sink ! {expect, N, self()},
    T0 = now_ns(),
    send_loop(Sink, N),
    receive {done, N} -> ok end,
    T1 = now_ns(),
    emit(dist_send, [{msgs_per_s, N / ((T1 - T0) / 1.0e9)}]).

send_loop(_, 0) -> ok;
send_loop(Sink, N) ->
    Sink ! {data, N},
    send_loop(Sink, N - 1).

%% dist_call_cN: Callers processes each make PerCaller gen_server calls to the remote echo.
calls(Server, Name, Callers, PerCaller) ->
    Echo = {echo, Server},
    %% Warm-up: 1% of the calls.
    [gen_server:call(Echo, I) || I <- lists:seq(1, max(10, PerCaller div 100))],
    Parent = self(),
    T0 = now_ns(),
    Pids = [spawn(fun() -> caller(Parent, Echo, PerCaller) end) || _ <- lists:seq(1, Callers)],
    [receive {finished, P} -> ok end || P <- Pids],
    T1 = now_ns(),
    Lat = lists:sort(lists:append([receive {latencies, P, L} -> L end || P <- Pids])),
    Total = Callers * PerCaller,
    emit(Name, [{calls_per_s, Total / ((T1 - T0) / 1.0e9)},
                {p50_us, pct(Lat, Total, 0.50) / 1000.0},
                {p99_us, pct(Lat, Total, 0.99) / 1000.0}]).

caller(Parent, Echo, N) ->
    L = caller_loop(Echo, N, []),
    Parent ! {finished, self()},
    Parent ! {latencies, self(), L}.

caller_loop(_, 0, Acc) -> Acc;
caller_loop(Echo, N, Acc) ->
    S = now_ns(),
    N = gen_server:call(Echo, N),
    caller_loop(Echo, N - 1, [now_ns() - S | Acc]).

pct(Sorted, Total, Q) -> lists:nth(max(1, min(Total, round(Q * Total))), Sorted).
