#!/usr/bin/env bash
# Checks reference/deploy/pbackend.service with `systemd-analyze verify`, without root.
#
#   reference/deploy/check-unit.sh [PATH-TO-PBACKEND]    (default: target/release/pbackend)
#
# verify refuses a unit whose ExecStart= program does not exist, so the check runs on a
# temporary copy whose ExecStart= names the given binary instead of /usr/local/bin/pbackend.
# Any other Exec*= program missing on this machine (ExecReload's /bin/kill comes with
# procps, absent from some minimal images) is swapped for /bin/sh with a note, so the rest
# of the unit is still checked.
#
# Exit status: 0 clean (or systemd-analyze absent: skipped, with a message), 1 when verify
# fails or says anything about the unit itself, 2 usage error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
unit="$here/pbackend.service"
bin=${1:-target/release/pbackend}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check-unit: systemd-analyze not found; skipping the unit check" \
         "(Debian/Ubuntu: apt-get install systemd)" >&2
    exit 0
fi
if [[ ! -x $bin ]]; then
    echo "check-unit: $bin is not an executable file; build it first or pass its path" >&2
    exit 2
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The copy keeps the unit's name: verify derives the unit's type and name from it.
copy="$tmp/pbackend.service"

# Rewrite the Exec*= lines; everything else is copied as it is.
while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ ^(Exec[A-Za-z]+=)([-@:+!]*)([^[:space:]]+)(.*)$ ]]; then
        key=${BASH_REMATCH[1]} prefix=${BASH_REMATCH[2]} prog=${BASH_REMATCH[3]} rest=${BASH_REMATCH[4]}
        if [[ $key == ExecStart= ]]; then
            prog=$bin
        elif [[ ! -x $prog ]]; then
            echo "check-unit: note: $prog ($key) is missing here; checking with /bin/sh in its place" >&2
            prog=/bin/sh
        fi
        line="$key$prefix$prog$rest"
    fi
    printf '%s\n' "$line"
done <"$unit" >"$copy"

status=0
out=$(systemd-analyze verify --man=no "$copy" 2>&1) || status=$?
if [[ -n $out ]]; then
    printf '%s\n' "$out" | sed "s|$copy|pbackend.service|g" >&2
fi
if (( status != 0 )); then
    echo "check-unit: systemd-analyze verify failed (exit $status)" >&2
    exit 1
fi
# verify exits 0 on warnings (an unknown or misspelt setting is only a warning); anything
# said about our unit counts as a failure. Lines about other units (the host's own) do not.
if grep -qF -- "$copy" <<<"$out"; then
    echo "check-unit: systemd-analyze verify reported problems in pbackend.service" >&2
    exit 1
fi
echo "check-unit: pbackend.service verified"
