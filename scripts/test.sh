#!/usr/bin/env bash
# pbackend's whole test suite, as CI runs it.
#
# 1. When Go is on PATH, builds (or reuses from ~/.cache/pbackend-toolchain) the real pulumi
#    CLI v3.259.0, the older CLIs of the version matrix, the YAML language host and our test
#    provider (scripts/pulumi-toolchain.sh), and makes a missing toolchain a test failure.
#    Without Go the real-CLI tests skip, saying so, and everything else still runs.
# 2. cargo test: unit tests, HTTP API tests, and the real-CLI suite on v3.259.0.
# 3. The real-CLI suite again on each older CLI (all but its slowest scenario).
#
# PBACKEND_MATRIX overrides the older versions ("" for none).
set -euo pipefail
cd "$(dirname "$0")/.."

MATRIX=${PBACKEND_MATRIX-"v3.228.0 v3.200.0 v3.150.0"}
CACHE=${PBACKEND_TOOLCHAIN_DIR:-$HOME/.cache/pbackend-toolchain}
CLI_TESTS=(--test cli_stacks --test cli_updates --test cli_state --test cli_concurrency --test cli_modes --test cli_ops)

if command -v go >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  scripts/pulumi-toolchain.sh v3.259.0 $MATRIX
  export PBACKEND_REQUIRE_CLI=1
else
  echo "test.sh: 'go' is not on PATH: the real-CLI tests will skip" >&2
fi

cargo test --locked

for v in $MATRIX; do
  if [ -x "$CACHE/pulumi-$v/pulumi" ]; then
    echo "== real-CLI suite on pulumi $v"
    PBACKEND_PULUMI_VERSION=$v cargo test --locked "${CLI_TESTS[@]}" -- --skip server_down_longer_than_retries
  else
    echo "== pulumi $v did not build; see $CACHE/pulumi-$v/BUILD_FAILED" >&2
  fi
done
