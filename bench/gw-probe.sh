#!/usr/bin/env bash
# A quick probe of the in-process gateway alone (not a benchmark of record:
# bench/gateway.sh is). Starts PostgreSQL and the server with one gateway,
# then twice runs pgbench direct and through the gateway; prints
# "direct TPS@latency gw TPS@latency". vmstat samples go to $OUT.
#   MODE=async|fail-closed C=clients SECS=seconds SCRIPT=select|tpcb
#   BIN=path/to/custos (to compare two builds, alternate them)
#   UPSTREAM=unix: the gateway reaches PostgreSQL over its Unix socket
#   PERF=1 [PERFARGS="-a"]: perf record of the second gateway run -> $OUT/perf.data
#   STRACE=1 [STRACEARGS="-c"]: strace of 1 s of the second run -> $OUT/strace.out
#   KEEP=dir: keep the server's data directory there (the gateway's events)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-10}
SCRIPT=${SCRIPT:-select}
MODE=${MODE:-async}
BIN=${BIN:-/root/.cache/custos-target/release/custos}
source bench/pg.sh
OUT=${OUT:-/tmp}
WORK=$(mktemp -d /tmp/custos-gw-probe.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; wait $p 2>/dev/null || true; done; pg_stop 2>/dev/null || true; [ -n "${KEEP:-}" ] && mv "$WORK/data" "$KEEP"; rm -rf "$WORK"' EXIT
pg_start "-c max_connections=100"
pg_init_app
echo bench-pw | $BIN gateway user bench --users "$WORK/users.json" 2>/dev/null
PORT=$(free_port); GW=$(free_port)
UP="postgres://postgres@127.0.0.1:$PGPORT/app?sslmode=disable"
[ "${UPSTREAM:-tcp}" = unix ] && UP="postgres://postgres@/app?host=$PGDIR&port=$PGPORT"
cat > "$WORK/serve.toml" <<TOML
[[gateway]]
listen = "127.0.0.1:$GW"
upstream = "$UP"
log = "db"
audit_mode = "$MODE"
users = "$WORK/users.json"
TOML
$BIN serve --config "$WORK/serve.toml" --data "$WORK/data" --listen 127.0.0.1:$PORT > "$WORK/serve.out" 2> "$WORK/serve.err" &
SPID=$!; PIDS+=($SPID)
until curl -sf 127.0.0.1:$PORT/healthz >/dev/null; do kill -0 $SPID 2>/dev/null || { cat "$WORK/serve.err"; exit 1; }; sleep 0.05; done
psql -q -c "create role bench login superuser"
flags=(-n -T "$SECS" -c ${C:-16} -j 2 -h 127.0.0.1)
[ "$SCRIPT" = select ] && flags+=(-S)
for i in 1 2; do
(sleep 3; vmstat 1 4 | tail -3 > $OUT/vmstat.d$i) &
d=$(pgbench "${flags[@]}" -p $PGPORT -U postgres app 2>/dev/null | awk '/^tps/ {t=$3} /latency average/ {l=$4} END {print t"@"l}')
PP=; if [ "${PERF:-0}" = 1 ] && [ $i = 2 ]; then perf record -F 999 -g ${PERFARGS:--p $SPID} -o $OUT/perf.data -- sleep $((SECS-1)) >/dev/null 2>&1 & PP=$!; fi; if [ "${STRACE:-0}" = 1 ] && [ $i = 2 ]; then (sleep 3; timeout -s INT 1 strace ${STRACEARGS:--c} -f -p $SPID -o $OUT/strace.out) & PP=$!; fi
(sleep 3; vmstat 1 4 | tail -3 > $OUT/vmstat.$i) &
g=$(PGPASSWORD=bench-pw PGSSLMODE=disable pgbench "${flags[@]}" -p $GW -U bench app 2>/dev/null | awk '/^tps/ {t=$3} /latency average/ {l=$4} END {print t"@"l}')
if [ -n "$PP" ]; then wait $PP; fi
echo "direct $d gw $g"
done
