#!/usr/bin/env bash
# The long crash loops whose figures go to reference/reliability.md (CI runs short ones):
#   1. tests/crash_loop.rs: concurrent journaled and delta-mode updates over HTTP while the
#      server is SIGKILLed at random moments and restarted; after each restart every
#      acknowledged write is in the state and `pbackend verify` is clean.
#   2. tests/cli_crash.rs: the real CLI's `pulumi up` (300 resources) with the server
#      SIGKILLed mid-update and restarted, round after round.
#
# Usage: scripts/crash-loop.sh [ROUNDS=100] [WORKERS=20] [CLI_ROUNDS=10]
# PBACKEND_TEST_DB=postgres runs both on PostgreSQL instead of SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-100}
WORKERS=${2:-20}
CLI_ROUNDS=${3:-10}
echo "== crash loop: $ROUNDS kills, $WORKERS concurrent updates (${PBACKEND_TEST_DB:-sqlite})"
start=$(date +%s)
PBACKEND_CRASH_ROUNDS=$ROUNDS PBACKEND_CRASH_WORKERS=$WORKERS \
  cargo test --locked --release --test crash_loop -- --nocapture 2>&1 | grep -E -A2 "crash loop|test result|panicked"
echo "   $(( $(date +%s) - start )) s"
echo "== real-CLI crash loop: $CLI_ROUNDS rounds"
start=$(date +%s)
PBACKEND_CLI_CRASH_ROUNDS=$CLI_ROUNDS \
  cargo test --locked --release --test cli_crash -- --nocapture 2>&1 | grep -E -A2 "CLI crash loop|test result|panicked"
echo "   $(( $(date +%s) - start )) s"
