#!/usr/bin/env bash
# Check the systemd units without a running systemd:
#   packaging/check-units.sh                  the units in packaging/systemd
#   packaging/check-units.sh --root DIR       the units, binaries and man pages
#                                             of packages extracted into DIR
#                                             (dpkg-deb -x apos-edge_….deb DIR)
#
# 1. `systemd-analyze verify` in a scratch root: a copy of this machine's
#    units (for the targets ours are ordered against), ours, /bin/kill and
#    the binaries (verify checks that the ExecStart= paths exist in the
#    root): stand-ins from /bin/true, or with --root the packaged ones, and
#    then the Documentation= man pages are checked too (MANPATH points into
#    the root). Any output fails: verify exits 0 on warnings such as an
#    unknown key.
# 2. `systemd-analyze security --offline=yes`: prints each unit's exposure
#    and fails above the limits of issue 18 (edge 1.5, hub 1.2).
set -euo pipefail

pkgroot=
dir=$(dirname "$0")/systemd
case "${1:-}" in
    --root) pkgroot=$(cd "$2" && pwd); dir=$pkgroot/lib/systemd/system ;;
    "") ;;
    *) dir=$1 ;;
esac

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root/usr/bin" "$root/bin" "$root/lib/systemd/system"
if [ -n "$pkgroot" ]; then
    # Hard links: the binaries are large and only need to exist.
    cp -al "$pkgroot/." "$root/"
fi
cp -an /lib/systemd/system/. "$root/lib/systemd/system/" 2>/dev/null || true
for u in apos-edge apos-hub; do
    [ -n "$pkgroot" ] || cp "$dir/$u.service" "$root/lib/systemd/system/"
    [ -e "$root/usr/bin/$u" ] || cp /bin/true "$root/usr/bin/$u"
done
cp /bin/kill "$root/bin/kill"

man=(--man=no)
if [ -n "$pkgroot" ]; then
    man=()
    export MANPATH=$root/usr/share/man
fi

status=0
out=$(systemd-analyze verify "${man[@]}" --root="$root" \
    /lib/systemd/system/apos-edge.service /lib/systemd/system/apos-hub.service 2>&1) || status=1
if [ -n "$out" ]; then
    echo "$out" >&2
    status=1
fi
[ "$status" = 0 ] && echo "verify: OK${pkgroot:+ (packaged binaries and man pages)}"

for pair in apos-edge:1.5 apos-hub:1.2; do
    u=${pair%%:*}
    limit=${pair#*:}
    score=$(systemd-analyze security --offline=yes --no-pager "$dir/$u.service" 2>/dev/null |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -z "$score" ]; then
        echo "security: no score for $u" >&2
        status=1
        continue
    fi
    if awk -v s="$score" -v l="$limit" 'BEGIN { exit !(s <= l) }'; then
        echo "security: $u exposure $score (limit $limit)"
    else
        echo "security: $u exposure $score is above $limit" >&2
        status=1
    fi
done
exit "$status"
