#!/usr/bin/env bash
# The one test command (README, CI): installs or checks the independent
# peers the tests talk to, then runs every test of the workspace.
#
#   scripts/test.sh                          # everything
#   scripts/test.sh -p drivers               # extra arguments go to `cargo test`
#   scripts/test.sh -p apos --test e2e modbus_tcp::
#   scripts/test.sh -- --nocapture
#
# A full run (no arguments) then runs the packaging test
# (tests/packaging/run.sh: builds the .debs from the dev binaries, installs
# them in a Debian 12 root, upgrade, purge; needs root). APOS_PACKAGING=1
# runs it after a selective run too, APOS_PACKAGING=0 skips it.
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
# groff and lexgrog (man-db): the man-page tests render every generated page.
command -v groff >/dev/null 2>&1 || need_apt+=(groff-base)
command -v lexgrog >/dev/null 2>&1 || need_apt+=(man-db)
# pdftotext (poppler-utils): the report test reads the PDF Chromium printed.
command -v pdftotext >/dev/null 2>&1 || need_apt+=(poppler-utils)
# The packaging test's tools, only when it will run: lintian, debootstrap
# (the clean Debian 12 root), systemd-analyze (verify, security),
# systemd-nspawn (the root booted with systemd as PID 1), zstd (the cached
# root), setpriv (util-linux), readelf (scripts/package.sh).
packaging=${APOS_PACKAGING:-}
if [ -z "$packaging" ]; then
    if [ $# -eq 0 ]; then packaging=1; else packaging=0; fi
fi
if [ "$packaging" = 1 ]; then
    command -v lintian >/dev/null 2>&1 || need_apt+=(lintian)
    command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
    command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
    command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
    command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
    command -v readelf >/dev/null 2>&1 || need_apt+=(binutils)
    command -v systemd-nspawn >/dev/null 2>&1 || need_apt+=(systemd-container)
fi
if ((${#need_apt[@]})); then
    say "installing ${need_apt[*]} (apt)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# --- cargo-deb, which scripts/package.sh drives (pinned: its asset handling
# changes between releases).
CARGO_DEB_VERSION=3.8.0
if [ "$packaging" = 1 ] && [ "$(cargo deb --version 2>/dev/null | awk '{print $NF}')" != "$CARGO_DEB_VERSION" ]; then
    say "installing cargo-deb $CARGO_DEB_VERSION (cargo install)"
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
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
if [ "$packaging" != 1 ]; then
    exec cargo test --profile dev "${scope[@]}" "$@"
fi
cargo test --profile dev "${scope[@]}" "$@"

# --- The packaging test, on the binaries the tests just used (a no-op build
# when they are current). Its exit status is the script's.
say "cargo build --profile dev --workspace --bins (for the packages)"
cargo build --profile dev --workspace --bins
say "packaging test: bash tests/packaging/run.sh"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -E"
exec $SUDO bash tests/packaging/run.sh
