#!/usr/bin/env bash
# Build the Debian packages apos-edge and apos-hub (packaging/README.md).
#
#   scripts/package.sh [--profile dev|release] [--version X] [--out DIR]
#                      [--no-build] [--bundled-sqlite] [--no-lintian]
#                      [--target TRIPLE]
#
# --profile   Cargo profile of the binaries (default: release; ~50 min on
#             2 cores for DuckDB's C++ alone). CI uses dev.
# --version   Debian version of both packages (default: the workspace
#             version plus revision -1, e.g. 0.1.0-1). Without a revision,
#             "-1" is appended.
# --out       where the .deb files go (default: $TARGET/debian).
# --no-build  package the binaries already in $CARGO_TARGET_DIR/<profile>
#             as they are (whichever SQLite they link).
# --bundled-sqlite
#             build with rusqlite's bundled SQLite (the default for cargo
#             build/test) instead of Debian's libsqlite3; lintian then
#             reports embedded-library (packaging/README.md, "SQLite").
# --no-lintian  skip the lintian run.
# --target    cross-build for TRIPLE (e.g. aarch64-unknown-linux-gnu; see
#             packaging/README.md). The man pages then come from the host's
#             binaries in $CARGO_TARGET_DIR/<profile>/ (built if missing).
#
# Honours CARGO_TARGET_DIR. Prints the paths of the two .deb files last,
# one per line.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

profile=release
version=
out=
build=1
sqlite=system
run_lintian=1
triple=
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=$2; shift 2 ;;
        --profile=*) profile=${1#*=}; shift ;;
        --version) version=$2; shift 2 ;;
        --version=*) version=${1#*=}; shift ;;
        --out) out=$2; shift 2 ;;
        --out=*) out=${1#*=}; shift ;;
        --no-build) build=0; shift ;;
        --bundled-sqlite) sqlite=bundled; shift ;;
        --no-lintian) run_lintian=0; shift ;;
        --target) triple=$2; shift 2 ;;
        --target=*) triple=${1#*=}; shift ;;
        -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$profile" in
    dev) profile_dir=debug ;;
    *) profile_dir=$profile ;;
esac

