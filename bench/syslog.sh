#!/usr/bin/env bash
# Syslog ingest benchmark of issue 6: N octet-counted RFC 5424 messages over
# C TCP connections into Custos, acknowledged into the log; baseline: rsyslog
# (imtcp) receiving the same streams and writing them to a file. Same run.
#   bench/syslog.sh [N] [C]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
C=${2:-4}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN=$CARGO_TARGET_DIR/release/custos
source bench/pg.sh   # for free_port
WORK=$(mktemp -d /work/custos-syslog-bench.XXXXXX 2>/dev/null || mktemp -d)
trap 'kill $SERVER $RS 2>/dev/null || true; rm -rf "$WORK"' EXIT
SERVER=; RS=

python3 - "$WORK" "$N" "$C" <<'PY'
import sys
w, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
users = ["alice", "bob", "carol", "dave", "erin"]
for k in range(c):
    with open("%s/stream.%d" % (w, k), "wb") as f:
        for j, i in enumerate(range(k, n, c)):
            if i % 3 == 0:
                m = "Failed password for %s from 10.0.%d.%d port %d ssh2" % (users[i % 5], i % 250, i % 200, 1024 + i % 60000)
            else:
                m = "Accepted publickey for %s from 10.0.%d.%d port %d ssh2" % (users[i % 5], i % 250, i % 200, 1024 + i % 60000)
            line = "<38>1 2026-11-27T10:00:00.%06dZ bastion sshd %d - [meta sequenceId=\"%d\"] %s" % (i % 1000000, 1000 + k, j + 1, m)
            b = line.encode()
            f.write(b"%d " % len(b) + b)
PY
send() { # port
  local pids=()
  for k in $(seq 0 $((C-1))); do
    python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$1)); s.sendall(open('$WORK/stream.$k','rb').read()); s.shutdown(socket.SHUT_WR); s.recv(1)" &
    pids+=($!)
  done
  wait "${pids[@]}"
}

PORT=$(free_port); SPORT=$(free_port)
$BIN serve --data "$WORK/data" --listen 127.0.0.1:$PORT --syslog-tcp 127.0.0.1:$SPORT=bench > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVER=$!
until curl -sf 127.0.0.1:$PORT/healthz >/dev/null; do sleep 0.05; done
TOKEN=$(awk '/bootstrap admin token/ {print $NF}' "$WORK/serve.out")
size() { curl -s -H "Authorization: Bearer $TOKEN" 127.0.0.1:$PORT/v1/logs/bench 2>/dev/null | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["size"])
except Exception: print(0)'; }
START=$(date +%s.%N)
send $SPORT
until [ "$(size)" -ge "$N" ]; do sleep 0.05; done
END=$(date +%s.%N)
echo "=> custos: $N messages over $C connections in $(python3 -c "print(round($END-$START,2))") s = $(python3 -c "print(int($N/($END-$START)))") messages/s, durable in the log"
kill $SERVER; wait $SERVER 2>/dev/null || true; SERVER=

RPORT=$(free_port)
cat > "$WORK/rs.conf" <<CONF
global(workDirectory="$WORK")
module(load="imtcp")
input(type="imtcp" port="$RPORT" address="127.0.0.1")
action(type="omfile" file="$WORK/rsyslog.out" template="RSYSLOG_FileFormat")
CONF
rsyslogd -n -f "$WORK/rs.conf" -i "$WORK/rs.pid" > /dev/null 2>&1 &
RS=$!
until python3 -c "import socket; socket.create_connection(('127.0.0.1',$RPORT)).close()" 2>/dev/null; do sleep 0.05; done
START=$(date +%s.%N)
send $RPORT
until [ -f "$WORK/rsyslog.out" ] && [ "$(wc -l < "$WORK/rsyslog.out")" -ge "$N" ]; do sleep 0.05; done
END=$(date +%s.%N)
echo "=> rsyslog (imtcp -> omfile, no fsync): $N messages in $(python3 -c "print(round($END-$START,2))") s = $(python3 -c "print(int($N/($END-$START)))") messages/s"
