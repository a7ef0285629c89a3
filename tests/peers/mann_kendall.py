#!/usr/bin/env python3
"""Peer for the Mann-Kendall cross-check (models/tests/models/analysis.rs).

Reads JSON on stdin:
    {"series": [{"x": [1.0, null, 2.5, ...], "period": 24 | null, "alpha": 0.05}, ...]}
(null marks a missing value) and prints
    {"results": [{"original": {...}, "seasonal": {...} | null}, ...]}
with pymannkendall's original_test and, when a period is given,
seasonal_test: trend, h, p, z, Tau, s, var_s, slope, intercept.
NaN in a result is printed as null.
"""
import json
import math
import sys

import numpy as np
import pymannkendall as mk


def num(v):
    v = float(v)
    return None if math.isnan(v) else v


def as_dict(r):
    return {
        "trend": r.trend,
        "h": bool(r.h),
        "p": num(r.p),
        "z": num(r.z),
        "Tau": num(r.Tau),
        "s": num(r.s),
        "var_s": num(r.var_s),
        "slope": num(r.slope),
        "intercept": num(r.intercept),
    }


def main():
    req = json.load(sys.stdin)
    out = []
    for item in req["series"]:
        x = np.array([np.nan if v is None else v for v in item["x"]], dtype=float)
        alpha = item.get("alpha", 0.05)
        res = {"original": as_dict(mk.original_test(x, alpha=alpha)), "seasonal": None}
        period = item.get("period")
        if period:
            res["seasonal"] = as_dict(mk.seasonal_test(x, period=period, alpha=alpha))
        out.append(res)
    json.dump({"results": out, "version": mk.__version__}, sys.stdout)


if __name__ == "__main__":
    main()
