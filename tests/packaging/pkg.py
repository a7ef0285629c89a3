"""The packages themselves: building them with scripts/package.sh, what is
inside, lintian, and the units' `systemd-analyze security` exposure."""

import glob
import os
import re

from common import TestFailure, expect, ok, say, warn
from units import Service, parse_exposure

# Issue 18: the highest exposure each unit may have.
EXPOSURE_LIMITS = {"apos-edge": 1.5, "apos-hub": 1.2}
PACKAGES = ("apos-edge", "apos-hub")


def build(t, version, out):
    """scripts/package.sh --profile dev --no-build: the binaries the tests
    built, packaged as `version`. Returns {package: deb path}."""
    os.makedirs(out, exist_ok=True)
    t.runner.run(["bash", os.path.join(t.repo, "scripts/package.sh"), "--profile", "dev", "--no-build",
                  "--version", version, "--out", out, "--no-lintian"], timeout=900,
                 what=f"scripts/package.sh --profile dev --no-build --version {version} --out {out}")
    return found(out, version)


def found(out, version):
    debs = {}
    for p in PACKAGES:
        paths = glob.glob(os.path.join(out, f"{p}_{version}_*.deb"))
        expect(len(paths) == 1, f"one {p}_{version}_<arch>.deb in {out}",
               sorted(os.listdir(out)) if os.path.isdir(out) else "no such directory")
        debs[p] = paths[0]
    return debs


def field(t, deb, name):
    return t.runner.run(["dpkg-deb", "-f", deb, name]).stdout.strip()


def inspect(t, debs):
    """Sizes, Installed-Size, dependencies, the file list; checks the
    layout of the packaging contract. Returns {package: {...}}."""
    info = {}
    for p, deb in debs.items():
        contents = t.runner.run(["dpkg-deb", "-c", deb]).stdout
        with open(t.report.path(f"contents-{p}.txt"), "w") as f:
            f.write(contents)
        files = [line.split()[-1].lstrip(".") if " -> " not in line else line.split(" -> ")[0].split()[-1].lstrip(".")
                 for line in contents.splitlines()]
        control = t.runner.run(["dpkg-deb", "-I", deb]).stdout
        with open(t.report.path(f"control-{p}.txt"), "w") as f:
            f.write(control)
        size = os.path.getsize(deb)
        installed_kib = int(field(t, deb, "Installed-Size") or 0)
        info[p] = {"deb": deb, "size": size, "installed_kib": installed_kib, "files": files,
                   "depends": field(t, deb, "Depends"), "pre_depends": field(t, deb, "Pre-Depends"),
                   "recommends": field(t, deb, "Recommends")}
        t.report.figure(f"{p}.deb bytes", size)
        t.report.figure(f"{p} Installed-Size KiB", installed_kib)
        say(f"{os.path.basename(deb)}: {size:,} bytes, Installed-Size {installed_kib:,} KiB, "
            f"Depends: {info[p]['depends'] or '-'}")
        short = p.removeprefix("apos-")
        must = [f"/usr/bin/{p}", f"/etc/apos/{short}.toml", f"/usr/share/doc/{p}/copyright",
                f"/usr/lib/sysusers.d/{p}.conf", f"/usr/share/man/man1/{p}.1.gz"]
        for m in must:
            expect(m in files, f"{m} in {os.path.basename(deb)} (packaging contract)", contents)
        expect(any(f in (f"/lib/systemd/system/{p}.service", f"/usr/lib/systemd/system/{p}.service") for f in files),
               f"/lib/systemd/system/{p}.service in {os.path.basename(deb)}", contents)
        expect(any(re.match(rf"/usr/share/doc/{p}/changelog(\.Debian)?\.gz$", f) for f in files),
               f"a changelog in /usr/share/doc/{p}/", contents)
        if p == "apos-edge":
            models = [f for f in files if re.match(r"/usr/share/apos-edge/models/[^/]+/model\.onnx$", f)]
            expect(models, "models under /usr/share/apos-edge/models/<name>/model.onnx", contents)
            info[p]["models"] = [m.split("/")[-2] for m in models]
        secrets = [f for f in files if re.search(r"\.(key|pem|pass|token|secret)$", f)]
        expect(not secrets, f"no keys, certificates or passwords inside {p}", secrets)
        ok(f"{p}: binary, conffile, unit, sysusers, man page, copyright, changelog" +
           (f", models {info[p]['models']}" if p == "apos-edge" else "") + "; no secrets shipped")
    return info


