#!/usr/bin/env python3
"""Netlib solve times: APOS's LP solver (`apos-hub optimize mps --json`,
its own solve time, process start excluded) against HiGHS (PyPI highspy,
`Highs.run()` wall time, file reading excluded), on the same files in the
same run, each repeated and the median kept (docs/benchmarks.md §12).

    .venv/bin/python bench/lp/netlib_vs_highs.py [--bin target/debug/apos-hub] [--dir ../shared/data/netlib] [--runs 5]
"""
import argparse
import gzip
import json
import os
import statistics
import subprocess
import tempfile
import time

import highspy


def highs_time(path, runs):
    # HiGHS reads plain MPS: unpack once, outside the timing.
    with tempfile.NamedTemporaryFile(suffix=".mps", delete=False) as f:
        f.write(gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read())
        plain = f.name
    try:
        times, obj = [], None
        for _ in range(runs):
            h = highspy.Highs()
            h.setOptionValue("output_flag", False)
            h.readModel(plain)
            t = time.perf_counter()
            h.run()
            times.append((time.perf_counter() - t) * 1000)
            assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal, h.modelStatusToString(h.getModelStatus())
            obj = h.getInfo().objective_function_value
        return statistics.median(times), obj
    finally:
        os.unlink(plain)


def apos_time(binary, path, runs):
    times, obj = [], None
    for _ in range(runs):
        out = subprocess.run([binary, "optimize", "mps", "--json", path], check=True, capture_output=True, text=True)
        v = json.loads(out.stdout)
        assert v["status"] == "optimal", v
        times.append(v["solve_ms"])
        obj = v["objective"]
    return statistics.median(times), obj


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(root, "target/debug/apos-hub"))
    ap.add_argument("--dir", default=os.path.join(root, "../shared/data/netlib"))
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    files = sorted(f for f in os.listdir(a.dir) if f.endswith(".mps.gz"))
    print(f"{'problem':<10} {'apos ms':>9} {'HiGHS ms':>9} {'ratio':>7}  {'apos objective':>20} {'HiGHS objective':>20}")
    ta = th = 0.0
    for f in files:
        p = os.path.join(a.dir, f)
        ma, oa = apos_time(a.bin, p, a.runs)
        mh, oh = highs_time(p, a.runs)
        ta += ma
        th += mh
        print(f"{f[:-7]:<10} {ma:>9.2f} {mh:>9.2f} {ma / mh:>7.1f}  {oa:>20.12e} {oh:>20.12e}")
    print(f"{'total':<10} {ta:>9.2f} {th:>9.2f} {ta / th:>7.1f}")


if __name__ == "__main__":
    main()
