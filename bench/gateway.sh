#!/usr/bin/env bash
# Gateway benchmark of issue 7: pgbench -S and TPC-B at 1 and 16 clients,
# direct, direct with pgaudit.log=all, through pgbouncer (a plain proxy
# that records nothing, for what any proxy costs on this machine), and
# through the gateway in async mode and fail-closed (standalone over HTTP,
# and inside the server), all in one run; plus the fsync latency of the
# disk the log lives on, for the fail-closed bound. The `-unix` rows reach
# PostgreSQL over its Unix socket (a proxy beside the database); clients
# always connect over TCP.
# Needs postgresql-15, postgresql-15-pgaudit, pgbouncer (apt-get).
#   bench/gateway.sh [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN=$CARGO_TARGET_DIR/release/custos
source bench/pg.sh
WORK=$(mktemp -d /work/custos-bench.XXXXXX 2>/dev/null || mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; pg_stop 2>/dev/null || true; rm -rf "$WORK"' EXIT

pg_start "-c shared_preload_libraries=pgaudit -c max_connections=100"
pg_init_app

# The log server with two gateways inside it (events go straight into the
# log), a token for two standalone gateways (events over HTTP), one person.
echo bench-pw | $BIN gateway user bench --users "$WORK/users.json" 2>/dev/null
PORT=$(free_port); IN_ASYNC=$(free_port); IN_CLOSED=$(free_port); IN_UNIX=$(free_port)
cat > "$WORK/serve.toml" <<TOML
[[gateway]]
listen = "127.0.0.1:$IN_ASYNC"
upstream = "postgres://postgres@127.0.0.1:$PGPORT/app?sslmode=disable"
log = "db-inproc-async"
audit_mode = "async"
users = "$WORK/users.json"
[[gateway]]
listen = "127.0.0.1:$IN_CLOSED"
upstream = "postgres://postgres@127.0.0.1:$PGPORT/app?sslmode=disable"
log = "db-inproc-closed"
users = "$WORK/users.json"
[[gateway]]
listen = "127.0.0.1:$IN_UNIX"
upstream = "postgres://postgres@/app?host=$PGDIR&port=$PGPORT"
log = "db-inproc-unix"
audit_mode = "async"
users = "$WORK/users.json"
TOML
$BIN serve --config "$WORK/serve.toml" --data "$WORK/data" --listen 127.0.0.1:$PORT > "$WORK/serve.out" 2> "$WORK/serve.err" &
PIDS+=($!)
until curl -sf 127.0.0.1:$PORT/healthz >/dev/null; do sleep 0.05; done
TOKEN=$(awk '/bootstrap admin token/ {print $NF}' "$WORK/serve.out")
start_gw() { # mode -> sets GWPORT
  GWPORT=$(free_port)
  $BIN gateway postgres --listen 127.0.0.1:$GWPORT --upstream "postgres://postgres@127.0.0.1:$PGPORT/app?sslmode=disable" \
    --server http://127.0.0.1:$PORT --token "$TOKEN" --log "db-$1" --users "$WORK/users.json" --audit-mode "$1" \
    2> "$WORK/gw-$1.err" &
  PIDS+=($!)
  until grep -q "gateway listening" "$WORK/gw-$1.err"; do sleep 0.05; done
}
# pgbouncer, session pooling, as the postgres user.
BOUNCER=$(free_port)
chown postgres "$WORK"
cat > "$WORK/pgb.ini" <<INI
[databases]
app = host=127.0.0.1 port=$PGPORT dbname=app user=postgres
appunix = host=$PGDIR port=$PGPORT dbname=app user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER
auth_type = trust
auth_file = $WORK/pgb-users.txt
pool_mode = session
default_pool_size = 20
max_client_conn = 100
logfile = $WORK/pgb.log
pidfile = $WORK/pgb.pid
INI
echo '"bench" ""' > "$WORK/pgb-users.txt"
chown postgres "$WORK/pgb.ini" "$WORK/pgb-users.txt"
su postgres -c "pgbouncer -d $WORK/pgb.ini"
until [ -s "$WORK/pgb.pid" ]; do sleep 0.05; done
trap 'kill $(cat $WORK/pgb.pid) 2>/dev/null || true; for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; pg_stop 2>/dev/null || true; rm -rf "$WORK"' EXIT
psql -q -c "create role bench login superuser"

start_gw async; ASYNC=$GWPORT
start_gw fail-closed; CLOSED=$GWPORT

# One pgbench run: setup script clients -> "tps p50_ms"
run() {
  local port=$1 user=$2 script=$3 clients=$4 db=${5:-app}
  local flags=(-n -T "$SECS" -c "$clients" -j "$(( clients < 2 ? clients : 2 ))" -h 127.0.0.1 -p "$port" -U "$user")
  [ "$script" = select ] && flags+=(-S)
  rm -f "$WORK"/pgbench_log.*
  (cd "$WORK" && PGPASSWORD=bench-pw PGSSLMODE=disable pgbench "${flags[@]}" -l --sampling-rate=0.2 "$db" > "$WORK/pgbench.out" 2>&1) \
    || { cat "$WORK/pgbench.out"; exit 1; }
  local tps p50
  tps=$(awk '/^tps/ {print $3}' "$WORK/pgbench.out")
  p50=$(cat "$WORK"/pgbench_log.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int(NR/2)+1]/1000}')
  echo "$tps $p50"
}

