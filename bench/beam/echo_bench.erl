%% bench/beam/echo_bench.erl: gen_tcp echo round trips on loopback, 1 connection,
%% the peer of bench/io.lua's "rtt" (one VM holds the server and the client).
-module(echo_bench).
-export([main/1]).

main([NArg]) ->
    N = list_to_integer(atom_to_list(NArg)),
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {reuseaddr, true}, {nodelay, true}]),
    {ok, Port} = inet:port(L),
    spawn(fun() ->
        {ok, S} = gen_tcp:accept(L),
        inet:setopts(S, [{active, once}]),
        serve(S)
    end),
    {ok, C} = gen_tcp:connect("127.0.0.1", Port, [binary, {active, false}, {nodelay, true}]),
    loop(C, 1000), % warm up
    T0 = erlang:monotonic_time(nanosecond),
    loop(C, N),
    T1 = erlang:monotonic_time(nanosecond),
    io:format("rtt_us ~.3f~n", [(T1 - T0) / N / 1000]),
    init:stop().

serve(S) ->
    receive
        {tcp, S, Data} -> gen_tcp:send(S, Data), inet:setopts(S, [{active, once}]), serve(S);
        {tcp_closed, S} -> ok
    end.

loop(_, 0) -> ok;
loop(C, N) ->
    ok = gen_tcp:send(C, <<"x">>),
    {ok, _} = gen_tcp:recv(C, 1),
    loop(C, N - 1).
