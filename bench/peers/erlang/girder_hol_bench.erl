%% `girder bench -w hol` on Erlang/OTP distribution: head-of-line blocking across nodes. Two
%% nodes, two OS processes, loopback. `hol.sh` starts the server node (serve/0) and runs the
%% client (main/1).
%%
%% Server node B: an echo gen_server (`echo`), a `slow` process that never takes a message out of
%% its mailbox, and a guard (`hol_guard`) that watches B's memory.
%% Client node A:
%%   1. one caller makes N sequential gen_server:call's to B's echo          -> p99_us_unloaded
%%   2. 10 flooders send {data, I} to B's slow process with `!` in a loop (Erlang has no bounded
%%      mailbox, so this is the natural code: no send_wait, no Full); wait 0.5 s
%%   3. the same N calls again beside the flood                              -> p99_us_loaded
%%   4. stop the flood, settle, read the slow process's mailbox and memory on B
%% Safety: the flood is stopped after FLOOD_MAX_MS, or as soon as B's erlang:memory(total) passes
%% MEM_CAP_BYTES (`flood_capped`, `flood_capped_by`); the loaded calls then finish without it
%% (`loaded_calls_under_flood` says how many ran wholly beside it; p50/p99_us_loaded are then
%% over those, p50/p99_us_loaded_phase over all N).
%% Prints one JSON line with the keys of `girder bench -w hol --json`, plus Erlang-only keys.
-module(girder_hol_bench).
-behaviour(gen_server).

-export([serve/0, main/1]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(FLOODERS, 10).
-define(FLOOD_WARM_MS, 500).
-define(FLOOD_MAX_MS, 20000).
-define(MEM_CAP_BYTES, 2000 * 1024 * 1024).
-define(GUARD_POLL_MS, 50).
%% After the flood stops, how long the loaded calls may still take before the run gives up.
-define(AFTER_FLOOD_MAX_MS, 120000).

%% ---- server node ----

serve() ->
    %% Never takes a message: a receive for a message nobody sends. ERTS keeps the receive's
    %% scan position, so each arrival is looked at once; the mailbox just grows (on_heap, the
    %% default message_queue_data).
    Slow = spawn(fun() -> Never = make_ref(), receive Never -> ok end end),
    register(slow, Slow),
    register(hol_guard, spawn(fun() -> guard(idle) end)),
    %% Registered last: the client takes `echo` being there to mean all are ready.
    {ok, _} = gen_server:start({local, echo}, ?MODULE, [], []),
    ok.

init([]) -> {ok, nostate}.
handle_call(X, _From, S) -> {reply, X, S}.
handle_cast(_, S) -> {noreply, S}.

%% The guard polls B's total memory (and the slow mailbox's length) while watching, keeps the
%% peaks, and tells the client once if the total passes the cap.
guard(idle) ->
    receive
        {watch, From, Cap} -> guard({From, Cap, false, 0, 0});
        {final, From} -> From ! final(0, 0), guard(idle)
    end;
guard({From, Cap, Told, PeakMem, PeakLen} = St) ->
    receive
        {final, F} -> F ! final(PeakMem, PeakLen), guard(idle);
        {watch, _, _} -> guard(St)
    after ?GUARD_POLL_MS ->
        Mem = erlang:memory(total),
        Len = case process_info(whereis(slow), message_queue_len) of
                  {message_queue_len, L} -> L;
                  _ -> 0
              end,
        Told1 = case Mem > Cap andalso not Told of
                    true -> From ! {mem_cap, Mem}, true;
                    false -> Told
                end,
        guard({From, Cap, Told1, max(PeakMem, Mem), max(PeakLen, Len)})
    end.

final(PeakMem, PeakLen) ->
    Slow = whereis(slow),
    {message_queue_len, Len} = process_info(Slow, message_queue_len),
    {memory, SlowMem} = process_info(Slow, memory),
    Total = erlang:memory(total),
    {final, Len, SlowMem, Total, max(PeakMem, Total), max(PeakLen, Len), vm_hwm_kb(),
     erlang:memory(processes)}.

%% The OS's peak resident set of this node (Linux), in kB; 0 where there is no /proc.
vm_hwm_kb() ->
    case file:read_file("/proc/self/status") of
        {ok, Bin} ->
            case re:run(Bin, "VmHWM:\\s+([0-9]+) kB", [{capture, all_but_first, list}]) of
                {match, [Kb]} -> list_to_integer(Kb);
                _ -> 0
            end;
        _ -> 0
    end.

%% ---- client node ----

