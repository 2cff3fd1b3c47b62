#!/usr/bin/env bash
# Freshness (issue 4: an acknowledged event is searchable within 1 s),
# measured by polling: single events are posted one at a time, and each is
# searched for by its uid every 2 ms from its acknowledgment until found.
# First on an idle server, then while other clients post batches to
# another log at a steady rate (the indexer then indexes both).
#   bench/freshness.sh [probes per scenario] [background rates, events/s...]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
shift || true
RATES=${*:-20000 60000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN=$CARGO_TARGET_DIR/release/custos
WORK=$(mktemp -d /work/custos-fresh-bench.XXXXXX 2>/dev/null || mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
$BIN serve --data "$WORK/data" --listen 127.0.0.1:$PORT > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
until curl -sf 127.0.0.1:$PORT/healthz >/dev/null; do sleep 0.05; done
export TOKEN=$(awk '/bootstrap admin token/ {print $NF}' "$WORK/serve.out")
echo "## freshness: $N probes per scenario; background rates: idle $RATES events/s"
python3 - "$PORT" "$N" $RATES <<'PY'
import http.client, json, os, random, sys, threading, time
port, n, rates = int(sys.argv[1]), int(sys.argv[2]), [0] + [int(r) for r in sys.argv[3:]]
auth = {"Authorization": "Bearer " + os.environ["TOKEN"]}

def conn():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)

def event(i, uid=None):
    e = {"time": "2026-11-28T09:00:00Z", "activity": "db.query", "status": "success",
         "actor": {"user": {"name": "user%05d" % (i % 10000)}},
         "src_endpoint": {"ip": "10.1.%d.%d" % (i % 250, i % 200 + 1)},
         "message": "SELECT id, total FROM public.orders WHERE customer_id = %d" % i}
    if uid:
        e["uid"] = uid
    return json.dumps(e, separators=(",", ":"))

batch = ("\n".join(event(i) for i in range(1000)) + "\n").encode()

def load(rate, stop, sent):
    # Batches of 1,000 at `rate` events/s, on two connections.
    def run(k):
        c = conn()
        per = 2000.0 / rate
        t = time.monotonic()
        while not stop.is_set():
            c.request("POST", "/v1/logs/load/events", batch, {**auth, "Content-Type": "application/x-ndjson"})
            r = c.getresponse(); r.read()
            if r.status == 200:
                sent[k] += 1000
            t += per
            d = t - time.monotonic()
            if d > 0:
                time.sleep(d)
    ts = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(2)]
    for t in ts:
        t.start()
    return ts

for rate in rates:
    stop, sent = threading.Event(), [0, 0]
    threads = load(rate, stop, sent) if rate else []
    time.sleep(2 if rate else 0.5)
    c, s = conn(), conn()
    fresh, acks = [], []
    started, sent0 = time.monotonic(), sum(sent)
    for i in range(n):
        uid = "fresh-%d-%d" % (rate, i)
        t0 = time.monotonic()
        c.request("POST", "/v1/logs/fresh/events", event(i, uid), {**auth, "Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
        t1 = time.monotonic()
        acks.append(t1 - t0)
        q = "/v1/logs/fresh/search?limit=1&q=uid%3A%22" + uid + "%22"
        while True:
            s.request("GET", q, headers=auth)
            r = s.getresponse(); body = r.read()
            if r.status == 200 and json.loads(body)["total"] == 1:
                break
            if time.monotonic() - t1 > 30:
                sys.exit("event %s not searchable after 30 s" % uid)
            time.sleep(0.002)
        fresh.append(time.monotonic() - t1)
        # Posted at a random moment of the indexer's 500 ms cycle, not
        # right after the pass that found the last probe.
        time.sleep(random.uniform(0, 0.6))
    took = time.monotonic() - started
    achieved = (sum(sent) - sent0) / took
    stop.set()
    for t in threads:
        t.join()
    fresh.sort(); acks.sort()
    pct = lambda a, p: a[min(len(a) - 1, int(len(a) * p))] * 1000
    print("=> %s: freshness p50 %.0f ms, p99 %.0f ms, max %.0f ms; acknowledgment p50 %.2f ms; background %.0f events/s"
          % ("idle" if rate == 0 else "while %d events/s are posted" % rate,
             pct(fresh, 0.5), pct(fresh, 0.99), fresh[-1] * 1000, pct(acks, 0.5), achieved))
PY
