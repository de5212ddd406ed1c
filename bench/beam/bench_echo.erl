%% bench/beam/bench_echo.erl: the gen_server of workloads:run("gen_call"):
%% handle_call replies with the request, as bench/workloads.lua's module does.
-module(bench_echo).
-behaviour(gen_server).
-export([init/1, handle_call/3, handle_cast/2]).

init([]) -> {ok, 0}.
handle_call(Req, _From, State) -> {reply, Req, State}.
handle_cast(_Msg, State) -> {noreply, State}.
