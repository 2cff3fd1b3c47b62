#!/usr/bin/env bash
# Ingest benchmarks of issue 3, with the PostgreSQL COPY baseline measured
# in the same run. Needs: wrk, postgresql-15 (bench/setup installs them).
#   bench/ingest.sh [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN=$CARGO_TARGET_DIR/release/custos
source bench/pg.sh
WORK=$(mktemp -d /work/custos-bench.XXXXXX 2>/dev/null || mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; pg_stop 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Events of about 400 bytes: 1000 per request body, and one alone.
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
def ev(i):
    e = {"time": "2026-11-27T09:%02d:%02dZ" % (i // 60 % 60, i % 60), "activity": "db.query", "class_uid": 6005,
         "actor": {"user": {"name": "user%05d" % (i % 10000)}, "session": {"uid": "s-%d" % i}},
         "src_endpoint": {"ip": "10.%d.%d.%d" % (i % 7, i % 250, i % 200 + 1), "port": 40000 + i % 20000},
         "dst_endpoint": {"hostname": "prod-db", "port": 5432},
         "resource": {"type": "table", "name": "public.orders"}, "status": "success" if i % 20 else "failure",
         "message": "SELECT id, total FROM public.orders WHERE customer_id = $1"}
    s = json.dumps(e, separators=(",", ":"))
    e["metadata"] = {"pad": "x" * max(0, 400 - len(s) - 22)}
    return json.dumps(e, separators=(",", ":"))
lines = [ev(i) for i in range(1000)]
open(w + "/batch.ndjson", "w").write("\n".join(lines) + "\n")
open(w + "/one.json", "w").write(lines[0])
print("event size: %d bytes; batch body: %d bytes" % (len(lines[0]), sum(len(l) + 1 for l in lines)))
with open(w + "/copy.ndjson", "w") as f:
    for r in range(1000):
        f.write("\n".join(lines) + "\n")
PY
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
local f = io.open(os.getenv("BODY"), "rb")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("CT")
if os.getenv("TOKEN") ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
end
-- DELAY_MS: each connection waits this long after an answer before its
-- next request, to offer a steady load below the maximum.
if os.getenv("DELAY_MS") then
  local d = tonumber(os.getenv("DELAY_MS"))
  function delay() return d end
end
LUA

PORT=$(free_port)
$BIN serve --data "$WORK/data" --listen 127.0.0.1:$PORT > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVER=$!
until curl -sf 127.0.0.1:$PORT/healthz >/dev/null; do sleep 0.05; done
export TOKEN=$(awk '/bootstrap admin token/ {print $NF}' "$WORK/serve.out")

# Single events first, while the index keeps up (steady state); then the
# batched run; then single events again while the indexer catches up on the
# millions of batched events, to show what that costs.
single_paced() { # label
  echo "## single-event POSTs, 64 connections, each pausing 2 ms between answer and next request, ${SECS}s ($1)"
  BODY=$WORK/one.json CT=application/json DELAY_MS=2 wrk -t2 -c64 -d${SECS}s -s "$WORK/post.lua" --latency http://127.0.0.1:$PORT/v1/logs/single/events | tee "$WORK/wrk-$1"
  echo "=> paced single events ($1): $(awk '/Requests\/sec/ {print $2}' "$WORK/wrk-$1") events/s, p99 $(awk '$1 == "99%" {print $2}' "$WORK/wrk-$1")"
}
fsync_mean() {
  curl -s -H "Authorization: Bearer $TOKEN" 127.0.0.1:$PORT/metrics | python3 -c '
import re, sys
m = dict(re.findall(r"custos_log_(fsync_seconds_sum|commits)\{log=\"single\"\} ([0-9.e+-]+)", sys.stdin.read()))
print("=> single log: %d commits, mean fdatasync %.0f us" % (float(m["commits"]), 1e6 * float(m["fsync_seconds_sum"]) / float(m["commits"])))'
}
# One event first, so that creating the log and its index is not timed.
curl -sf -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" --data-binary @"$WORK/one.json" \
  127.0.0.1:$PORT/v1/logs/single/events >/dev/null
single_paced steady
fsync_mean
echo "## single-event POSTs, 64 connections, as fast as answers come, ${SECS}s"
BODY=$WORK/one.json CT=application/json wrk -t2 -c64 -d${SECS}s -s "$WORK/post.lua" --latency http://127.0.0.1:$PORT/v1/logs/single/events | tee "$WORK/wrk2"

echo "## batched NDJSON: 1000 events per request, 4 connections, ${SECS}s"
BODY=$WORK/batch.ndjson CT=application/x-ndjson wrk -t2 -c4 -d${SECS}s -s "$WORK/post.lua" --latency http://127.0.0.1:$PORT/v1/logs/bench/events | tee "$WORK/wrk1"
RPS=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk1")
echo "=> custos batched ingest: $(python3 -c "print(int($RPS*1000))") events/s (acknowledged durable)"
single_paced "indexer catching up"
echo "=> custos peak RSS so far: $(awk '/VmHWM/ {print $2, $3}' /proc/$SERVER/status)"
SIZE=$(curl -s -H "Authorization: Bearer $TOKEN" 127.0.0.1:$PORT/v1/logs/bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')
echo "=> bench log holds $SIZE events"
# The indexer's last merges after a burst are the server's memory peak:
# wait until the index has caught up, and a little more for its merges.
indexed() { curl -s -H "Authorization: Bearer $TOKEN" "127.0.0.1:$PORT/v1/logs/bench/search?limit=1" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["indexed"] == v["log_size"])'; }
START=$(date +%s)
until [ "$(indexed)" = True ]; do sleep 1; done
echo "=> index caught up $(( $(date +%s) - START )) s after the paced run"
sleep 10
echo "=> custos peak RSS, index caught up: $(awk '/VmHWM/ {print $2, $3}' /proc/$SERVER/status); now $(awk '/VmRSS/ {print $2, $3}' /proc/$SERVER/status)"
kill $SERVER; wait $SERVER || true

echo "## the same batched run without authentication (--insecure-no-auth), for the cost of auth"
PORT=$(free_port)
$BIN serve --insecure-no-auth --data "$WORK/data-noauth" --listen 127.0.0.1:$PORT > "$WORK/serve2.out" 2> "$WORK/serve2.err" &
SERVER=$!
until curl -sf 127.0.0.1:$PORT/healthz >/dev/null; do sleep 0.05; done
TOKEN= BODY=$WORK/batch.ndjson CT=application/x-ndjson wrk -t2 -c4 -d${SECS}s -s "$WORK/post.lua" --latency http://127.0.0.1:$PORT/v1/logs/bench/events | tee "$WORK/wrk3"
RPS3=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk3")
echo "=> without auth: $(python3 -c "print(int($RPS3*1000))") events/s; with auth: $(python3 -c "print(int($RPS*1000))") events/s; auth cost $(python3 -c "print(round(100*(1-$RPS/$RPS3),1))")%"
kill $SERVER; wait $SERVER || true

echo "## baseline: PostgreSQL 15 COPY of 1,000,000 of the same events into a jsonb column"
pg_start
psql -q -c "create table events (e jsonb)"
START=$(date +%s.%N)
psql -q -c "\\copy events(e) from '$WORK/copy.ndjson' with (format csv, quote e'\\x01', delimiter e'\\x02')"
END=$(date +%s.%N)
N=$(psql -tA -c "select count(*) from events")
echo "=> postgres COPY: $N events in $(python3 -c "print(round($END-$START,2))") s = $(python3 -c "print(int($N/($END-$START)))") events/s"
