#!/usr/bin/env bash
# The packaging test (issue 18): build the .debs from the dev-profile
# binaries, lintian, systemd-analyze, install into a clean Debian 12 root,
# run as the units do, sync, journald fields, upgrade with a backlog,
# remove and purge. Needs root. Details: tests/packaging/README.md.
#
#   cargo build --profile dev --workspace --bins
#   sudo bash tests/packaging/run.sh [--keep-root] [--artifacts DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# tomllib: Python >= 3.11 (Debian 12's python3).
exec python3 tests/packaging/main.py "$@"
