%% bench/beam/workloads.erl: the workloads of bench/workloads.lua written in
%% Erlang, so bench/run.lua can run each pair alternately in one sitting.
%% Usage: erl -noshell -pa DIR +S N -run workloads main NAME ARGS...
%% Prints the same "RESULT\tworkload\tfigure\tvalue\tunit\tschedulers" lines
%% as the Lua side; figures and units match row for row.
-module(workloads).
-export([main/1]).

main([Name | Args]) ->
    try
        run(Name, [list_to_integer(A) || A <- Args, is_int(A)], [A || A <- Args, not is_int(A)])
    catch C:R:St ->
        io:format("failed ~p:~p ~p~n", [C, R, St])
    end,
    erlang:halt(0).

is_int(S) -> lists:all(fun(C) -> C >= $0 andalso C =< $9 end, S).

result(W, Fig, Val, Unit, Scheds) ->
    io:format("RESULT\t~s\t~s\t~.6g\t~s\t~p~n", [W, Fig, float(Val), Unit, Scheds]).

now_s() -> erlang:monotonic_time(nanosecond) / 1.0e9.

scheds() -> erlang:system_info(schedulers_online).

rss_bytes() ->
    {ok, B} = file:read_file("/proc/self/statm"),
    [_, Res | _] = string:lexemes(binary_to_list(B), " \n"),
    list_to_integer(Res) * 4096.

%% spawn + message back, serial
run("spawn", [N], _) ->
    Me = self(),
    T0 = now_s(),
    spawn_loop(Me, N),
    result("spawn", "spawn + message back, serial", (now_s() - T0) / N * 1.0e6, "us", scheds());

%% bytes per process blocked in receive
run("idle", [N], _) ->
    erlang:garbage_collect(),
    Before = rss_bytes(),
    Mem0 = erlang:memory(processes),
    Pids = [spawn(fun() -> receive _ -> ok end end) || _ <- lists:seq(1, N)],
    timer:sleep(50),
    After = rss_bytes(),
    Mem1 = erlang:memory(processes),
    result("idle memory", "RSS per process blocked in receive", (After - Before) / N, "bytes", scheds()),
    result("idle memory", "runtime accounting per process", (Mem1 - Mem0) / N, "bytes", scheds()),
    [P ! stop || P <- Pids];

run("ring", [N, Laps | _], _) ->
    Me = self(),
    Head = lists:foldl(fun(_, Next) -> spawn(fun() -> ring_node(Next) end) end, Me, lists:seq(1, N)),
    T0 = now_s(),
    Head ! Laps,
    ring_main(Head),
    Dt = now_s() - T0,
    Head ! 0,
    result("ring", io_lib:format("~b processes x ~b laps", [N, Laps]), Dt / (N * Laps) * 1.0e6,
           "us/hop", scheds());

run("pingpong", [Rounds], Where) ->
    Me = self(),
    Peer = spawn(fun() -> pong(Me) end),
    T0 = now_s(),
    ping(Peer, Rounds),
    Dt = now_s() - T0,
    Peer ! false,
    result("ping-pong", where_figure(Where), Dt / Rounds * 1.0e6, "us/round trip", scheds());

run("throughput", [N], _) ->
    Me = self(),
    Sink = spawn(fun() -> sink(Me, 0) end),
    T0 = now_s(),
    send_n(Sink, 1, N),
    Sink ! false,
    Got = receive C -> C end,
    Dt = now_s() - T0,
    Got = N + 1,
    result("send throughput", "1 sender -> 1 receiver", N / Dt, "msgs/s", scheds());

run("gen_call", [Rounds], Where) ->
    {ok, Pid} = gen_server:start(bench_echo_server(), [], []),
    T0 = now_s(),
    call_n(Pid, Rounds),
    Dt = now_s() - T0,
    gen_server:stop(Pid),
    result("GenServer.call", where_figure(Where), Dt / Rounds * 1.0e6, "us", scheds());

%% BEAM has no topic broadcast in the core: pg's members, then a send to each
run("fanout", [Subs, Casts], _) ->
    Me = self(),
    {ok, _} = pg:start_link(bench_scope),
    [spawn(fun() ->
               ok = pg:join(bench_scope, bench, self()),
               Me ! ready,
               [receive _ -> ok end || _ <- lists:seq(1, Casts)],
               Me ! done
           end) || _ <- lists:seq(1, Subs)],
    [receive ready -> ok end || _ <- lists:seq(1, Subs)],
    T0 = now_s(),
    [[P ! I || P <- pg:get_local_members(bench_scope, bench)] || I <- lists:seq(1, Casts)],
    [receive done -> ok end || _ <- lists:seq(1, Subs)],
    Dt = now_s() - T0,
    result("pubsub fan-out", io_lib:format("~b subscribers x ~b broadcasts", [Subs, Casts]),
           Subs * Casts / Dt, "deliveries/s", scheds());