main([ServerStr, ScaleStr]) ->
    Server = list_to_atom(ServerStr),
    N = scaled(20000, to_float(ScaleStr)),
    pong = wait_for(Server, 50),
    ok = wait_registered(Server, 100),
    true = erlang:monitor_node(Server, true),
    Mon = spawn_link(fun() -> busy_monitor(0, 0, undefined) end),
    erlang:system_monitor(Mon, [busy_dist_port]),
    Echo = {echo, Server},

    %% 1. alone
    {Unloaded, _} = call_phase(Echo, N, Mon, warm),
    BusyBefore = busy_counts(Mon),

    %% 2. flood
    Slow = rpc:call(Server, erlang, whereis, [slow]),
    true = is_pid(Slow),
    {hol_guard, Server} ! {watch, self(), ?MEM_CAP_BYTES},
    Stop = atomics:new(1, []),
    Cnt = counters:new(?FLOODERS, [write_concurrency]),
    Flooders = [spawn(fun() -> flood(Slow, Stop, Cnt, Ix, 0) end)
                || Ix <- lists:seq(1, ?FLOODERS)],
    TFlood0 = now_ns(),
    timer:sleep(?FLOOD_WARM_MS),
    FloodAtWarm = flood_total(Cnt),

    %% 3. beside the flood; the flood stops when the calls end, at the time cap or the memory cap
    Self = self(),
    Caller = spawn_link(fun() -> Self ! {loaded, self(), call_phase(Echo, N, Mon, cold)} end),
    FloodLeftMs = max(0, ?FLOOD_MAX_MS - (now_ns() - TFlood0) div 1000000),
    {CappedBy, Loaded} =
        receive
            {loaded, Caller, R} -> {none, R};
            {mem_cap, _} -> {memory, undefined};
            {nodedown, Server} -> {nodedown, undefined}
        after FloodLeftMs -> {time, undefined}
        end,
    TStop = now_ns(),
    stop_flood(Stop, Flooders),
    FloodAccepted = flood_total(Cnt),
    FloodNs = TStop - TFlood0,
    {Lat, Starts} =
        case Loaded of
            undefined ->
                receive
                    {loaded, Caller, R2} -> R2;
                    {nodedown, Server} -> exit(server_down)
                after ?AFTER_FLOOD_MAX_MS -> exit(loaded_calls_timeout)
                end;
            _ -> Loaded
        end,
    BusyAfter = busy_counts(Mon),

    %% 4. let what was on the way land, then read B
    settle(Server, 5000),
    {hol_guard, Server} ! {final, self()},
    {final, MqLen, SlowMem, BeamMem, PeakMem, PeakLen, PeakRssKb, ProcMem} =
        receive {final, _, _, _, _, _, _, _} = F -> F
        after 60000 -> exit(no_final_report)
        end,
    Lost = case CappedBy of
               nodedown -> 1;
               _ -> receive {nodedown, Server} -> 1 after 0 -> 0 end
           end,

    %% Calls that ended before the flood stopped ran wholly beside it. If the flood was capped
    %% (time or memory) before the N loaded calls were done, the later calls ran without it, and
    %% a p99 over all N could be a post-flood number: p50/p99_us_loaded are then over the calls
    %% beside the flood, and the whole phase's are p50/p99_us_loaded_phase.
    UnderFlood = lists:sort([L || {L, S} <- lists:zip(Lat, Starts), S + L =< TStop]),
    SU = lists:sort(Unloaded),
    SL = lists:sort(Lat),
    Beside = case UnderFlood of [] -> SL; _ -> UnderFlood end,
    P99U = pct(SU, 99) / 1000.0,
    P99L = pct(Beside, 99) / 1000.0,
    {BusyAll0, BusyCaller0} = BusyBefore,
    {BusyAll1, BusyCaller1} = BusyAfter,
    MB = fun(B) -> B / (1024 * 1024) end,
    emit(hol, [{p50_us, pct(Beside, 50) / 1000.0},
               {p99_us, P99L},
               {p99_us_unloaded, P99U},
               {p99_us_loaded, P99L},
               {loaded_ratio, P99L / max(P99U, 0.001)},
               {flood_accepted, FloodAccepted},
               {slow_mailbox_len, MqLen},
               {slow_memory_mb, MB(SlowMem)},
               {beam_memory_mb, MB(BeamMem)},
               {beam_processes_mb, MB(ProcMem)},
               {connection_lost, Lost},
               {busy_dist_port_events, BusyAll1 - BusyAll0},
               {busy_dist_port_caller_events, BusyCaller1 - BusyCaller0},
               {busy_dist_port_events_unloaded, BusyAll0},
               {calls, N},
               {loaded_calls_under_flood, length(UnderFlood)},
               {p50_us_loaded_phase, pct(SL, 50) / 1000.0},
               {p99_us_loaded_phase, pct(SL, 99) / 1000.0},
               {max_us_loaded, lists:last(SL) / 1000.0},
               {flood_s, FloodNs / 1.0e9},
               {flood_per_s, FloodAccepted / (FloodNs / 1.0e9)},
               {flood_accepted_at_warm, FloodAtWarm},
               {flood_capped, case CappedBy of none -> 0; _ -> 1 end},
               {flood_capped_by, CappedBy},
               {beam_peak_memory_mb, MB(PeakMem)},
               {beam_peak_rss_mb, PeakRssKb / 1024},
               {slow_mailbox_peak_len, PeakLen}]),
    stop_server(Server),
    halt(0).

