#!/usr/bin/env bash
# Search benchmarks of issue 4 on N generated access events (default
# 10,000,000: 10,000 users, 1,000 resources, ~5% failures, 30 days), with
# PostgreSQL 15 (jsonb + GIN + btree on time) as the baseline, same run.
#   bench/search.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN=$CARGO_TARGET_DIR/release/custos
source bench/pg.sh
WORK=$(mktemp -d /work/custos-search-bench.XXXXXX 2>/dev/null || mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; pg_stop 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "## generating $N events"
python3 - "$WORK/events.ndjson" "$N" <<'PY'
import json, sys, random
random.seed(7)
out, n = sys.argv[1], int(sys.argv[2])
base = 1793404800  # 2026-11-01T00:00:00Z
acts = ["user.login", "db.query", "file.read", "admin.role.grant", "api.call"]
with open(out, "w", buffering=1 << 20) as f:
    for i in range(n):
        t = base + (i * 2592000) // n
        u = "user%05d" % int(random.paretovariate(1.2) * 7 % 10000)
        e = {"time": "%sZ" % __import__("time").strftime("%Y-%m-%dT%H:%M:%S", __import__("time").gmtime(t)),
             "activity": acts[i % 5], "actor": {"user": {"name": u}},
             "status": "failure" if random.random() < 0.05 else "success",
             "src_endpoint": {"ip": "10.%d.%d.%d" % (random.randrange(16), random.randrange(256), random.randrange(1, 255))},
             "resource": {"type": "table", "name": "res%04d" % random.randrange(1000)},
             "message": "%s on res by %s" % (acts[i % 5], u)}
        f.write(json.dumps(e, separators=(",", ":")) + "\n")
PY
RAW=$(stat -c %s "$WORK/events.ndjson")
echo "raw NDJSON: $RAW bytes"

PORT=$(free_port)
$BIN serve --data "$WORK/data" --listen 127.0.0.1:$PORT > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVER=$!
until curl -sf 127.0.0.1:$PORT/healthz >/dev/null; do sleep 0.1; done
export CUSTOS_TOKEN=$(awk '/bootstrap admin token/ {print $NF}' "$WORK/serve.out")
AUTH="Authorization: Bearer $CUSTOS_TOKEN"
START=$(date +%s.%N)
split -l 10000 -d -a 5 "$WORK/events.ndjson" "$WORK/part."
ls "$WORK"/part.* | xargs -P 4 -I{} curl -sf -o /dev/null -H "$AUTH" -H 'Content-Type: application/x-ndjson' --data-binary @{} http://127.0.0.1:$PORT/v1/logs/bench/events
rm -f "$WORK"/part.*
END=$(date +%s.%N)
echo "ingested in $(python3 -c "print(round($END-$START,1))") s"
indexed() { curl -s -H "$AUTH" "http://127.0.0.1:$PORT/v1/logs/bench/search?limit=1" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["indexed"], v["log_size"])'; }
until [ "$(indexed | awk '{print ($1==$2)}')" = 1 ]; do sleep 0.5; done
kill $SERVER; wait $SERVER || true

echo "## index build: rebuilding the whole index from the log"
rm -rf "$WORK/data/index/bench"
$BIN serve --data "$WORK/data" --listen 127.0.0.1:$PORT > "$WORK/serve2.out" 2> "$WORK/serve2.err" &
SERVER=$!
until curl -sf 127.0.0.1:$PORT/healthz >/dev/null; do sleep 0.1; done
START=$(date +%s.%N)
until [ "$(indexed | awk '{print ($1==$2)}')" = 1 ]; do sleep 0.2; done
END=$(date +%s.%N)
echo "=> index build: $N events in $(python3 -c "print(round($END-$START,1))") s = $(python3 -c "print(int($N/($END-$START)))") events/s on $(nproc) cores"
LOGB=$(du -sb "$WORK/data/logs/bench" | cut -f1); IXB=$(du -sb "$WORK/data/index/bench" | cut -f1)
echo "=> size: log $LOGB + index $IXB = $(python3 -c "print(round(100*($LOGB+$IXB)/$RAW,1))")% of raw NDJSON ($RAW)"
L="$WORK/data/logs/bench"
echo "   log: bundles $(stat -c %s "$L/bundles"), entries segments $(cat "$L"/entries.* | wc -c) in $(ls "$L" | grep -c '^entries\.'), hashes $(stat -c %s "$L/hashes"), checkpoints $(stat -c %s "$L/checkpoints") bytes"

echo "## custos queries: HTTP round trips on one keep-alive connection, warm; each includes the fsync of its _custos read record"
# The same 1,000 users, in the same order, for Custos and PostgreSQL.
python3 -c 'import random; random.seed(1); print("\n".join("user%05d" % random.randrange(10000) for _ in range(1000)))' > "$WORK/users"
python3 - "$PORT" "$CUSTOS_TOKEN" "$WORK/users" <<'PY'
import http.client, random, sys, time
port, token = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", port)
def q(path):
    t = time.perf_counter()
    c.request("GET", "/v1/logs/bench/" + path, headers={"Authorization": "Bearer " + token})
    r = c.getresponse(); r.read()
    assert r.status == 200, (r.status, path)
    return (time.perf_counter() - t) * 1000
users = open(sys.argv[3]).read().split()
sel = sorted(q("search?q=actor.user.name%%3A%s%%20AND%%20status%%3Afailure&start=2026-11-20T00:00:00Z&end=2026-11-21T00:00:00Z&limit=100" % u) for u in users)
n = len(sel)
print("=> selective (one user, failures, one day), %d queries: p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (n, sel[n // 2], sel[n * 99 // 100], sel[-1]))
# The same, with the day given in the query and not on hour boundaries
# (00:17 to 00:43 the next day): partial hours are checked entry by entry.
sel2 = sorted(q("search?q=actor.user.name%%3A%s%%20AND%%20status%%3Afailure%%20AND%%20time%%3A%%5B2026-11-20T00%%3A17%%3A00Z%%20TO%%202026-11-21T00%%3A43%%3A00Z%%5D&limit=100" % u) for u in users)
print("=> selective, range not on hours, in the query: p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (sel2[n // 2], sel2[n * 99 // 100], sel2[-1]))
top = sorted(q("aggregate?by=actor.user.name&top=10") for _ in range(5))
print("=> top-10 actors over all events: median %.0f ms" % top[2])
hist = sorted(q("aggregate?interval=1h") for _ in range(5))
print("=> 1h histogram over 30 days: median %.0f ms" % hist[2])
PY
# The same queries from curl, a native client, on one keep-alive connection:
# curl's time_total is measured as psql's \timing is, from the request to
# the whole answer, without the cost of an interpreted client. The server's
# Server-Timing header splits out the search itself and the durable record
# of the read (one fdatasync of the _custos log).
while read -r u; do
  printf 'url = "http://127.0.0.1:%s/v1/logs/bench/search?q=actor.user.name%%3A%s%%20AND%%20status%%3Afailure&start=2026-11-20T00:00:00Z&end=2026-11-21T00:00:00Z&limit=100"\noutput = /dev/null\n' "$PORT" "$u"
done < "$WORK/users" > "$WORK/curl.cfg"
curl -s -H "Authorization: Bearer $CUSTOS_TOKEN" -K "$WORK/curl.cfg" -w '%{http_code} %{time_total} %header{server-timing}\n' > "$WORK/curl.out"
python3 - "$WORK/curl.out" <<'PY'
import re, sys
rows = [l.split(" ", 2) for l in open(sys.argv[1]).read().splitlines()]
assert len(rows) == 1000 and all(r[0] == "200" for r in rows), rows[:3]
def pct(xs):
    xs = sorted(xs); n = len(xs)
    return "p50 %.2f ms, p99 %.2f ms, max %.1f ms" % (xs[n // 2], xs[n * 99 // 100], xs[-1])
step = lambda r, name: float(re.search(name + r";dur=([0-9.]+)", r[2]).group(1))
print("=> selective from curl, %d queries: %s" % (len(rows), pct([float(r[1]) * 1000 for r in rows])))
print("   of which the search (Server-Timing): %s" % pct([step(r, "search") for r in rows]))
print("   of which the durable record of the read: %s" % pct([step(r, "audit") for r in rows]))
PY
# Pages deep in a large result: status:failure (about 5% of all events),
# the first page and the page after a cursor in the middle of the log.
for c in "" "&cursor=$((N / 2))"; do
  for i in $(seq 200); do
    printf 'url = "http://127.0.0.1:%s/v1/logs/bench/search?q=status%%3Afailure&limit=100%s"\noutput = /dev/null\n' "$PORT" "$c"
  done > "$WORK/curl.cfg"
  curl -s -H "Authorization: Bearer $CUSTOS_TOKEN" -K "$WORK/curl.cfg" -w '%{http_code} %{time_total} %header{server-timing}\n' \
    | python3 -c '
import re, sys
rows = [l.split(" ", 2) for l in sys.stdin.read().splitlines()]
assert len(rows) == 200 and all(r[0] == "200" for r in rows), rows[:3]
s = sorted(float(re.search(r"search;dur=([0-9.]+)", r[2]).group(1)) for r in rows)
t = sorted(float(r[1]) * 1000 for r in rows)
print("=> status:failure, %s: p50 %.2f ms (search %.2f ms), p99 %.2f ms" % (sys.argv[1], t[100], s[100], t[198]))' \
    "$([ -n "$c" ] && echo "page after cursor $((N / 2))" || echo "first page")"
done
kill $SERVER; wait $SERVER || true

echo "## index build offline: custos reindex (server stopped; a writer thread per core), with its CPU time"
$BIN reindex --data "$WORK/data" --log bench | sed 's/^/=> reindex /'

echo "## baseline: PostgreSQL 15, jsonb with GIN (jsonb_path_ops) and btree on time"
pg_start
psql -q -c "create table events (e jsonb)"
S=$(date +%s.%N)
psql -q -c "\\copy events(e) from '$WORK/events.ndjson' with (format csv, quote e'\\x01', delimiter e'\\x02')"
psql -q -c "create index on events using gin (e jsonb_path_ops)" -c "create index on events ((e->>'time'))" -c "vacuum analyze events"
E=$(date +%s.%N)
echo "postgres load + index: $(python3 -c "print(round($E-$S,1))") s; size $(psql -tA -c "select pg_total_relation_size('events')") bytes"
pgq() { psql -tA -c '\timing on' -c "$1" | awk '/^Time:/ {print $2}'; }
# One psql session (one connection, like Custos's keep-alive one), warm:
# each query timed by psql's \timing.
{ echo '\timing on'; while read -r u; do echo "select e from events where e @> '{\"actor\":{\"user\":{\"name\":\"$u\"}},\"status\":\"failure\"}' and e->>'time' >= '2026-11-20' and e->>'time' < '2026-11-21' limit 100;"; done < "$WORK/users"; } > "$WORK/sel.sql"
psql -q -o /dev/null -f "$WORK/sel.sql" | awk '/^Time:/ {print $2}' | sort -n | awk '{a[NR]=$1} END {printf "=> postgres selective, %d queries: p50 %.2f ms, p99 %.2f ms, max %.1f ms\n", NR, a[int(NR/2)+1], a[int(NR*99/100)+1], a[NR]}'
for i in 1 2 3; do pgq "select e->'actor'->'user'->>'name' a, count(*) from events group by a order by 2 desc limit 10"; done | sort -n | awk '{a[NR]=$1} END {printf "=> postgres top-10 actors: median %.0f ms\n", a[2]}'
for i in 1 2 3; do pgq "select substr(e->>'time',1,13) h, count(*) from events group by h order by h"; done | sort -n | awk '{a[NR]=$1} END {printf "=> postgres 1h histogram: median %.0f ms\n", a[2]}'
