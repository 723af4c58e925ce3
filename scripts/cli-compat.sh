#!/usr/bin/env bash
# Regenerates reference/cli-compat.md: every real-CLI scenario on every CLI version tried.
#
# Usage: scripts/cli-compat.sh [VERSION ...]
# Default versions: the newest release and older ones down to the oldest that builds here.
# Each version is built with scripts/pulumi-toolchain.sh (cached); one that does not build
# gets a column saying why.
set -uo pipefail
cd "$(dirname "$0")/.."

VERSIONS=("$@")
if [ ${#VERSIONS[@]} -eq 0 ]; then
  # From the newest the module proxy serves down to the oldest that builds here.
  VERSIONS=(v3.277.0 v3.270.0 v3.259.0 v3.258.0 v3.250.0 v3.240.0 v3.228.0 v3.220.0 v3.210.0
    v3.200.0 v3.180.0 v3.150.0)
fi
CACHE=${PBACKEND_TOOLCHAIN_DIR:-$HOME/.cache/pbackend-toolchain}
TESTS=(cli_access cli_integration cli_stacks cli_updates cli_state cli_concurrency cli_modes cli_ops cli_newest cli_crash cli_probe)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

scripts/pulumi-toolchain.sh "${VERSIONS[@]}" >/dev/null 2>"$work/toolchain.log" || true
cargo build --tests --quiet 2>/dev/null

for v in "${VERSIONS[@]}"; do
  if [ ! -x "$CACHE/pulumi-$v/pulumi" ]; then
    if grep -q "403" "$CACHE/pulumi-$v/BUILD_FAILED" 2>/dev/null; then
      reason="the Go module proxy refuses this version (403: $(grep -m1 -o 'server response: .*' "$CACHE/pulumi-$v/BUILD_FAILED" | cut -c18-))"
    else
      reason=$(tail -n 1 "$CACHE/pulumi-$v/BUILD_FAILED" 2>/dev/null | cut -c1-160)
    fi
    echo "${reason:-did not build}" > "$work/$v.unbuilt"
    continue
  fi
  echo "== $v" >&2
  args=()
  for t in "${TESTS[@]}"; do args+=(--test "$t"); done
  PBACKEND_REQUIRE_CLI=1 PBACKEND_PULUMI_VERSION=$v cargo test --no-fail-fast "${args[@]}" \
    -- --test-threads 2 --nocapture 2>&1 | grep -E '^test .* \.\.\. |^PROTOCOL ' > "$work/$v.results" || true
done

out=reference/cli-compat.md
{
  echo "# Real-CLI compatibility"
  echo
  echo "Each scenario of \`tests/cli_*.rs\` run against \`pbackend serve\` with each version of the"
  echo "real \`pulumi\` CLI (built from Go modules by \`scripts/pulumi-toolchain.sh\`)."
  echo "Regenerate with \`scripts/cli-compat.sh\`; last run $(date -u +%Y-%m-%d)."
  echo
  printf '| scenario |'
  for v in "${VERSIONS[@]}"; do printf ' %s |' "$v"; done
  echo
  printf '|---|'
  for _ in "${VERSIONS[@]}"; do printf -- '---|'; done
  echo
  names=$(cat "$work"/*.results 2>/dev/null | grep '^test ' | sed -E 's/^test ([^ ]+) .*/\1/' | sort -u)
  for n in $names; do
    printf '| `%s` |' "$n"
    for v in "${VERSIONS[@]}"; do
      if [ -f "$work/$v.unbuilt" ]; then
        printf ' — |'
        continue
      fi
      r=$(grep -E "^test $n \.\.\. " "$work/$v.results" | head -1 | sed -E 's/.* \.\.\. //')
      case "$r" in
        ok) printf ' passed |' ;;
        FAILED) printf ' **failed** |' ;;
        ignored*) printf ' skipped |' ;;
        *) printf ' not run |' ;;
      esac
    done
    echo
  done
  echo
  echo "What each version asked for (\`tests/cli_probe.rs\`: one \`pulumi up\` and one stack"
  echo "reference read, from the server's request log):"
  echo
  echo "| CLI | journal version | begin-update | stack outputs | state uploads |"
  echo "|---|---|---|---|---|"
  for v in "${VERSIONS[@]}"; do
    [ -f "$work/$v.results" ] || continue
    line=$(grep -m1 '^PROTOCOL ' "$work/$v.results" || true)
    [ -n "$line" ] || continue
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    j=$(field journal)
    [ "$j" = 0 ] && j="none (checkpoints)"
    echo "| $v | $j | $(field begin-update) | $(field outputs) | $(field checkpoints) |"
  done
  echo
  echo "Versions that did not build here:"
  echo
  any=
  for v in "${VERSIONS[@]}"; do
    if [ -f "$work/$v.unbuilt" ]; then
      echo "- $v: $(cat "$work/$v.unbuilt")"
      any=1
    fi
  done
  [ -n "$any" ] || echo "- none"
  echo
  echo "Notes: CLIs before 3.180 do not ask the server for a default organization; the"
  echo "harness runs \`pulumi org set-default organization\` for them, as their users would."
  echo "CLIs before 3.225 do not journal by default (3.200 and older not at all), so"
  echo "\`journaling_on\` exercises checkpoints there."
} > "$out"
echo "wrote $out" >&2
