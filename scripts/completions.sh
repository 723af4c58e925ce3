#!/usr/bin/env bash
# Regenerates the checked-in shell completions in completions/ from the current build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
for pair in bash:pbackend.bash zsh:_pbackend fish:pbackend.fish powershell:_pbackend.ps1; do
  ./target/debug/pbackend completions "${pair%%:*}" >"completions/${pair#*:}"
done
