#!/usr/bin/env bash
# pbackend's whole test suite, as CI runs it.
#
# 1. When Go is on PATH, builds (or reuses from ~/.cache/pbackend-toolchain) the real pulumi
#    CLIs of tests/cli/toolchain/versions.env (primary, newest and the older matrix), the
#    YAML language host and our test provider (scripts/pulumi-toolchain.sh), and makes a
#    missing primary or newest CLI a test failure. Without Go the real-CLI tests skip,
#    saying so, and everything else still runs.
# 2. cargo test: unit tests, HTTP API tests, property tests, a short crash loop, and the
#    real-CLI suite on the primary CLI; then `systemd-analyze verify` on the packaged unit.
# 3. The whole real-CLI suite again on the newest CLI, then on each older CLI (all but its
#    slowest scenario).
# 4. When PostgreSQL's server binaries are installed (scripts/test-deps.sh installs them and
#    HAProxy), the HTTP API, operator and real-CLI suites again with PostgreSQL as the store.
#    (The store conformance suite, the replica tests and two replicas behind HAProxy run on
#    PostgreSQL in step 2 already.)
# 5. Each fuzz target for a few seconds from its checked-in corpus (scripts/fuzz.sh), when
#    a nightly toolchain or cargo-fuzz can be had; PBACKEND_FUZZ_SECONDS (default 8, 0 skips).
# 6. schemathesis (PyPI, pinned, in ~/.cache/pbackend-schemathesis) against a real server
#    from our own OpenAPI document (scripts/api-fuzz.sh), PBACKEND_API_FUZZ_EXAMPLES per
#    operation (default 10).
#
# PBACKEND_MATRIX overrides the older versions ("" for none).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=../tests/cli/toolchain/versions.env
source tests/cli/toolchain/versions.env
MATRIX=${PBACKEND_MATRIX-$MATRIX}
CACHE=${PBACKEND_TOOLCHAIN_DIR:-$HOME/.cache/pbackend-toolchain}
CLI_TESTS=(--test cli_access --test cli_integration --test cli_stacks --test cli_updates --test cli_state --test cli_concurrency --test cli_modes
  --test cli_ops --test cli_newest --test cli_crash --test cli_probe --test console_pages)
API_TESTS=(--test api_access --test api_audit --test api_integrations --test api_openapi --test api_webhooks --test api_bad_input --test api_login --test api_conflicts --test api_hostile --test api_limits --test api_lifecycle
  --test api_newest_cli --test api_races --test api_restart_retention --test api_secrets)
OPS_TESTS=(--test ops_backup --test ops_cli_basics --test ops_maint --test ops_management --test ops_migrate --test ops_stack
  --test ops_tokens --test ops_tls --test ops_config --test ops_trusted_proxies --test ops_logs --test ops_adopt --test ops_tracing)

if command -v go >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  scripts/pulumi-toolchain.sh "$PRIMARY_CLI" "$NEWEST_CLI" $MATRIX
  export PBACKEND_REQUIRE_CLI=1
else
  echo "test.sh: 'go' is not on PATH: the real-CLI tests will skip" >&2
fi

cargo test --locked
echo "== the systemd unit of reference/deploy (systemd-analyze verify)"
reference/deploy/check-unit.sh target/debug/pbackend

if [ -x "$CACHE/pulumi-$NEWEST_CLI/pulumi" ]; then
  echo "== the whole real-CLI suite on the newest CLI, pulumi $NEWEST_CLI"
  PBACKEND_PULUMI_VERSION=$NEWEST_CLI cargo test --locked "${CLI_TESTS[@]}" --test cli_replicas
fi

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  echo "== API, operator and real-CLI suites on PostgreSQL"
  PBACKEND_TEST_DB=postgres cargo test --locked "${API_TESTS[@]}" "${OPS_TESTS[@]}" "${CLI_TESTS[@]}"
else
  echo "== no PostgreSQL server binaries (scripts/test-deps.sh installs them): PostgreSQL suites skipped" >&2
fi

for v in $MATRIX; do
  if [ -x "$CACHE/pulumi-$v/pulumi" ]; then
    echo "== real-CLI suite on pulumi $v"
    PBACKEND_PULUMI_VERSION=$v cargo test --locked "${CLI_TESTS[@]}" -- --skip server_down_longer_than_retries
  else
    echo "== pulumi $v did not build; see $CACHE/pulumi-$v/BUILD_FAILED" >&2
  fi
done

FUZZ_SECONDS=${PBACKEND_FUZZ_SECONDS:-8}
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  echo "== fuzz targets, $FUZZ_SECONDS s each"
  scripts/fuzz.sh "$FUZZ_SECONDS"
fi

echo "== property-based API fuzzing from our OpenAPI document (schemathesis)"
scripts/api-fuzz.sh "${PBACKEND_API_FUZZ_EXAMPLES:-10}"
