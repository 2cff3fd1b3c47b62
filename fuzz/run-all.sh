#!/usr/bin/env bash
# Runs every fuzz target for $1 seconds (default 30).
set -euo pipefail
cd "$(dirname "$0")"
for t in event_json syslog k8s_audit notes_tiles_records credentials; do
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time="${1:-30}" -rss_limit_mb=2048
done