run("multicore", [Iters], _) ->
    All = scheds(),
    erlang:system_flag(schedulers_online, 1),
    One = burn_all(Iters, 4),
    erlang:system_flag(schedulers_online, All),
    Many = burn_all(Iters, 4 * All),
    result("multi-core", "speed-up of all schedulers over one", One / Many, "x", All);

run("preempt", [Samples], _) ->
    Me = self(),
    Spinner = spawn(fun Spin() -> Spin() end),
    Echo = spawn(fun Loop() -> receive M -> Me ! M, Loop() end end),
    Lat = lists:sort([begin
                          T0 = now_s(),
                          Echo ! I,
                          receive I -> ok end,
                          L = (now_s() - T0) * 1000,
                          timer:sleep(1),
                          L
                      end || I <- lists:seq(1, Samples)]),
    exit(Spinner, kill),
    exit(Echo, kill),
    Nth = fun(Q) -> lists:nth(max(1, ceil(Samples * Q)), Lat) end,
    result("preemption latency", "p50, spinner on the same scheduler", Nth(0.5), "ms", scheds()),
    result("preemption latency", "p99, spinner on the same scheduler", Nth(0.99), "ms", scheds());

run("tree", [Leaves, Fanout], _) ->
    Me = self(),
    T0 = now_s(),
    spawn(fun() -> tree_node(Me, 1, Leaves, Fanout) end),
    Sum = receive S -> S end,
    Dt = now_s() - T0,
    Sum = Leaves * (Leaves + 1) div 2,
    result("spawn tree", io_lib:format("~b-way tree, ~b leaves", [Fanout, Leaves]), Dt, "s", scheds()).

where_figure(["across"]) -> "different schedulers";
where_figure(["default"]) -> "default placement";
where_figure(_) -> "same scheduler".

spawn_loop(_, 0) -> ok;
spawn_loop(Me, N) ->
    spawn(fun() -> Me ! 1 end),
    receive 1 -> ok end,
    spawn_loop(Me, N - 1).

ring_node(Next) ->
    receive M ->
        Next ! M,
        if M =< 0 -> ok; true -> ring_node(Next) end
    end.

ring_main(Head) ->
    receive M ->
        if M =< 1 -> ok; true -> Head ! M - 1, ring_main(Head) end
    end.

pong(Me) ->
    receive false -> ok; M -> Me ! M, pong(Me) end.

ping(_, 0) -> ok;
ping(Peer, I) ->
    Peer ! I,
    receive _ -> ok end,
    ping(Peer, I - 1).

sink(Me, Count) ->
    receive false -> Me ! Count + 1; _ -> sink(Me, Count + 1) end.

send_n(_, I, N) when I > N -> ok;
send_n(P, I, N) -> P ! I, send_n(P, I + 1, N).

call_n(_, 0) -> ok;
call_n(Pid, I) -> I = gen_server:call(Pid, I), call_n(Pid, I - 1).

%% A gen_server whose handle_call replies with the request: the module is this
%% one's companion, bench/beam/bench_echo.erl.
bench_echo_server() -> bench_echo.

burn(Iters) -> burn(1, Iters, 0).
burn(I, Iters, X) when I > Iters -> X;
burn(I, Iters, X) -> burn(I + 1, Iters, (X + I * 7) rem 1000003).

burn_all(Iters, N) ->
    Me = self(),
    Per = Iters div N,
    T0 = now_s(),
    [spawn(fun() -> Me ! {burnt, burn(Per)} end) || _ <- lists:seq(1, N)],
    [receive {burnt, _} -> ok end || _ <- lists:seq(1, N)],
    now_s() - T0.

tree_node(Parent, Lo, Hi, _) when Hi - Lo + 1 =< 1 -> Parent ! Lo;
tree_node(Parent, Lo, Hi, Fanout) ->
    Me = self(),
    Step = (Hi - Lo + Fanout) div Fanout,
    Kids = tree_spawn(Me, Lo, Hi, Step, Fanout, 0),
    Parent ! tree_sum(Kids, 0).

tree_spawn(_, A, Hi, _, _, Kids) when A > Hi -> Kids;
tree_spawn(Me, A, Hi, Step, Fanout, Kids) ->
    B = min(A + Step - 1, Hi),
    spawn(fun() -> tree_node(Me, A, B, Fanout) end),
    tree_spawn(Me, B + 1, Hi, Step, Fanout, Kids + 1).

tree_sum(0, Sum) -> Sum;
tree_sum(K, Sum) -> receive S -> tree_sum(K - 1, Sum + S) end.
