"""The FastAPI peer of `apos-bench hub`: the seed architecture's stack
(FastAPI + uvicorn + the duckdb package) serving the two measured
endpoints of the hub's API from a copy of the hub's DuckDB file, with the
same JSON shape and the same SQL as hub/src/store/series.rs and
series/kpi.rs (apos-bench checks that both answers are equal before it
measures).

    PEER_DB=copy.duckdb PEER_TOKEN=secret \
        .venv/bin/python -m uvicorn peer:app --workers 2 --app-dir bench/hub

Written as a FastAPI service is usually written: sync endpoints (FastAPI
runs them on its thread pool; duckdb releases the GIL while a query runs),
one read-only connection per worker process and a cursor per thread,
the default JSON response. Only what the benchmark asks is implemented:
`from`/`to` as milliseconds since 1970.
"""

import hmac
import json
import math
import os
import threading
import time
from typing import List, Optional

import duckdb
from fastapi import Depends, FastAPI, Header, HTTPException, Query

DB = duckdb.connect(os.environ["PEER_DB"], read_only=True)
TOKEN = os.environ["PEER_TOKEN"].encode()
LOCAL = threading.local()

DEFAULT_SPAN_MS = 24 * 3_600_000
ROLLUP_LEVELS_MS = (3_600_000, 86_400_000)
MIN_POINTS, MAX_POINTS, DEFAULT_POINTS = 10, 5000, 1000

app = FastAPI(title="FastAPI peer of the APOS hub API")


def cursor():
    c = getattr(LOCAL, "cursor", None)
    if c is None:
        c = LOCAL.cursor = DB.cursor()
    return c


def auth(authorization: Optional[str] = Header(default=None)):
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), TOKEN):
        raise HTTPException(status_code=401, detail="no session or token")


def finite(v):
    return v if v is not None and math.isfinite(v) else None


def figures(s):
    try:
        j = json.loads(s)
    except ValueError:
        return {}
    return j if isinstance(j, dict) else {}


SUMMARY = """
SELECT site, node, kpi, win, label, start_ms, end_ms, closed, coverage, quality, value,
       unit, figures
FROM kpis
WHERE (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR node = ?2)
QUALIFY row_number() OVER (PARTITION BY site, node, kpi, win
                           ORDER BY start_ms DESC, computed_ms DESC, seq DESC) = 1
ORDER BY site, node, kpi, win"""


@app.get("/api/v1/analysis/kpis", dependencies=[Depends(auth)])
def kpis(site: Optional[str] = None, node: Optional[str] = None):
    rows = cursor().execute(SUMMARY, [site, node]).fetchall()
    return {"items": [
        {"site": r[0], "node": r[1], "kpi": r[2], "window": r[3], "label": r[4],
         "start_ms": r[5], "end_ms": r[6], "closed": r[7], "coverage": finite(r[8]),
         "quality": r[9], "value": finite(r[10]), "unit": r[11], "figures": figures(r[12])}
        for r in rows]}


RAW_SQL = """
SELECT (start_ms - ?1) // ?2 * ?2 + ?1 AS t, min(min), max(max),
       sum(coalesce(twa, mean)), count(coalesce(twa, mean))::BIGINT,
       sum(count)::BIGINT, sum(good)::BIGINT
FROM aggregates
WHERE site = ?3 AND node = ?4 AND tag = ?5 AND width_ms = ?6
  AND start_ms >= ?1 AND start_ms < ?7
GROUP BY t ORDER BY t"""

ROLLUP_SQL = """
WITH r AS (
    SELECT start_ms, min, max, vsum, vn::BIGINT AS vn, count::BIGINT AS count,
           good::BIGINT AS good
    FROM series_rollup
    WHERE site = ?3 AND node = ?4 AND tag = ?5 AND width_ms = ?6 AND level_ms = ?8
      AND start_ms >= ?1 AND start_ms < ?7
    UNION ALL
    SELECT start_ms, min, max, coalesce(twa, mean),
           (coalesce(twa, mean) IS NOT NULL)::BIGINT, count::BIGINT, good::BIGINT
    FROM aggregates
    WHERE rowid > ?9 AND site = ?3 AND node = ?4 AND tag = ?5 AND width_ms = ?6
      AND start_ms >= ?1 AND start_ms < ?7
)
SELECT (start_ms - ?1) // ?2 * ?2 + ?1 AS t, min(min), max(max), sum(vsum),
       sum(vn)::BIGINT, sum(count)::BIGINT, sum(good)::BIGINT
FROM r GROUP BY t ORDER BY t"""

