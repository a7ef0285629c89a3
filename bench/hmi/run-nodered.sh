#!/usr/bin/env bash
# Node-RED + Dashboard 2 peer of the HMI fan-out bench. See README.md.
#   ./run-nodered.sh [DURATION_S=60] [--clients 20] [--mode per-update|coalesce] [--rate 1000] ...
# Prints one JSON line on stdout; progress and a table on stderr.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/node-red ] || [ ! -d node_modules/@flowfuse/node-red-dashboard ]; then
    echo "run-nodered.sh: dependencies missing: run 'npm ci' in $(pwd) first" >&2
    exit 1
fi
exec node run-nodered.mjs "$@"
