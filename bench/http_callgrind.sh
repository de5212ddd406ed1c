#!/bin/sh
# Instructions a request of the hello-world server (bench/http_server.lua, one
# scheduler) under callgrind: warm up with wrk, zero the counters, run wrk for
# 10 s with 10 connections, dump, divide. Repeatable where wall time is not.
#   sh bench/http_callgrind.sh            (from the repository, after make all)
set -e
OUT=$(mktemp -d)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
env LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/build/?.so;;" \
  valgrind --tool=callgrind --callgrind-out-file=$OUT/cg.%p lua5.4 bench/http_server.lua $PORT 1 \
  > $OUT/server.log 2>&1 &
VP=$!
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.3; done
wrk -t1 -c10 -d3s http://127.0.0.1:$PORT/ > /dev/null
callgrind_control -z $VP > /dev/null
wrk -t1 -c10 -d10s http://127.0.0.1:$PORT/ > $OUT/wrk.txt
callgrind_control -d $VP > /dev/null
sleep 1
kill $VP; wait $VP 2>/dev/null || true
REQ=$(awk '/requests in/{print $1}' $OUT/wrk.txt)
IR=$(awk '/^summary:/{print $2}' $(ls $OUT/cg.*.1))
echo "requests=$REQ Ir=$IR Ir/request=$((IR / REQ))"
rm -rf $OUT