WIDTHS_SQL = """
SELECT width_ms FROM series_catalog WHERE site = ?1 AND node = ?2 AND tag = ?3
UNION
SELECT DISTINCT width_ms FROM aggregates
WHERE rowid > ?4 AND site = ?1 AND node = ?2 AND tag = ?3
ORDER BY 1"""


def plan(widths, min_bucket):
    min_bucket = max(min_bucket, 1)
    fits = [w for w in widths if 0 < w <= min_bucket]
    pos = [w for w in widths if w > 0]
    if not fits and not pos:
        return None
    width = max(fits) if fits else min(pos)
    levels = [lv for lv in ROLLUP_LEVELS_MS if width < lv <= min_bucket]
    rollup = max(levels) if levels else None
    unit = rollup or width
    return width, rollup, -(-min_bucket // unit) * unit


def grid(from_ms, to_ms, bucket):
    lo = from_ms // bucket * bucket
    hi = to_ms // bucket * bucket
    return lo, (hi + bucket if hi < to_ms else hi)


def one_series(c, site, node, tag, from_ms, to_ms, min_bucket):
    c.execute("BEGIN TRANSACTION")
    try:
        row = c.execute("SELECT rowid_done FROM series_watermark WHERE id = 0").fetchone()
        wm = row[0] if row else -1
        widths = [w[0] for w in c.execute(WIDTHS_SQL, [site, node, tag, wm]).fetchall()]
        out = {"site": site, "node": node, "tag": tag, "source_width_ms": None,
               "bucket_ms": max(min_bucket, 1), "rollup_ms": None,
               "t": [], "min": [], "max": [], "mean": [], "good_share": []}
        p = plan(widths, min_bucket)
        if p is None:
            return out
        width, rollup, bucket = p
        out.update(source_width_ms=width, bucket_ms=bucket, rollup_ms=rollup)
        lo, hi = grid(from_ms, to_ms, bucket)
        if rollup is None:
            rows = c.execute(RAW_SQL, [lo, bucket, site, node, tag, width, hi]).fetchall()
        else:
            rows = c.execute(ROLLUP_SQL, [lo, bucket, site, node, tag, width, hi, rollup, wm]).fetchall()
    finally:
        c.execute("COMMIT")
    for t, mn, mx, vsum, vn, count, good in rows:
        vn, count, good = vn or 0, count or 0, good or 0
        out["t"].append(t)
        out["min"].append(finite(mn))
        out["max"].append(finite(mx))
        out["mean"].append(finite(vsum / vn) if vsum is not None and vn > 0 else None)
        out["good_share"].append(good / count if count > 0 else None)
    return out


@app.get("/api/v1/analysis/series", dependencies=[Depends(auth)])
def series(site: str, node: str, tag: List[str] = Query(), points: int = DEFAULT_POINTS,
           to: Optional[int] = None, from_: Optional[int] = Query(default=None, alias="from")):
    to_ms = to if to is not None else int(time.time() * 1000)
    from_ms = from_ if from_ is not None else to_ms - DEFAULT_SPAN_MS
    if from_ms >= to_ms:
        raise HTTPException(status_code=400, detail="from must be before to")
    if not MIN_POINTS <= points <= MAX_POINTS:
        raise HTTPException(status_code=400, detail="points out of range")
    bucket = -(-(to_ms - from_ms) // points)
    c = cursor()
    out = [one_series(c, site, node, t, from_ms, to_ms, bucket) for t in tag]
    widths = [s["source_width_ms"] for s in out if s["source_width_ms"] is not None]
    return {"from_ms": from_ms, "to_ms": to_ms, "bucket_ms": bucket,
            "source_width_ms": max(widths) if widths else None, "series": out}
