#!/usr/bin/env bash
# Property-based API fuzzing from our own served OpenAPI document: schemathesis (PyPI, pinned)
# runs every operation against a real `pbackend serve` (temp database, random port, an
# organization with a stack, a team, a webhook and a finished update so that paths resolve),
# checking that nothing answers 5xx, every status and content type is documented, and every
# error has the Pulumi shape.
#
# Usage: scripts/api-fuzz.sh [EXAMPLES]   (default 10 per operation: the CI run; longer runs
#                                         go to reference/reliability.md)
# Installs schemathesis into ${PBACKEND_SCHEMATHESIS_DIR:-~/.cache/pbackend-schemathesis}.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES=${1:-10}
VERSION=4.32.5
VENV=${PBACKEND_SCHEMATHESIS_DIR:-$HOME/.cache/pbackend-schemathesis}
if [ ! -x "$VENV/bin/schemathesis" ]; then
  echo "api-fuzz.sh: installing schemathesis $VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$VERSION" >&2
fi

cargo build --locked --quiet
BIN=${CARGO_TARGET_DIR:-target}/debug/pbackend
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=pul-api-fuzz
"$BIN" serve --addr "127.0.0.1:$PORT" --db "$WORK/db.sqlite" --single-tenant-token "$TOKEN" \
  --rate-limit off --webhooks-allow-loopback >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
URL="http://127.0.0.1:$PORT"
for _ in $(seq 50); do curl -sf "$URL/api/capabilities" >/dev/null && break; sleep 0.1; done

api() { curl -sf -X "$1" -H "Authorization: token $TOKEN" -H 'Content-Type: application/json' "$URL$2" ${3:+-d "$3"}; }
api POST /api/stacks/organization/proj '{"stackName":"dev"}' >/dev/null
api POST /api/orgs/organization/hooks \
  "{\"organizationName\":\"organization\",\"name\":\"hook\",\"displayName\":\"h\",\"payloadUrl\":\"$URL/nowhere\",\"active\":true}" >/dev/null

# Path parameters name what exists, so that operations reach their logic instead of a 404.
cat >"$WORK/schemathesis.toml" <<TOML
[parameters]
"path.orgName" = "organization"
"path.projectName" = "proj"
"path.stackName" = "dev"
"path.hookName" = "hook"
TOML

started=$(date +%s)
set +e
# From the temp dir: schemathesis keeps a cache directory where it runs.
cd "$WORK"
"$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run "$URL/api/openapi/pulumi-spec.json" \
  -H "Authorization: token $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$EXAMPLES" --seed "${PBACKEND_FUZZ_SEED:-1}" --request-timeout 20 --workers 2 \
  --suppress-health-check all
rc=$?
set -e
cd - >/dev/null
echo "api-fuzz.sh: $EXAMPLES examples per operation in $(( $(date +%s) - started )) s, exit $rc" >&2
if grep -q "panicked" "$WORK/server.log"; then
  echo "api-fuzz.sh: the server log has a panic:" >&2
  grep -A3 panicked "$WORK/server.log" >&2
  exit 1
fi
exit $rc