%% One caller makes N timed sequential calls. Returns {latencies ns, start times ns}, both in call
%% order. Before the calls alone, a warm-up like Girder's call_histogram (max(10, N/100) calls);
%% none beside the flood: the connection is warm by then, and there each untimed call can take
%% ~100 ms, so a warm-up would use up the flood (a flood capped at ~10 s) before a timed call.
call_phase(Echo, N, Mon, Warm) ->
    Mon ! {caller, self()},
    _ = [I = gen_server:call(Echo, I, infinity)
         || Warm =:= warm, I <- lists:seq(1, max(10, N div 100))],
    call_loop(Echo, N, [], []).

call_loop(_, 0, Lat, Starts) -> {lists:reverse(Lat), lists:reverse(Starts)};
call_loop(Echo, I, Lat, Starts) ->
    S = now_ns(),
    I = gen_server:call(Echo, I, infinity),   % the echo must return the request
    call_loop(Echo, I - 1, [now_ns() - S | Lat], [S | Starts]).

flood(Slow, Stop, Cnt, Ix, I) ->
    case atomics:get(Stop, 1) of
        0 ->
            Slow ! {data, I},
            counters:add(Cnt, Ix, 1),
            flood(Slow, Stop, Cnt, Ix, I + 1);
        _ ->
            ok
    end.

flood_total(Cnt) -> lists:sum([counters:get(Cnt, Ix) || Ix <- lists:seq(1, ?FLOODERS)]).

%% Flooders see the flag when they next run (a busy dist port resumes them as it drains); any
%% still alive after 2 s are killed.
stop_flood(Stop, Flooders) ->
    atomics:put(Stop, 1, 1),
    Refs = [{P, erlang:monitor(process, P)} || P <- Flooders],
    [receive {'DOWN', R, process, P, _} -> ok
     after 2000 -> exit(P, kill), receive {'DOWN', R, process, P, _} -> ok end
     end || {P, R} <- Refs],
    ok.

%% Counts busy_dist_port suspensions on this node: all of them, and the caller's.
busy_monitor(All, CallerN, Caller) ->
    receive
        {monitor, Caller, busy_dist_port, _} -> busy_monitor(All + 1, CallerN + 1, Caller);
        {monitor, _, busy_dist_port, _} -> busy_monitor(All + 1, CallerN, Caller);
        {caller, P} -> busy_monitor(All, CallerN, P);
        {counts, From} -> From ! {busy_counts, All, CallerN}, busy_monitor(All, CallerN, Caller)
    end.

busy_counts(Mon) ->
    Mon ! {counts, self()},
    receive {busy_counts, A, C} -> {A, C} end.

%% Waits until B's slow mailbox stops growing (what was in the buffers has landed), up to MaxMs.
settle(Server, MaxMs) -> settle(Server, MaxMs, -1).
settle(_, Ms, _) when Ms =< 0 -> ok;
settle(Server, Ms, Prev) ->
    timer:sleep(200),
    case rpc:call(Server, erlang, process_info,
                  [rpc:call(Server, erlang, whereis, [slow]), message_queue_len], 30000) of
        {message_queue_len, Prev} -> ok;
        {message_queue_len, L} -> settle(Server, Ms - 200, L);
        _ -> ok
    end.

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

stop_server(Server) ->
    spawn(Server, init, stop, []),
    receive {nodedown, Server} -> ok after 5000 -> ok end.

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
num(V) when is_float(V) -> float_to_list(V, [{decimals, 2}, compact]);
num(V) when is_atom(V) -> [$", atom_to_list(V), $"].

%% The P-th percentile of a sorted list: the element at ceil(P/100 * Len).
pct(Sorted, P) ->
    Len = length(Sorted),
    lists:nth(max(1, (P * Len + 99) div 100), Sorted).