# fsync latency on the log's disk, as PostgreSQL's tool measures it.
FSYNC_OPS=$(/usr/lib/postgresql/15/bin/pg_test_fsync -s 3 -f "$WORK/fsync.test" | awk '$1 == "fdatasync" {print $2; exit}')
FSYNC_MS=$(python3 -c "print(round(1000/$FSYNC_OPS, 3))")
echo "fdatasync (pg_test_fsync, 8 kB overwrite as PostgreSQL's WAL does): $FSYNC_OPS ops/s = $FSYNC_MS ms"
$BIN bench --dir "$WORK" --entries 10000 --latency-count 2000 > "$WORK/logbench" 2>/dev/null
APPEND_MS=$(sed -n 's/.*raw write+fdatasync over zeroed space: p50 \([0-9.]*\)µs.*/\1/p' "$WORK/logbench" | python3 -c "import sys; print(round(float(sys.stdin.read())/1000, 3))")
echo "write+fdatasync over zeroed space (what the log does per commit), p50: $APPEND_MS ms"
echo "one append to the log (custos bench: queue, writer thread, write, fdatasync, answer): $(grep -o 'custos append: p50 [^ ]*' "$WORK/logbench")"

printf "%-12s %-8s %7s %10s %9s\n" setup script clients tps p50_ms | tee "$WORK/table"
for script in select tpcb; do
  for clients in 1 16; do
    psql -q -c "alter system set pgaudit.log = 'none'" -c "select pg_reload_conf()" >/dev/null
    read -r t l < <(run $PGPORT postgres $script $clients); printf "%-12s %-8s %7s %10s %9s\n" direct $script $clients $t $l | tee -a "$WORK/table"
    psql -q -c "alter system set pgaudit.log = 'all'" -c "select pg_reload_conf()" >/dev/null
    read -r t l < <(run $PGPORT postgres $script $clients); printf "%-12s %-8s %7s %10s %9s\n" pgaudit-all $script $clients $t $l | tee -a "$WORK/table"
    psql -q -c "alter system set pgaudit.log = 'none'" -c "select pg_reload_conf()" >/dev/null
    read -r t l < <(run $BOUNCER bench $script $clients); printf "%-12s %-8s %7s %10s %9s\n" pgbouncer $script $clients $t $l | tee -a "$WORK/table"
    read -r t l < <(run $BOUNCER bench $script $clients appunix); printf "%-12s %-8s %7s %10s %9s\n" pgb-unix $script $clients $t $l | tee -a "$WORK/table"
    read -r t l < <(run $ASYNC bench $script $clients); printf "%-12s %-8s %7s %10s %9s\n" gw-async $script $clients $t $l | tee -a "$WORK/table"
    read -r t l < <(run $CLOSED bench $script $clients); printf "%-12s %-8s %7s %10s %9s\n" gw-closed $script $clients $t $l | tee -a "$WORK/table"
    read -r t l < <(run $IN_ASYNC bench $script $clients); printf "%-12s %-8s %7s %10s %9s\n" in-async $script $clients $t $l | tee -a "$WORK/table"
    read -r t l < <(run $IN_CLOSED bench $script $clients); printf "%-12s %-8s %7s %10s %9s\n" in-closed $script $clients $t $l | tee -a "$WORK/table"
    read -r t l < <(run $IN_UNIX bench $script $clients); printf "%-12s %-8s %7s %10s %9s\n" in-unix $script $clients $t $l | tee -a "$WORK/table"
  done
done
for log in db-async db-fail-closed db-inproc-async db-inproc-closed db-inproc-unix; do
  SIZE=$(curl -s -H "Authorization: Bearer $TOKEN" 127.0.0.1:$PORT/v1/logs/$log | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')
  echo "$log holds $SIZE events"
done
echo "gateway peak RSS: async $(awk '/VmHWM/ {print $2, $3}' /proc/${PIDS[1]}/status), fail-closed $(awk '/VmHWM/ {print $2, $3}' /proc/${PIDS[2]}/status)"
python3 - "$WORK/table" "$FSYNC_MS" "$APPEND_MS" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
fsync = float(sys.argv[2])
append = float(sys.argv[3])
d = {(r[0], r[1], r[2]): (float(r[3]), float(r[4])) for r in rows}
for script in ("select", "tpcb"):
    for c in ("1", "16"):
        base, lat = d[("direct", script, c)]
        pa = d[("pgaudit-all", script, c)][0]
        for setup in ("pgbouncer", "pgb-unix", "gw-async", "gw-closed", "in-async", "in-closed", "in-unix"):
            t, l = d[(setup, script, c)]
            print(f"{script} c={c} {setup}: {100*t/base:.0f}% of direct (pgaudit {100*pa/base:.0f}%), +{1000*(l-lat):.0f} us p50")
        stmts = 1 if script == "select" else 7
        for name, f in (("fdatasync", fsync), ("log write+fdatasync", append)):
            print(f"  bound clients/(direct latency + one {name}) = {int(c)/(lat/1000 + f/1000):.0f} tps; "
                  f"with one per statement ({stmts}) = {int(c)/(lat/1000 + stmts*f/1000):.0f} tps")
PY
