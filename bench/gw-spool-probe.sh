#!/usr/bin/env bash
# A probe of the standalone gateway in async mode (posting to a server over
# HTTP), with its spool in memory and on disk, alternated: what the spool on
# disk costs. Not a benchmark of record (bench/gateway.sh is).
#   C=clients SECS=seconds SCRIPT=select|tpcb ROUNDS=n
#   BIN=path/to/custos
# Prints one line per run: "memory|disk direct TPS@latency gw TPS@latency".
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-10}
SCRIPT=${SCRIPT:-select}
ROUNDS=${ROUNDS:-3}
BIN=${BIN:-/root/.cache/custos-target/release/custos}
source bench/pg.sh
WORK=$(mktemp -d /tmp/custos-gw-spool.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; wait $p 2>/dev/null || true; done; pg_stop 2>/dev/null || true; rm -rf "$WORK"' EXIT
pg_start "-c max_connections=100"
pg_init_app
echo bench-pw | $BIN gateway user bench --users "$WORK/users.json" 2>/dev/null
PORT=$(free_port)
$BIN serve --data "$WORK/data" --listen 127.0.0.1:$PORT > "$WORK/serve.out" 2> "$WORK/serve.err" &
PIDS+=($!)
until curl -sf 127.0.0.1:$PORT/healthz >/dev/null; do sleep 0.05; done
TOKEN=$(awk '/bootstrap admin token/ {print $NF}' "$WORK/serve.out")
psql -q -c "create role bench login superuser"
flags=(-n -T "$SECS" -c ${C:-16} -j 2 -h 127.0.0.1)
[ "$SCRIPT" = select ] && flags+=(-S)
tps() { awk '/^tps/ {t=$3} /latency average/ {l=$4} END {print t"@"l}'; }
for r in $(seq "$ROUNDS"); do
  for kind in memory disk; do
    GW=$(free_port)
    extra=(); [ $kind = disk ] && extra=(--spool-dir "$WORK/spool")
    $BIN gateway postgres --listen 127.0.0.1:$GW --upstream "postgres://postgres@127.0.0.1:$PGPORT/app?sslmode=disable" \
      --server http://127.0.0.1:$PORT --token "$TOKEN" --log db --users "$WORK/users.json" --audit-mode async \
      "${extra[@]}" 2> "$WORK/gw.err" &
    G=$!
    until grep -q "gateway listening" "$WORK/gw.err"; do sleep 0.05; done
    d=$(pgbench "${flags[@]}" -p $PGPORT -U postgres app 2>/dev/null | tps)
    g=$(PGPASSWORD=bench-pw PGSSLMODE=disable pgbench "${flags[@]}" -p $GW -U bench app 2>/dev/null | tps)
    kill $G; wait $G 2>/dev/null || true
    echo "$kind direct $d gw $g"
  done
done
