#!/usr/bin/env bash
# Heap profile of `pbackend serve` over the e2e sequence (create, no-op, no-op, add 2, export,
# destroy) with the real CLI, under heaptrack (Debian's `heaptrack` package). Prints the peak
# heap and the allocation sites that hold it, per build.
#
#   scripts/heap-profile.sh [SIZE] [SHAPE] [BIN...]
#
# SIZE defaults to 600, SHAPE to `echo` (~32 KB of state per resource; `heavy` and `pad`, the e2e
# default shape). Each BIN is a pbackend binary to profile (default: the release build);
# give an older build beside the current one for a before/after table.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-600}
SHAPE=${2:-echo}
shift $(($# < 2 ? $# : 2))
BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
  BINS=("$ROOT/target/release/pbackend")
fi
command -v heaptrack >/dev/null || { echo "heaptrack is not installed (apt-get install heaptrack)" >&2; exit 1; }
OUT=$ROOT/target/heap
mkdir -p "$OUT"
cd "$ROOT"
for bin in "${BINS[@]}"; do
  name=$(basename "$(dirname "$bin")")-$(basename "$bin")
  rm -f "$OUT/$name".*
  echo "== $bin (${N} resources, shape ${SHAPE})"
  PBACKEND_BENCH_ALT_BIN=$bin PBACKEND_BENCH_SERVER_WRAP="heaptrack -o $OUT/$name" \
    cargo bench --bench e2e -- --sizes "$N" --repeats 1 --backends pbackend-alt --shape "$SHAPE" \
    >"$OUT/$name.e2e.txt" 2>&1
  file=$(ls "$OUT/$name"*.zst "$OUT/$name"*.gz 2>/dev/null | head -1 || true)
  heaptrack_print -f "$file" --print-peaks 1 --print-allocators 0 --print-temporary 0 \
    --print-leaks 0 --peak-limit 8 >"$OUT/$name.txt" 2>/dev/null || true
  grep -E "^peak heap memory consumption|^peak RSS|^total memory leaked|^calls to allocation" "$OUT/$name.txt" || true
  echo "full report: $OUT/$name.txt"
done