def lintian(t, debs):
    """lintian on each package: any E: fails; W: are printed (each must be
    explained in packaging/README.md, which a person checks)."""
    for p, deb in debs.items():
        r = t.runner.run(["lintian", "--display-info", "--show-overrides", "--fail-on", "error",
                          "--tag-display-limit", "0", deb], check=False, timeout=600)
        out = r.stdout + r.stderr
        with open(t.report.path(f"lintian-{p}.txt"), "w") as f:
            f.write(out)
        errors = [line for line in out.splitlines() if line.startswith("E:")]
        warnings = [line for line in out.splitlines() if line.startswith("W:")]
        for w in warnings:
            say(w)
        expect(not errors and r.returncode == 0, f"no lintian errors in {os.path.basename(deb)}",
               "\n".join(errors) or out)
        overridden = [line for line in out.splitlines() if line.startswith("O:")]
        t.report.figure(f"{p} lintian", f"{len(warnings)} warnings, 0 errors, {len(overridden)} overridden")
        ok(f"lintian {p}: 0 errors, {len(warnings)} warnings, {len(overridden)} overridden")
        # Issue 18: every remaining warning or override is explained there.
        with open(os.path.join(t.repo, "packaging/README.md")) as f:
            readme = f.read()
        tags = sorted({line.split()[2] for line in warnings + overridden if len(line.split()) > 2})
        unexplained = [tag for tag in tags if tag not in readme]
        expect(not unexplained, f"every lintian warning and override of {p} explained in packaging/README.md",
               unexplained)


def extract(t, deb, into):
    os.makedirs(into, exist_ok=True)
    t.runner.run(["dpkg-deb", "-x", deb, into])
    return into


def unit_files(root):
    """{package: unit path} found under `root`."""
    found = {}
    for p in PACKAGES:
        for d in ("lib/systemd/system", "usr/lib/systemd/system"):
            path = os.path.join(root, d, f"{p}.service")
            if os.path.exists(path):
                found[p] = path
    return found


def security(t, units):
    """`systemd-analyze security --offline=yes` on each unit file; the
    scores go to exposure.txt and figures.json; over the limit fails."""
    lines = []
    failures = []
    for p, path in units.items():
        r = t.runner.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", path], check=False)
        out = r.stdout + r.stderr
        with open(t.report.path(f"security-{p}.txt"), "w") as f:
            f.write(out)
        score = parse_exposure(out)
        expect(score is not None, f"an overall exposure level from systemd-analyze security {path}", out)
        limit = EXPOSURE_LIMITS[p]
        lines.append(f"{p}.service exposure {score} (limit {limit})")
        t.report.figure(f"{p}.service exposure", score)
        if score > limit:
            failures.append(f"{p}.service: {score} > {limit}")
        else:
            ok(f"{p}.service exposure {score} <= {limit}")
    with open(t.report.path("exposure.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    expect(not failures, "exposure within the limits of issue 18 (edge 1.5, hub 1.2)",
           "; ".join(failures) + f" (details: {t.report.path('security-*.txt')})")


def load_units(units):
    out = {}
    for p, path in units.items():
        with open(path) as f:
            out[p] = Service(p, f.read())
    return out


def simple_deps(*fields):
    """Package names from Depends/Pre-Depends/Recommends values: the first
    alternative of each, without versions or architecture qualifiers."""
    names = set()
    for value in fields:
        for group in filter(None, (g.strip() for g in value.split(","))):
            first = group.split("|")[0].strip()
            name = re.split(r"[\s(:\[]", first, maxsplit=1)[0]
            if name and "$" not in name:
                names.add(name)
    return names
