#!/usr/bin/env bash
# Log-core benchmarks of issue 2: append throughput (1 and 2 submitters),
# single-append latency beside raw fdatasync, verify throughput beside
# SHA-256 alone, and the `openssl speed -evp sha256` baseline, in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos-target}"
cargo build --release -q -p custos
BIN=$CARGO_TARGET_DIR/release/custos
echo "## machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(df -h . | awk 'NR==2 {print $1}')"
echo "## openssl speed -evp sha256"
openssl speed -evp sha256 -seconds 2 2>/dev/null | tail -2
for t in 1 2; do
  echo "## custos bench --threads $t"
  $BIN bench --dir . --threads $t --entries 2000000 --batch 1000 --size 300
done
