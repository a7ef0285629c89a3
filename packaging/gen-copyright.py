#!/usr/bin/env python3
"""Write a package's debian/copyright (DEP-5) from what its binary contains.

    gen-copyright.py --crate edge-node --deb apos-edge [--sqlite bundled|system] OUT

A Rust executable is statically linked: it contains APOS's own code and
every crate of its normal dependency graph (`cargo tree -e normal`), and the
C/C++ libraries some of them bundle (DuckDB for the hub, SQLite when
rusqlite's `bundled` feature is on, AWS-LC for rustls). The crate list is
taken from Cargo at package time so it cannot drift from Cargo.lock.

For a crate offered under a choice ("MIT OR Apache-2.0"), the license used
here is the first of PREFERENCE that the expression allows; "A AND B"
keeps both. Every license named gets a standalone paragraph: a pointer to
/usr/share/common-licenses where Debian has the text, else the text from
packaging/licenses/.
"""

import argparse
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent

# SPDX id -> Debian short name.
DEBIAN_NAME = {
    "MIT": "Expat",
    "Apache-2.0": "Apache-2.0",
    "BSD-3-Clause": "BSD-3-clause",
    "BSD-2-Clause": "BSD-2-clause",
    "ISC": "ISC",
    "Zlib": "Zlib",
    "Unicode-3.0": "Unicode-3.0",
    "MPL-2.0": "MPL-2.0",
    "CC0-1.0": "CC0-1.0",
}
# Licenses an appliance sold to customers cannot carry in a statically
# linked binary (the AGPL reaches the whole program and its network users;
# evalexpr 12+ is AGPL-3.0-only, so the workspace stays on 11.x). A crate
# offering one of these only is refused, so a dependency bump cannot slip
# one in: packaging fails instead.
REFUSED = {"AGPL-3.0-only", "AGPL-3.0-or-later", "AGPL-3.0", "GPL-2.0-only",
           "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later", "GPL-2.0", "GPL-3.0"}
# Order of choice for "A OR B": licenses whose text Debian ships first,
# then permissive ones, copyleft last.
PREFERENCE = [
    "Apache-2.0", "MIT", "BSD-3-Clause", "ISC", "Zlib", "BSD-2-Clause",
    "Unicode-3.0", "CC0-1.0", "MPL-2.0",
]
COMMON = {
    "Apache-2.0": "Apache-2.0",
    "MPL-2.0": "MPL-2.0",
    "CC0-1.0": "CC0-1.0",
}
TEXT_FILE = {
    "Expat": "Expat",
    "BSD-3-clause": "BSD-3-clause",
    "BSD-2-clause": "BSD-2-clause",
    "ISC": "ISC",
    "Zlib": "Zlib",
    "Unicode-3.0": "Unicode-3.0",
    "public-domain": "public-domain-sqlite",
}


def tokens(expr):
    expr = expr.replace("/", " OR ")
    return re.findall(r"\(|\)|[A-Za-z0-9.+-]+", expr)


def parse(toks):
    """SPDX expression -> list of alternatives, each a set of SPDX ids."""

    def alt_expr(i):
        alts, i = and_expr(i)
        while i < len(toks) and toks[i].upper() == "OR":
            more, i = and_expr(i + 1)
            alts = alts + more
        return alts, i

    def and_expr(i):
        alts, i = atom(i)
        while i < len(toks) and toks[i].upper() == "AND":
            more, i = atom(i + 1)
            alts = [a | b for a in alts for b in more]
        return alts, i

    def atom(i):
        if toks[i] == "(":
            alts, i = alt_expr(i + 1)
            return alts, i + 1  # ")"
        lic = toks[i]
        i += 1
        if i < len(toks) and toks[i].upper() == "WITH":
            lic = f"{lic} WITH {toks[i + 1]}"
            i += 2
        return [frozenset([lic])], i

    alts, _ = alt_expr(0)
    return alts


def rank(lic):
    return PREFERENCE.index(lic) if lic in PREFERENCE else len(PREFERENCE)


def choose(expr):
    alts = parse(tokens(expr))
    allowed = [s for s in alts if not s & REFUSED]
    if not allowed:
        sys.exit(f"gen-copyright: {expr!r} is a license the packages cannot carry "
                 "(copyleft over the whole binary); pin a version under another license "
                 "or replace the crate")
    best = min(allowed, key=lambda s: (max(rank(l) for l in s), len(s)))
    unknown = [l for l in best if l not in DEBIAN_NAME]
    if unknown:
        sys.exit(f"gen-copyright: no Debian name for {unknown} (from {expr!r}); add it")
    return " and ".join(sorted(DEBIAN_NAME[l] for l in best))


def cargo(*args):
    return subprocess.run(["cargo", *args], check=True, capture_output=True, text=True).stdout


def crates(crate, no_default, target):
    args = ["tree", "--offline", "-p", crate, "-e", "normal", "--prefix", "none",
            "-f", "{p}|{l}", "--target", target]
    if no_default:
        args.append("--no-default-features")
    out = set()
    for line in cargo(*args).splitlines():
        line = line.replace(" (*)", "").replace(" (proc-macro)", "").strip()
        if not line or "(/" in line:  # workspace crates: APOS's own code
            continue
        name_ver, _, lic = line.partition("|")
        name, ver = name_ver.split(" v", 1)
        out.add((name, ver, lic))
    return sorted(out)


def authors_of(target):
    # --filter-platform: other platforms' crates need not be downloaded.
    meta = json.loads(cargo("metadata", "--offline", "--format-version", "1",
                            "--filter-platform", target))
    return {(p["name"], p["version"]): p.get("authors") or [] for p in meta["packages"]}


