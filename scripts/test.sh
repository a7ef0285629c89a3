#!/usr/bin/env bash
# The one test command (README, CI): installs or checks the independent
# peers the tests talk to, then runs every test of the workspace.
#
#   scripts/test.sh                          # everything
#   scripts/test.sh -p drivers               # extra arguments go to `cargo test`
#   scripts/test.sh -p apos --test e2e modbus_tcp::
#   scripts/test.sh -- --nocapture
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

say() { printf '==> %s\n' "$*"; }

# --- Debian packages: socat makes the PTY pairs for Modbus RTU tests.
need_apt=()
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# mosquitto: the external broker of the sync tests (not started as a service).
[ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
# openssl CLI: the TLS tests make their CA and certificates with it.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# ip (network namespaces) and iptables: the OPC UA partition test drops
# packets inside a namespace of its own (needs root).
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
# chromium: the browser of the HMI's end-to-end tests (tests/browser).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if ((${#need_apt[@]})); then
    say "installing ${need_apt[*]} (apt)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# --- Python peers (pymodbus) in a venv, refreshed when requirements change.
REQ=tests/peers/requirements.txt
STAMP=.venv/.requirements.sha256
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    if [ -x .venv/bin/python ]; then what=updating; else what=creating; fi
    say "$what .venv: $(grep -v '^#' "$REQ" | tr '\n' ' ')"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r "$REQ"
    echo "$want" > "$STAMP"
fi
# --- node-opcua, the second independent OPC UA stack, pinned by package-lock.json.
NODE_DIR=tests/peers/node
NSTAMP=$NODE_DIR/node_modules/.lock.sha256
nwant=$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$NSTAMP" 2>/dev/null)" != "$nwant" ]; then
    say "installing node-opcua (npm ci in $NODE_DIR)"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$nwant" > "$NSTAMP"
fi
# --- playwright-core + axe-core for the HMI browser tests, pinned by package-lock.json
# (no browser download: the tests drive Debian's /usr/bin/chromium).
BROWSER_DIR=tests/browser
BSTAMP=$BROWSER_DIR/node_modules/.lock.sha256
bwant=$(sha256sum "$BROWSER_DIR/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$BSTAMP" 2>/dev/null)" != "$bwant" ]; then
    say "installing playwright-core and axe-core (npm ci in $BROWSER_DIR)"
    (cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$bwant" > "$BSTAMP"
fi

export APOS_PYTHON="$ROOT/.venv/bin/python"
export APOS_PEERS_DIR="$ROOT/tests/peers"
say "peers: mosquitto $(/usr/sbin/mosquitto -h 2>/dev/null | sed -n 's/^mosquitto version \([^ ]*\).*/\1/p'), socat $(socat -V 2>/dev/null | sed -n 's/^socat version \([^ ]*\).*/\1/p'), pymodbus $("$APOS_PYTHON" -c 'import pymodbus; print(pymodbus.__version__)'), asyncua $("$APOS_PYTHON" -c 'import importlib.metadata as m; print(m.version("asyncua"))'), node $(node --version), node-opcua $(node -p 'require("./'"$NODE_DIR"'/node_modules/node-opcua/package.json").version')"

# Cargo lets --workspace override -p and --all-targets override --test, so
# the defaults apply only when the arguments (before `--`) select nothing.
scope=(--workspace --all-targets)
for arg in "$@"; do
    case "$arg" in
        --) break ;;
        -p* | --package* | --workspace | --all) scope=("${scope[@]/--workspace/}") ;;
        --lib | --bin* | --test* | --example* | --bench* | --all-targets | --doc) scope=("${scope[@]/--all-targets/}") ;;
    esac
done
read -r -a scope <<<"${scope[*]}"
# `--profile dev`: the tests share every dependency build with `cargo run`
# (the demo) and `cargo clippy`; under cargo's default `test` profile DuckDB's
# bundled C++ (~30 min on 2 cores) would be compiled a second time.
say "cargo test --profile dev ${scope[*]} $*"
exec cargo test --profile dev "${scope[@]}" "$@"
