#!/usr/bin/env bash
# Times backup and restore of an instance of many stacks, with the release build:
#
#   scripts/backup-bench.sh [STACKS] [VERSIONS] [RESOURCES]     (default 100 3 1000)
#
# A server on a temp SQLite database gets STACKS stacks, each imported VERSIONS times with a
# state of RESOURCES resources (~450 bytes each, half of it random hex, so that compression
# is no better than on real states). Then, with the server
# still running, `pbackend backup --to DIR`; then, the server stopped, `pbackend restore DIR`
# into a new database and `pbackend verify` of it. Prints one table (figures for
# reference/operations.md).
set -euo pipefail
cd "$(dirname "$0")/.."
STACKS=${1:-100} VERSIONS=${2:-3} RESOURCES=${3:-1000}
cargo build --release --locked --quiet
BIN=$PWD/target/release/pbackend
KEY=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
TOKEN=pul-backup-bench-token
work=$(mktemp -d)
trap 'kill "${srv:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --db "$work/src.db" --addr "127.0.0.1:$port" --master-key "$KEY" \
  --single-tenant-token "$TOKEN" --rate-limit off --log-level warn >"$work/serve.log" 2>&1 &
srv=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/capabilities" >/dev/null && break; sleep 0.1; done

python3 - "$port" "$TOKEN" "$STACKS" "$VERSIONS" "$RESOURCES" <<'PY'
import json, os, sys, urllib.request
port, token, stacks, versions, resources = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
base = f"http://127.0.0.1:{port}/api/stacks/organization"
def call(method, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json",
                 "Accept": "application/vnd.pulumi+8"})
    urllib.request.urlopen(req).read()
for s in range(stacks):
    project, stack = f"proj{s % 10}", f"stack{s}"
    call("POST", f"/{project}", {"stackName": stack})
    for v in range(versions):
        root = f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack::{project}-{stack}"
        res = [{"urn": root, "custom": False, "type": "pulumi:pulumi:Stack", "outputs": {}}]
        for i in range(resources):
            val = f"v{v}-{i}-" + os.urandom(48).hex()  # incompressible, like ids and hashes
            res.append({"urn": f"urn:pulumi:{stack}::{project}::pbtest:index:Item::r{i}",
                        "custom": True, "id": f"id-{i}", "type": "pbtest:index:Item",
                        "inputs": {"value": val}, "outputs": {"value": val, "n": i},
                        "parent": root})
        call("POST", f"/{project}/{stack}/import", {"version": 3, "deployment": {
            "manifest": {"time": "2026-01-01T00:00:00Z", "magic": "", "version": ""},
            "resources": res}})
PY

db_bytes=$(du -b "$work/src.db" | cut -f1)
t0=$(date +%s.%N)
"$BIN" backup --db "$work/src.db" --to "$work/sets" --output json >"$work/backup.json"
t1=$(date +%s.%N)
kill "$srv"; wait "$srv" 2>/dev/null || true
t2=$(date +%s.%N)
echo "$KEY" >"$work/key"
"$BIN" restore "$work/sets" --db "$work/restored.db" --master-key-file "$work/key" --quiet >/dev/null
t3=$(date +%s.%N)
"$BIN" verify --db "$work/restored.db" --master-key-file "$work/key" --quiet >/dev/null
t4=$(date +%s.%N)
archive=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["backup"]["bytes"])' "$work/backup.json")
records=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["records"])' "$work/backup.json")
printf '| stacks | versions each | resources each | database | archive | records | backup (serving) | restore | verify restored |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
printf '| %s | %s | %s | %.1f MB | %.1f MB | %s | %.2f s | %.2f s | %.2f s |\n' "$STACKS" "$VERSIONS" "$RESOURCES" \
  "$(echo "$db_bytes/1000000" | bc -l)" "$(echo "$archive/1000000" | bc -l)" "$records" \
  "$(echo "$t1-$t0" | bc -l)" "$(echo "$t3-$t2" | bc -l)" "$(echo "$t4-$t3" | bc -l)"