target=${CARGO_TARGET_DIR:-$ROOT/target}
case "$target" in /*) ;; *) target=$ROOT/$target ;; esac
bin_dir=$target/$profile_dir
host_bin_dir=$bin_dir
target_args=()
arch=$(dpkg --print-architecture)
if [ -n "$triple" ]; then
    bin_dir=$target/$triple/$profile_dir
    target_args=(--target "$triple")
    case "$triple" in
        x86_64-*) arch=amd64 ;;
        aarch64-*) arch=arm64 ;;
        armv7-*|arm-*hf) arch=armhf ;;
        *) echo "package.sh: no Debian architecture known for $triple" >&2; exit 2 ;;
    esac
fi
out=${out:-$target/debian}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ -z "$version" ]; then
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)-1
fi
case "$version" in *-*) ;; *) version=$version-1 ;; esac

log() { echo "package.sh: $*" >&2; }

# Which SQLite a binary links decides the copyright file's SQLite entry
# and whether lintian's embedded-library is expected.
links_sqlite() { readelf -d "$1" 2>/dev/null | grep -q 'NEEDED.*libsqlite3'; }

# 1. The binaries. --no-default-features turns off the `bundled-sqlite`
#    feature of every workspace crate, so rusqlite links Debian's
#    libsqlite3; nothing else changes, so DuckDB is not rebuilt.
#
#    Both variants live side by side in the target directory, and cargo
#    re-links <target>/<profile>/apos-edge to whichever was built last: a
#    `cargo build` or `cargo test` running at the same time (another
#    checkout user, a CI step) can swap it under us. So the binaries are
#    copied to <target>/<profile>/apos-packaging/<pkg>/bin/ right after the
#    build, checked, and packaged from there.
build_bins() {
    local features=()
    [ "$sqlite" = system ] && features=(--no-default-features)
    cargo build --profile "$profile" --workspace "${features[@]}" "${target_args[@]}" \
        --bin apos-edge --bin apos-hub
}
stage_bins() {
    local b
    for b in apos-edge apos-hub; do
        [ -x "$bin_dir/$b" ] || { log "$bin_dir/$b is missing (build it, or drop --no-build)"; return 2; }
        mkdir -p "$bin_dir/apos-packaging/$b/bin"
        cp "$bin_dir/$b" "$bin_dir/apos-packaging/$b/bin/$b.new"
        mv "$bin_dir/apos-packaging/$b/bin/$b.new" "$bin_dir/apos-packaging/$b/bin/$b"
        if [ "$build" = 1 ]; then
            local got=bundled
            links_sqlite "$bin_dir/apos-packaging/$b/bin/$b" && got=system
            [ "$got" = "$sqlite" ] || { log "$b: expected $sqlite SQLite, found $got (swapped by a concurrent build)"; return 1; }
        fi
    done
}
if [ "$build" = 1 ]; then
    log "building apos-edge and apos-hub (profile $profile, SQLite: $sqlite)"
    for attempt in 1 2 3; do
        build_bins
        if stage_bins; then break; fi
        [ "$attempt" = 3 ] && { log "could not stage the binaries"; exit 1; }
    done
else
    stage_bins || exit 1
fi
# Man pages are the same on every architecture: a cross build makes them
# with the host's binaries.
if [ "$host_bin_dir" != "$bin_dir" ]; then
    for b in apos-edge apos-hub; do
        [ -x "$host_bin_dir/$b" ] || cargo build --profile "$profile" --workspace --bin "$b"
    done
fi

# 2. Generated assets, under <target>/<profile>/apos-packaging/<pkg>/: the
#    Cargo.toml asset paths "target/release/apos-packaging/…" are rewritten
#    by cargo-deb to this directory.
changelog_date=$(git log -1 --format=%aD 2>/dev/null || date -R)
source_date_epoch=$(git log -1 --format=%at 2>/dev/null || date +%s)
describe=$(git describe --always --dirty 2>/dev/null || echo unknown)
for pkg in apos-edge apos-hub; do
    crate=${pkg#apos-}
    [ "$crate" = edge ] && crate=edge-node
    gen=$bin_dir/apos-packaging/$pkg
    rm -rf "$gen/man" "$gen/copyright" "$gen/changelog.Debian.gz" "$gen/lintian-overrides"
    mkdir -p "$gen/man"

    # Man pages from the CLI definition (clap_mangen), gzipped as Debian
    # wants them (-n: no name or time stamp, reproducible).
    man_bin=$host_bin_dir/$pkg
    [ "$host_bin_dir" = "$bin_dir" ] && man_bin=$gen/bin/$pkg
    "$man_bin" man --out "$gen/man" >&2
    ls "$gen/man"/*.1 >/dev/null 2>&1 || { log "$pkg man wrote no pages"; exit 1; }
    gzip -9n "$gen/man"/*.1

    if links_sqlite "$gen/bin/$pkg"; then s=system; else s=bundled; fi
    python3 packaging/gen-copyright.py --crate "$crate" --deb "$pkg" --sqlite "$s" \
        ${triple:+--target "$triple"} "$gen/copyright"

    # The changelog: packaging/changelog, plus an entry for this build when
    # the requested version is not its newest entry.
    top=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' packaging/changelog)
    entries=$(grep -c '^apos (' packaging/changelog)
    [ "$top" != "$version" ] && entries=$((entries + 1))
    {
        if [ "$top" != "$version" ]; then
            printf 'apos (%s) bookworm; urgency=medium\n\n' "$version"
            printf '  * Built by scripts/package.sh from %s (profile %s).\n\n' "$describe" "$profile"
            printf ' -- APOS maintainers <apos@example.invalid>  %s\n\n' "$changelog_date"
        fi
        cat packaging/changelog
    } | gzip -9n >"$gen/changelog.Debian.gz"

    # Lintian overrides (explained in packaging/README.md, "Lintian"), each
    # only when its tag can fire, so that none is reported unused.
    {
        cat "deb/$pkg/lintian-overrides" 2>/dev/null || true
        if [ "$entries" = 1 ] && [ "${version##*-}" = 1 ]; then
            echo "# Not for the Debian archive: there is no ITP bug to close."
            echo "$pkg: initial-upload-closes-no-bugs"
        fi
        if [ "$s" = bundled ]; then
            echo "# rusqlite's bundled SQLite (scripts/package.sh --bundled-sqlite or --no-build"
            echo "# of test binaries); packaging/README.md, \"SQLite\"."
            echo "$pkg: embedded-library sqlite [usr/bin/$pkg]"
        fi
    } >"$gen/lintian-overrides"
done

# cargo-deb writes no DEBIAN/md5sums; dpkg --verify and debsums need it.
# Unpack, add it (conffiles excluded, as dh_md5sums does: dpkg tracks
# their hashes itself) and pack again with the same compression.
add_md5sums() {
    local deb=$1 tmp
    tmp=$(mktemp -d)
    dpkg-deb -R "$deb" "$tmp/root"
    (
        cd "$tmp/root"
        find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
            while read -r f; do
                grep -qxF "/$f" DEBIAN/conffiles 2>/dev/null || md5sum "$f"
            done >DEBIAN/md5sums
    )
    chmod 0644 "$tmp/root/DEBIAN/md5sums"
    # A cross build's dpkg-shlibdeps names the dependencies "libc6:arm64";
    # within an arm64 package the qualifier says nothing and is dropped.
    sed -i "/^Depends:/s/:$arch\b//g" "$tmp/root/DEBIAN/control"
    touch -r "$tmp/root/usr" "$tmp/root"
    SOURCE_DATE_EPOCH=$source_date_epoch \
        dpkg-deb --root-owner-group -Zxz --build "$tmp/root" "$deb" >/dev/null
    rm -rf "$tmp"
}

# 3. The packages. --no-build: cargo-deb takes the binaries from
#    $target/$profile_dir; --strip: Debian ships stripped executables
#    (the profiles keep line tables for backtraces in development).
debs=()
for pkg in apos-edge apos-hub; do
    crate_dir=edge-node
    [ "$pkg" = apos-hub ] && crate_dir=hub
    deb=$out/${pkg}_${version}_$arch.deb
    rm -f "$deb"
    log "cargo deb $pkg $version"
    # cargo-deb warns that the dev profile is unsupported; CI packages the
    # dev binaries on purpose (the issue's CI budget), so the warning is
    # expected there. --fast: add_md5sums compresses the result again.
    cargo deb --manifest-path "$crate_dir/Cargo.toml" --profile "$profile" --no-build \
        "${target_args[@]}" --fast --strip --deb-version "$version" --output "$deb" >&2
    add_md5sums "$deb"
    debs+=("$deb")
done

if [ "$run_lintian" = 1 ]; then
    if command -v lintian >/dev/null 2>&1; then
        # --fail-on error: warnings are explained in packaging/README.md.
        lintian --fail-on error --info --display-info --no-tag-display-limit "${debs[@]}" >&2
    else
        log "lintian not installed; skipped"
    fi
fi

printf '%s\n' "${debs[@]}"
