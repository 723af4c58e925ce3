#!/usr/bin/env bash
# Installs the real parts the tests start themselves, from the distribution's packages:
# PostgreSQL's server binaries (the tests run initdb + pg_ctl in a temp directory, as the
# `postgres` user, on a random port), HAProxy (two replicas behind a real proxy; a proxy for
# --trusted-proxies), Prometheus (for `promtool check metrics`), systemd
# (`systemd-analyze verify` of the unit in reference/deploy), and Chromium with chromedriver
# (the console's browser tests).
# Needs root (or sudo) and apt; elsewhere it says what is missing and the tests that need
# those parts skip, saying so.
#
# Also a real OpenID provider for the login tests: npm `oidc-provider` (pinned) into
# $PBACKEND_OIDC_DIR (default ~/.cache/pbackend-oidc), run on the machine's Node; and a real
# S3-compatible server for the backup tests: PyPI `moto[server]` (pinned) into
# $PBACKEND_S3_VENV (default ~/.cache/pbackend-s3/venv).
set -euo pipefail

OIDC_VERSION=9.13.3
OIDC_DIR=${PBACKEND_OIDC_DIR:-$HOME/.cache/pbackend-oidc}
if [ ! -f "$OIDC_DIR/node_modules/oidc-provider/package.json" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "test-deps.sh: installing oidc-provider@$OIDC_VERSION into $OIDC_DIR" >&2
    mkdir -p "$OIDC_DIR"
    [ -f "$OIDC_DIR/package.json" ] || echo '{"name":"pbackend-oidc","private":true}' >"$OIDC_DIR/package.json"
    (cd "$OIDC_DIR" && npm install --no-audit --no-fund --silent "oidc-provider@$OIDC_VERSION" >&2)
  else
    echo "test-deps.sh: no npm; the OpenID login tests will skip" >&2
  fi
fi

# An S3-compatible server for the backup tests: moto's standalone server, from PyPI, pinned.
MOTO_VERSION=5.2.6
S3_VENV=${PBACKEND_S3_VENV:-$HOME/.cache/pbackend-s3/venv}
if [ ! -x "$S3_VENV/bin/moto_server" ]; then
  if command -v python3 >/dev/null 2>&1; then
    echo "test-deps.sh: installing moto[server]==$MOTO_VERSION into $S3_VENV" >&2
    python3 -m venv "$S3_VENV" >&2
    "$S3_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  else
    echo "test-deps.sh: no python3; the S3 backup test will skip" >&2
  fi
fi

need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The console's browser tests: Chromium and its WebDriver.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0

SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
if ! command -v apt-get >/dev/null 2>&1; then
  echo "test-deps.sh: no apt-get; install ${need[*]} yourself or those tests skip" >&2
  exit 0
fi
echo "test-deps.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The package would create and start a cluster of its own; the tests make theirs.
"${SUDO[@]}" mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" | "${SUDO[@]}" tee /etc/postgresql-common/createcluster.d/pbackend-tests.conf >/dev/null
"${SUDO[@]}" apt-get update -qq >&2 || true
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
