#!/usr/bin/env bash
# Fuzzes the parsers and appliers that take client input (libFuzzer through cargo fuzz):
#   inflate        gzip inflation with a limit, forged trailers included
#   event_batch    the streaming scan of gzip engine-event batches
#   delta          delta checkpoints against a base text
#   journal_parse  journal bodies, replayed and generated
#   journal_model  generated journals against the direct model of replay
#   deployment     the readers of whole deployments
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]     (default: 20 s, all targets)
#
# Each target starts from its checked-in corpus (fuzz/corpus/<target>/seed-*) plus whatever
# earlier runs added there (ignored by git). Prints one line per target: executions, new
# corpus entries, and crashes (saved under fuzz/artifacts/<target>/, a failure of this
# script). Needs cargo-fuzz (installed here when missing) and a nightly toolchain, or the
# stable one with RUSTC_BOOTSTRAP=1. FUZZ_SANITIZER=address (default none: the code under
# test is safe Rust, and without a sanitizer each target runs several times faster).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECS=${1:-20}
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(inflate event_batch delta journal_parse journal_model deployment)
SAN=${FUZZ_SANITIZER:-none}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked >&2
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
  CARGO=(cargo +nightly)
else
  echo "fuzz.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
  export RUSTC_BOOTSTRAP=1
  CARGO=(cargo)
fi

"${CARGO[@]}" fuzz build -s "$SAN" >&2

status=0
printf '%-14s %12s %10s %8s\n' target executions corpus crashes
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  log=$(mktemp)
  # -rss_limit_mb catches a target that allocates without bound.
  if ! "${CARGO[@]}" fuzz run -s "$SAN" "$t" "corpus/$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      >"$log" 2>&1; then
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  after=$(find "artifacts/$t" -type f | wc -l)
  printf '%-14s %12s %10s %8s\n' "$t" "${execs:-?}" "$corpus" "$((after - before))"
  if [[ $after -gt $before ]]; then
    status=1
    grep -E "panicked|ERROR|SUMMARY" "$log" | head -5 >&2 || true
  fi
  rm -f "$log"
done
exit "$status"
