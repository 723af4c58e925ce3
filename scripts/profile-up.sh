#!/usr/bin/env bash
# Profiles `pbackend serve` (release build) with perf while the real CLI runs a create and a
# no-op `up` of N resources padded to ~16 KB (the e2e benchmark's workload), or with SHAPE
# `echo`, a ~16 KB input string per resource echoed once in its outputs, or `heavy`, that
# string as the value the outputs repeat three times, once secret (`cargo bench --bench e2e
# -- --shape echo|heavy`).
#
#   cargo build --release && scripts/profile-up.sh 600 [pad|echo|heavy]
#   perf report -i target/profile/create.data --children --sort symbol
set -euo pipefail
N=${1:-600}
SHAPE=${2:-pad}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TC=${PBACKEND_TOOLCHAIN_DIR:-$HOME/.cache/pbackend-toolchain}
OUT=$ROOT/target/profile
mkdir -p "$OUT"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/home" "$W/proj"
P=$TC/plugins
{
  printf 'name: bench\nruntime: yaml\nplugins:\n  providers:\n    - name: pbtest\n      path: %s\n  languages:\n    - name: yaml\n      path: %s\nresources:\n' "$P" "$P"
  for i in $(seq 0 $((N - 1))); do
    case $SHAPE in
      echo | heavy) data=$(head -c 12000 /dev/urandom | base64 -w0 | tr -d '+/=' | head -c 16000) ;;
    esac
    case $SHAPE in
      echo) props=$(printf 'value: v%d\n      data: "%s"' "$i" "$data") ;;
      heavy) props=$(printf 'value: "%s"' "$data") ;;
      *) props=$(printf 'value: v%d\n      padBytes: 16000' "$i") ;;
    esac
    printf '  r%d:\n    type: pbtest:index:Item\n    properties:\n      %s\n' "$i" "$props"
  done
  printf 'outputs:\n  s: ${r0.secret}\n'
} >"$W/proj/Pulumi.yaml"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$ROOT/target/release/pbackend" serve --addr "127.0.0.1:$PORT" --single-tenant-token pul-profile \
  --db "$W/pb.db" --master-key "$(printf '00%.0s' $(seq 32))" --log-level warn &
SP=$!
sleep 1
cd "$W/proj"
export HOME=$W/home PULUMI_HOME=$W/home PULUMI_SKIP_UPDATE_CHECK=true \
  PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true PULUMI_ACCESS_TOKEN=pul-profile NO_COLOR=1
PUL=$TC/pulumi-v3.259.0/pulumi
"$PUL" login "http://127.0.0.1:$PORT" >/dev/null
"$PUL" stack init dev >/dev/null
for step in create noop; do
  perf record -F 2000 --call-graph dwarf,16384 -p "$SP" -o "$OUT/$step.data" 2>/dev/null &
  PP=$!
  "$PUL" up --yes >/dev/null
  kill -INT "$PP"
  wait "$PP" || true
done
grep VmHWM "/proc/$SP/status"
kill "$SP"
wait "$SP" || true
echo "recordings: $OUT/create.data $OUT/noop.data"