def field(name, lines):
    """A DEP-5 multi-line field: first line after the name, the rest indented."""
    first, *rest = lines
    out = f"{name}: {first}\n"
    for l in rest:
        out += f" {l}\n" if l.strip() else " .\n"
    return out


def wrap(words, width=76):
    """Whitespace-separated words as lines of at most `width` characters."""
    lines, cur = [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    return lines + [cur]


def license_paragraph(name):
    if name in COMMON.values():
        return (f"License: {name}\n On Debian systems, the full text of this license can be found in\n"
                f" /usr/share/common-licenses/{name}.\n")
    text = (HERE / "licenses" / TEXT_FILE[name]).read_text().strip("\n").splitlines()
    return field("License", [name] + text)


DUCKDB_THIRD_PARTY = """\
DuckDB's amalgamated sources include third-party code (third_party/ in
the DuckDB repository): brotli (Expat), concurrentqueue (BSD-2-clause or
BSL-1.0), fast_float (Apache-2.0 or Expat or BSL-1.0), fastpforlib
(Apache-2.0), fmt (Expat), fsst (Expat), cpp-httplib (Expat), hyperloglog
from Redis (BSD-3-clause), jaro_winkler (Expat), lz4 (BSD-2-clause),
mbedtls (Apache-2.0), miniz (Expat), parquet and thrift (Apache-2.0), pcg
(Apache-2.0), pdqsort (Zlib), re2 (BSD-3-clause), ska_sort (BSL-1.0),
skiplist (Expat), snappy (BSD-3-clause), tdigest (Apache-2.0), utf8proc
(Expat), vergesort (Expat), yyjson (Expat), zstd (BSD-3-clause)."""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crate", required=True)
    ap.add_argument("--deb", required=True)
    ap.add_argument("--sqlite", choices=["bundled", "system"], default="bundled")
    ap.add_argument("--target", help="Rust target triple (default: the host's)")
    ap.add_argument("out")
    a = ap.parse_args()

    target = a.target or re.search(r"^host: (\S+)$", subprocess.run(
        ["rustc", "-vV"], check=True, capture_output=True, text=True).stdout, re.M).group(1)
    listed = crates(a.crate, a.sqlite == "system", target)
    authors = authors_of(target)
    names = {n for n, _, _ in listed}

    groups = defaultdict(list)
    for name, ver, lic in listed:
        if not lic:
            sys.exit(f"gen-copyright: crate {name} {ver} states no license")
        groups[choose(lic)].append((name, ver, lic))

    used = {"Apache-2.0"}
    doc = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    doc += "Upstream-Name: APOS\n"
    doc += "Source: https://example.invalid/apos\n"
    comment = [
        f"{a.deb} is a statically linked Rust program. Besides APOS's own code",
        "(Files: *), the executable contains the Rust crates listed below",
        "(Files: rust/<crate>-<version>/*, as in Cargo.lock) and the C/C++",
        "libraries some of them bundle. Where a crate offers a choice of",
        "licenses, the license applied here is named; the crate's own",
        "expression follows its name in the Copyright field.",
        f"Generated by packaging/gen-copyright.py from `cargo tree -p {a.crate}`.",
    ]
    doc += field("Comment", comment) + "\n"

    doc += "Files: *\nCopyright: 2025-2026 The APOS authors\nLicense: Apache-2.0\n\n"

    if "libduckdb-sys" in names:
        ver = next(v for n, v, _ in listed if n == "libduckdb-sys")
        doc += f"Files: rust/libduckdb-sys-{ver}/duckdb/*\n"
        doc += "Copyright: 2018-2025 Stichting DuckDB Foundation\n"
        doc += "License: Expat\n"
        doc += field("Comment", ["DuckDB, bundled by the duckdb crate (feature \"bundled\"),",
                                 "compiled from source and linked statically.", ""]
                     + DUCKDB_THIRD_PARTY.splitlines()) + "\n"
        used.add("Expat")

    if "libsqlite3-sys" in names and a.sqlite == "bundled":
        ver = next(v for n, v, _ in listed if n == "libsqlite3-sys")
        doc += f"Files: rust/libsqlite3-sys-{ver}/sqlite3/*\n"
        doc += "Copyright: none (public domain)\n"
        doc += "License: public-domain\n"
        doc += field("Comment", ["SQLite, bundled by rusqlite's feature \"bundled\" and linked",
                                 "statically."]) + "\n"
        used.add("public-domain")

    if "aws-lc-sys" in names:
        ver = next(v for n, v, _ in listed if n == "aws-lc-sys")
        doc += f"Files: rust/aws-lc-sys-{ver}/aws-lc/*\n"
        doc += "Copyright: Amazon.com, Inc. or its affiliates; the OpenSSL and BoringSSL authors\n"
        doc += "License: ISC and Apache-2.0 and Expat and BSD-3-clause\n"
        doc += field("Comment", ["AWS-LC (rustls' cryptography), compiled from source and",
                                 "linked statically."]) + "\n"
        used |= {"ISC", "Expat", "BSD-3-clause"}

    for lic in sorted(groups, key=lambda l: (-len(groups[l]), l)):
        members = groups[lic]
        doc += field("Files", wrap([f"rust/{n}-{v}/*" for n, v, _ in members]))
        copy = []
        for n, v, expr in members:
            who = ", ".join(authors.get((n, v), [])) or f"the {n} authors"
            copy.append(f"{n} {v} ({expr}): {who}")
        doc += field("Copyright", copy)
        doc += f"License: {lic}\n\n"
        used |= set(lic.split(" and "))

    for name in sorted(used):
        doc += license_paragraph(name) + "\n"

    Path(a.out).write_text(doc.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
